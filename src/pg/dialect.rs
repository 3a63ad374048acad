//! The SQL dialect: PostgreSQL's, plus table versions (`t VERSION AS OF 3`,
//! `t TIMESTAMP AS OF '...'`, `t FOR SYSTEM_TIME AS OF ...`) for time travel. PostgreSQL's
//! `FOR VERSION AS OF` / `FOR TIMESTAMP AS OF` spellings are accepted too: the `FOR` is dropped
//! at the token level before parsing.
//!
//! A wrapper that delegates every method PostgreSqlDialect overrides (the pattern sqlparser
//! documents for tweaking a dialect), and reports PostgreSqlDialect's type so that the parser's
//! PostgreSQL-specific paths stay on.

use std::any::TypeId;

use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};

#[derive(Debug, Default)]
pub struct LakegateDialect(PostgreSqlDialect);

impl Dialect for LakegateDialect {
    fn dialect(&self) -> TypeId {
        self.0.dialect()
    }

    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.0.identifier_quote_style(identifier)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.0.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.0.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.0.is_identifier_part(ch)
    }

    fn supports_unicode_string_literal(&self) -> bool {
        self.0.supports_unicode_string_literal()
    }

    fn is_custom_operator_part(&self, ch: char) -> bool {
        self.0.is_custom_operator_part(ch)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        self.0.get_next_precedence(parser)
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        self.0.supports_filter_during_aggregation()
    }

    fn supports_group_by_expr(&self) -> bool {
        self.0.supports_group_by_expr()
    }

    fn prec_value(&self, prec: Precedence) -> u8 {
        self.0.prec_value(prec)
    }

    fn allow_extract_custom(&self) -> bool {
        self.0.allow_extract_custom()
    }

    fn allow_extract_single_quotes(&self) -> bool {
        self.0.allow_extract_single_quotes()
    }

    fn supports_create_index_with_clause(&self) -> bool {
        self.0.supports_create_index_with_clause()
    }

    fn supports_explain_with_utility_options(&self) -> bool {
        self.0.supports_explain_with_utility_options()
    }

    fn supports_listen_notify(&self) -> bool {
        self.0.supports_listen_notify()
    }

    fn supports_factorial_operator(&self) -> bool {
        self.0.supports_factorial_operator()
    }

    fn supports_bitwise_shift_operators(&self) -> bool {
        self.0.supports_bitwise_shift_operators()
    }

    fn supports_comment_on(&self) -> bool {
        self.0.supports_comment_on()
    }

    fn supports_load_extension(&self) -> bool {
        self.0.supports_load_extension()
    }

    fn supports_named_fn_args_with_colon_operator(&self) -> bool {
        self.0.supports_named_fn_args_with_colon_operator()
    }

    fn supports_named_fn_args_with_expr_name(&self) -> bool {
        self.0.supports_named_fn_args_with_expr_name()
    }

    fn supports_empty_projections(&self) -> bool {
        self.0.supports_empty_projections()
    }

    fn supports_nested_comments(&self) -> bool {
        self.0.supports_nested_comments()
    }

    fn supports_string_escape_constant(&self) -> bool {
        self.0.supports_string_escape_constant()
    }

    fn supports_numeric_literal_underscores(&self) -> bool {
        self.0.supports_numeric_literal_underscores()
    }

    fn supports_array_typedef_with_brackets(&self) -> bool {
        self.0.supports_array_typedef_with_brackets()
    }

    fn supports_geometric_types(&self) -> bool {
        self.0.supports_geometric_types()
    }

    fn supports_set_names(&self) -> bool {
        self.0.supports_set_names()
    }

    fn supports_alter_column_type_using(&self) -> bool {
        self.0.supports_alter_column_type_using()
    }

    fn supports_notnull_operator(&self) -> bool {
        self.0.supports_notnull_operator()
    }

    fn supports_interval_options(&self) -> bool {
        self.0.supports_interval_options()
    }
}

/// Token-level rewrites before parsing, so that the parser sees spellings it knows:
/// - `FETCH [direction] cursor` gets the optional `FROM` before the cursor's name;
/// - the `FOR` of `FOR VERSION AS OF` / `FOR TIMESTAMP AS OF` is dropped;
/// - in `CREATE TABLE`, Spark's `USING iceberg` becomes the table option `format = 'iceberg'`
///   and `PARTITIONED BY (a, b)` becomes `PARTITION BY (a, b)` (PostgreSQL's position).
///
/// Works on tokens, so string literals and identifiers are left alone.
pub fn normalize(sql: &str) -> Result<String, ParserError> {
    let dialect = LakegateDialect::default();
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut changed = false;
    let mut i = 0;
    let mut statement_start = true;
    // The parentheses around an INSERT's query, dropped where they are met.
    let mut dropped: Vec<usize> = vec![];
    while i < tokens.len() {
        let starts = statement_start;
        if dropped.contains(&i) {
            changed = true;
            i += 1;
            continue;
        }
        if starts
            && is_kw(tokens.get(i), Keyword::INSERT)
            && let Some((open, close)) = bracketed_insert(&tokens, i)
        {
            dropped.extend([open, close]);
        }
        match tokens.get(i) {
            Some(Token::Whitespace(_)) => {}
            Some(Token::SemiColon) => statement_start = true,
            _ => statement_start = false,
        }
        // `FETCH [direction] [FROM | IN] cursor` as the parser takes it: the direction (NEXT
        // when there is none), FROM, the cursor; a negative count one number token.
        if starts && is_kw(tokens.get(i), Keyword::FETCH) {
            let end = (i..tokens.len())
                .find(|&j| matches!(tokens.get(j), Some(Token::SemiColon)))
                .unwrap_or(tokens.len());
            if let Some(fetch) = fetch_statement(&tokens[i..end]) {
                out.extend(fetch);
                changed = true;
                i = end;
                continue;
            }
        }
        if is_kw(tokens.get(i), Keyword::FOR) {
            let j = next_solid(&tokens, i + 1);
            if is_kw(tokens.get(j), Keyword::VERSION) || is_kw(tokens.get(j), Keyword::TIMESTAMP) {
                changed = true;
                i = j;
                continue;
            }
        }
        // `COMMENT ON [MATERIALIZED] VIEW v` and a dollar-quoted comment (dbt's), which the
        // parser does not take: `COMMENT ON TABLE v` (the session comments on whichever
        // relation the name is) and a single-quoted string.
        if starts && is_kw(tokens.get(i), Keyword::COMMENT) {
            let end = (i..tokens.len())
                .find(|&j| matches!(tokens.get(j), Some(Token::SemiColon)))
                .unwrap_or(tokens.len());
            let on = next_solid(&tokens, i + 1);
            let what = next_solid(&tokens, on + 1);
            let view = match tokens.get(what) {
                t if is_kw(t, Keyword::VIEW) => Some(what),
                t if is_kw(t, Keyword::MATERIALIZED) => Some(next_solid(&tokens, what + 1))
                    .filter(|&v| is_kw(tokens.get(v), Keyword::VIEW)),
                _ => None,
            };
            if is_kw(tokens.get(on), Keyword::ON) {
                let mut k = i;
                if let Some(view) = view {
                    out.extend(tokens[i..what].iter().cloned());
                    out.push(Token::make_keyword("TABLE"));
                    k = view + 1;
                }
                for t in &tokens[k..end] {
                    out.push(match t {
                        // Display writes the value between quotes as it is: doubled here.
                        Token::DollarQuotedString(d) => {
                            Token::SingleQuotedString(d.value.replace('\'', "''"))
                        }
                        other => other.clone(),
                    });
                }
                changed = true;
                i = end;
                continue;
            }
        }
        if starts
            && is_kw(tokens.get(i), Keyword::ALTER)
            && let Some((rewritten, end)) = alter_rename(&tokens, i)
        {
            out.extend(rewritten);
            changed = true;
            i = end;
            continue;
        }
        if is_kw(tokens.get(i), Keyword::CREATE)
            && let Some(end) = create_table_end(&tokens, i)
        {
            let (rewritten, did) = rewrite_create_table(&tokens[i..end]);
            changed |= did;
            out.extend(rewritten);
            i = end;
            continue;
        }
        if let Some(t) = tokens.get(i) {
            out.push(t.clone());
        }
        i += 1;
    }
    if !changed {
        return Ok(sql.to_string());
    }
    Ok(out.iter().map(|t| t.to_string()).collect())
}

/// `INSERT INTO t (WITH ... | SELECT ... | VALUES ...)`: PostgreSQL takes a bracketed query
/// where the parser expects a column list. The positions of its parentheses, to drop them.
fn bracketed_insert(tokens: &[Token], insert: usize) -> Option<(usize, usize)> {
    let into = next_solid(tokens, insert + 1);
    if !is_kw(tokens.get(into), Keyword::INTO) {
        return None;
    }
    // The table's name: words and dots.
    let mut k = next_solid(tokens, into + 1);
    while matches!(tokens.get(k), Some(Token::Word(_) | Token::Period)) {
        k = next_solid(tokens, k + 1);
    }
    if !matches!(tokens.get(k), Some(Token::LParen)) {
        return None;
    }
    let first = next_solid(tokens, k + 1);
    if ![Keyword::WITH, Keyword::SELECT, Keyword::VALUES]
        .iter()
        .any(|kw| is_kw(tokens.get(first), *kw))
    {
        return None;
    }
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(k) {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some((k, j));
                }
            }
            Token::SemiColon => return None,
            _ => {}
        }
    }
    None
}

/// `ALTER VIEW | MATERIALIZED VIEW name RENAME TO new` and `ALTER TABLE | VIEW | MATERIALIZED
/// VIEW name SET SCHEMA s`, which the parser does not know, in the spelling it does: `ALTER
/// TABLE name RENAME TO new`, and for SET SCHEMA `RENAME TO s.<name>` (a qualified new name is
/// how the session is asked to move a relation; PostgreSQL's RENAME takes none). The tokens and
/// the end of the statement.
fn alter_rename(tokens: &[Token], alter: usize) -> Option<(Vec<Token>, usize)> {
    use datafusion::sql::sqlparser::tokenizer::Whitespace;
    let end = (alter..tokens.len())
        .find(|&j| matches!(tokens.get(j), Some(Token::SemiColon)))
        .unwrap_or(tokens.len());
    let solid: Vec<&Token> = tokens[alter + 1..end]
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut k = 0;
    let table = match solid.get(k) {
        Some(t) if is_kw(Some(t), Keyword::TABLE) => true,
        Some(t) if is_kw(Some(t), Keyword::VIEW) => false,
        Some(t)
            if is_kw(Some(t), Keyword::MATERIALIZED)
                && is_kw(solid.get(1).copied(), Keyword::VIEW) =>
        {
            k += 1;
            false
        }
        _ => return None,
    };
    k += 1;
    let if_exists = is_kw(solid.get(k).copied(), Keyword::IF)
        && is_kw(solid.get(k + 1).copied(), Keyword::EXISTS);
    if if_exists {
        k += 2;
    }
    // The name: words joined by dots.
    let name_start = k;
    while matches!(solid.get(k), Some(Token::Word(_))) {
        k += 1;
        if !matches!(solid.get(k), Some(Token::Period)) {
            break;
        }
        k += 1;
    }
    let name = &solid[name_start..k];
    let last = name.last().filter(|t| matches!(t, Token::Word(_)))?;
    let new_name: Vec<Token> = match (solid.get(k), solid.get(k + 1)) {
        (Some(a), Some(b)) if is_kw(Some(a), Keyword::SET) && is_kw(Some(b), Keyword::SCHEMA) => {
            let schema = solid.get(k + 2).filter(|t| matches!(t, Token::Word(_)))?;
            if k + 3 != solid.len() {
                return None;
            }
            vec![(*schema).clone(), Token::Period, (*last).clone()]
        }
        (Some(a), Some(b))
            if !table && is_kw(Some(a), Keyword::RENAME) && is_kw(Some(b), Keyword::TO) =>
        {
            solid[k + 2..].iter().map(|t| (*t).clone()).collect()
        }
        _ => return None,
    };
    let space = || Token::Whitespace(Whitespace::Space);
    let mut out = vec![
        Token::make_keyword("ALTER"),
        space(),
        Token::make_keyword("TABLE"),
    ];
    if if_exists {
        out.extend([
            space(),
            Token::make_keyword("IF"),
            space(),
            Token::make_keyword("EXISTS"),
        ]);
    }
    out.push(space());
    out.extend(name.iter().map(|t| (*t).clone()));
    out.extend([
        space(),
        Token::make_keyword("RENAME"),
        space(),
        Token::make_keyword("TO"),
        space(),
    ]);
    out.extend(new_name);
    Some((out, end))
}

/// How a negative FETCH/MOVE count (`RELATIVE -2`) reaches the session: `$lakegate_minus_2`.
pub const NEGATIVE_COUNT: &str = "$lakegate_minus_";

/// A FETCH statement's tokens in the parser's spelling, if they need it.
fn fetch_statement(tokens: &[Token]) -> Option<Vec<Token>> {
    use datafusion::sql::sqlparser::tokenizer::Whitespace;
    let mut solid: Vec<Token> = vec![];
    for t in tokens.iter().skip(1) {
        match t {
            Token::Whitespace(_) => {}
            // The parser takes no sign here: a negative count travels as a placeholder the
            // session reads back (session::cursor).
            Token::Number(n, _) if matches!(solid.last(), Some(Token::Minus)) => {
                solid.pop();
                solid.push(Token::Placeholder(format!("{NEGATIVE_COUNT}{n}")));
            }
            other => solid.push(other.clone()),
        }
    }
    let from = solid
        .iter()
        .position(|t| is_kw(Some(t), Keyword::FROM) || is_kw(Some(t), Keyword::IN));
    let (direction, cursor): (Vec<Token>, Vec<Token>) = match from {
        Some(at) => (solid[..at].to_vec(), solid[at + 1..].to_vec()),
        None => {
            let (last, rest) = solid.split_last()?;
            (rest.to_vec(), vec![last.clone()])
        }
    };
    let negative = direction
        .iter()
        .any(|t| matches!(t, Token::Placeholder(p) if p.starts_with(NEGATIVE_COUNT)));
    if from.is_some() && !direction.is_empty() && !negative {
        return None;
    }
    let direction = if direction.is_empty() {
        vec![Token::make_keyword("NEXT")]
    } else {
        direction
    };
    let space = || Token::Whitespace(Whitespace::Space);
    let mut out = vec![tokens[0].clone()];
    for t in direction {
        out.push(space());
        out.push(t);
    }
    out.push(space());
    out.push(Token::make_keyword("FROM"));
    for t in cursor {
        out.push(space());
        out.push(t);
    }
    Some(out)
}

fn is_kw(t: Option<&Token>, k: Keyword) -> bool {
    matches!(t, Some(Token::Word(Word { keyword, .. })) if *keyword == k)
}

/// The index of the first token at or after `i` that is not whitespace.
fn next_solid(tokens: &[Token], mut i: usize) -> usize {
    while matches!(tokens.get(i), Some(Token::Whitespace(_))) {
        i += 1;
    }
    i
}

/// When `tokens[start]` begins `CREATE [OR REPLACE] [TEMP|...] TABLE` (not DataFusion's
/// `CREATE EXTERNAL TABLE`, which has its own clauses), the end of that statement.
fn create_table_end(tokens: &[Token], start: usize) -> Option<usize> {
    let mut j = next_solid(tokens, start + 1);
    loop {
        match tokens.get(j) {
            Some(Token::Word(w)) if w.keyword == Keyword::TABLE => break,
            Some(Token::Word(w))
                if matches!(
                    w.keyword,
                    Keyword::OR
                        | Keyword::REPLACE
                        | Keyword::TEMP
                        | Keyword::TEMPORARY
                        | Keyword::UNLOGGED
                        | Keyword::GLOBAL
                        | Keyword::LOCAL
                ) =>
            {
                j = next_solid(tokens, j + 1)
            }
            _ => return None,
        }
    }
    let mut depth = 0i32;
    for (k, t) in tokens.iter().enumerate().skip(j) {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => return Some(k),
            _ => {}
        }
    }
    Some(tokens.len())
}

/// Rewrite one CREATE TABLE statement's `USING fmt` and `PARTITIONED BY (...)` clauses (at
/// paren depth 0, before a top-level `AS`). Returns the tokens and whether anything changed.
fn rewrite_create_table(tokens: &[Token]) -> (Vec<Token>, bool) {
    let mut out = Vec::with_capacity(tokens.len() + 8);
    let mut format: Option<String> = None;
    let mut partition: Option<Vec<Token>> = None;
    let mut with_paren: Option<usize> = None; // index in `out` of the user's WITH '('
    let mut insert_at: Option<usize> = None; // index in `out` where our clauses go
    let mut depth = 0i32;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if depth == 0 && insert_at.is_none() {
            if is_kw(Some(t), Keyword::USING)
                && let j = next_solid(tokens, i + 1)
                && let Some(Token::Word(w)) = tokens.get(j)
            {
                format = Some(w.value.to_ascii_lowercase());
                i = j + 1;
                continue;
            }
            if is_kw(Some(t), Keyword::PARTITIONED) {
                let by = next_solid(tokens, i + 1);
                let open = next_solid(tokens, by + 1);
                if is_kw(tokens.get(by), Keyword::BY) && tokens.get(open) == Some(&Token::LParen) {
                    let mut d = 0i32;
                    let mut k = open;
                    let mut group = vec![];
                    while let Some(tok) = tokens.get(k) {
                        match tok {
                            Token::LParen => d += 1,
                            Token::RParen => d -= 1,
                            _ => {}
                        }
                        group.push(tok.clone());
                        k += 1;
                        if d == 0 {
                            break;
                        }
                    }
                    partition = Some(group);
                    i = k;
                    continue;
                }
            }
            if is_kw(Some(t), Keyword::WITH)
                && tokens.get(next_solid(tokens, i + 1)) == Some(&Token::LParen)
            {
                let open = next_solid(tokens, i + 1);
                out.extend(tokens[i..open].iter().cloned());
                with_paren = Some(out.len());
                out.push(Token::LParen);
                depth += 1;
                i = open + 1;
                continue;
            }
            if is_kw(Some(t), Keyword::AS) {
                insert_at = Some(out.len());
            }
        }
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        out.push(t.clone());
        i += 1;
    }
    if format.is_none() && partition.is_none() {
        return (tokens.to_vec(), false);
    }
    let mut clauses: Vec<Token> = vec![];
    let sp = || Token::Whitespace(datafusion::sql::sqlparser::tokenizer::Whitespace::Space);
    let mut insert_at = insert_at.unwrap_or(out.len());
    if let Some(f) = format {
        let option = vec![
            Token::make_word("format", None),
            sp(),
            Token::Eq,
            sp(),
            Token::SingleQuotedString(f),
        ];
        match with_paren {
            Some(p) => {
                let mut opt = option;
                opt.push(Token::Comma);
                opt.push(sp());
                let n = opt.len();
                out.splice(p + 1..p + 1, opt);
                if insert_at > p {
                    insert_at += n;
                }
            }
            None => {
                clauses.extend([sp(), Token::make_keyword("WITH"), sp(), Token::LParen]);
                clauses.extend(option);
                clauses.push(Token::RParen);
            }
        }
    }
    if let Some(group) = partition {
        clauses.extend([
            sp(),
            Token::make_keyword("PARTITION"),
            sp(),
            Token::make_keyword("BY"),
            sp(),
        ]);
        clauses.extend(group);
    }
    clauses.push(sp());
    out.splice(insert_at..insert_at, clauses);
    (out, true)
}

#[cfg(test)]
mod tests {
    /// The rewrite, with runs of white space folded (the rewrite pads with spaces).
    fn normalize(sql: &str) -> Result<String, super::ParserError> {
        Ok(super::normalize(sql)?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "))
    }

    #[test]
    fn an_inserts_bracketed_query_loses_its_brackets() {
        // (written, as parsed); a column list stays, and so does a quoted column "select".
        for (sql, expected) in [
            (
                "INSERT INTO s.t (WITH a AS (SELECT 1) SELECT * FROM a)",
                "INSERT INTO s.t WITH a AS (SELECT 1) SELECT * FROM a",
            ),
            (
                "insert into t (select x from u) returning x",
                "insert into t select x from u returning x",
            ),
            (
                "INSERT INTO t (a, b) SELECT 1, 2",
                "INSERT INTO t (a, b) SELECT 1, 2",
            ),
            (
                "INSERT INTO t (\"select\") VALUES (1)",
                "INSERT INTO t (\"select\") VALUES (1)",
            ),
        ] {
            assert_eq!(normalize(sql).unwrap(), expected, "{sql}");
        }
    }

    #[test]
    fn renames_and_schema_moves_become_alter_table_rename() {
        for (sql, expected) in [
            (
                "alter view \"db\".\"s\".\"v__tmp\" rename to \"v\"",
                "ALTER TABLE \"db\".\"s\".\"v__tmp\" RENAME TO \"v\"",
            ),
            (
                "ALTER MATERIALIZED VIEW IF EXISTS m RENAME TO m2",
                "ALTER TABLE IF EXISTS m RENAME TO m2",
            ),
            (
                "ALTER TABLE s.t SET SCHEMA u",
                "ALTER TABLE s.t RENAME TO u.t",
            ),
            ("ALTER VIEW v SET SCHEMA u", "ALTER TABLE v RENAME TO u.v"),
            (
                "comment on view \"s\".\"v\" is $$it's doc$$",
                "comment on TABLE \"s\".\"v\" is 'it''s doc'",
            ),
            (
                "COMMENT ON MATERIALIZED VIEW m IS 'x'",
                "COMMENT ON TABLE m IS 'x'",
            ),
            // Left alone: what the parser takes as it is.
            ("ALTER TABLE t RENAME TO u", "ALTER TABLE t RENAME TO u"),
            ("ALTER VIEW v AS SELECT 1", "ALTER VIEW v AS SELECT 1"),
        ] {
            assert_eq!(normalize(sql).unwrap(), expected, "{sql}");
        }
    }

    #[test]
    fn create_table_clauses_become_options() {
        assert_eq!(
            normalize("CREATE TABLE t (a int, b text) USING iceberg PARTITIONED BY (b)").unwrap(),
            "CREATE TABLE t (a int, b text) WITH (format = 'iceberg') PARTITION BY (b)"
        );
        assert_eq!(
            normalize("create table t using delta as select 1 as a").unwrap(),
            "create table t WITH (format = 'delta') as select 1 as a"
        );
        let with = normalize("CREATE TABLE t (a int) USING iceberg WITH (x = 1)").unwrap();
        assert_eq!(
            with,
            "CREATE TABLE t (a int) WITH (format = 'iceberg', x = 1)"
        );
        // Strings and other statements are left alone.
        let q = "SELECT 'USING iceberg' FROM t";
        assert_eq!(normalize(q).unwrap(), q);
        let ext = "CREATE EXTERNAL TABLE t STORED AS PARQUET PARTITIONED BY (a) LOCATION '/x'";
        assert_eq!(normalize(ext).unwrap(), ext);
        assert_eq!(
            normalize("SELECT * FROM t FOR VERSION AS OF 3").unwrap(),
            "SELECT * FROM t VERSION AS OF 3"
        );
    }
}
