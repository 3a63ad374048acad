//! The materialized-view statements, which DataFusion's parser does not take:
//! `CREATE MATERIALIZED VIEW [IF NOT EXISTS] name [WITH (...)] AS query [WITH [NO] DATA]`,
//! `REFRESH MATERIALIZED VIEW [CONCURRENTLY] name [WITH [NO] DATA]`,
//! `DROP MATERIALIZED VIEW [IF EXISTS] name [, ...] [CASCADE | RESTRICT]` and
//! `ALTER MATERIALIZED VIEW [IF EXISTS] name SET (...) | RESET (...)`.

use datafusion::sql::sqlparser::ast::{ObjectName, Query, SqlOption};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{Error, Result};

/// One materialized-view statement.
#[derive(Debug, Clone)]
pub enum MvStatement {
    Create {
        if_not_exists: bool,
        name: ObjectName,
        options: Vec<(String, String)>,
        query: Box<Query>,
        with_data: bool,
    },
    Refresh {
        name: ObjectName,
        with_data: bool,
    },
    Drop {
        if_exists: bool,
        names: Vec<ObjectName>,
    },
    Alter {
        if_exists: bool,
        name: ObjectName,
        set: Vec<(String, String)>,
        reset: Vec<String>,
    },
}

/// The statement, when `sql` is one of these (else None: another statement).
pub fn parse(sql: &str) -> Option<Result<MvStatement>> {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(4)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let w = |i: usize| words.get(i).map(String::as_str);
    let is_mv = matches!(
        (w(0), w(1), w(2)),
        (
            Some("CREATE" | "REFRESH" | "DROP" | "ALTER"),
            Some("MATERIALIZED"),
            Some("VIEW" | "VIEW;")
        )
    ) || matches!(
        (w(0), w(1), w(2), w(3)),
        (
            Some("CREATE"),
            Some("OR"),
            Some("REPLACE"),
            Some("MATERIALIZED")
        )
    );
    if !is_mv || (w(0) == Some("ALTER") && is_rename(sql)) {
        return None;
    }
    Some(parse_mv(sql))
}

/// `ALTER MATERIALIZED VIEW ... RENAME TO | SET SCHEMA`: a catalog rename, which the session's
/// ALTER TABLE does for every kind of relation (the dialect spells it so).
fn is_rename(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    words.iter().any(|w| w == "RENAME")
        || words.windows(2).any(|p| p[0] == "SET" && p[1] == "SCHEMA")
}

fn syntax(e: impl std::fmt::Display) -> Error {
    Error::Syntax(e.to_string())
}

fn parse_mv(sql: &str) -> Result<MvStatement> {
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(sql).map_err(syntax)?;
    let stmt = if p.parse_keyword(Keyword::CREATE) {
        if p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]) {
            return Err(Error::unsupported(
                "CREATE OR REPLACE MATERIALIZED VIEW is not supported: DROP it, then CREATE it",
            ));
        }
        expect(&mut p, &[Keyword::MATERIALIZED, Keyword::VIEW])?;
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = p.parse_object_name(false).map_err(syntax)?;
        if p.peek_token().token == Token::LParen {
            return Err(Error::unsupported(
                "a column list on CREATE MATERIALIZED VIEW is not supported: name the columns in the query",
            ));
        }
        let options = if p.parse_keyword(Keyword::WITH) {
            p.expect_token(&Token::LParen).map_err(syntax)?;
            let mut out = vec![];
            loop {
                out.push(option(p.parse_sql_option().map_err(syntax)?)?);
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            p.expect_token(&Token::RParen).map_err(syntax)?;
            out
        } else {
            vec![]
        };
        expect(&mut p, &[Keyword::AS])?;
        let query = p.parse_query().map_err(syntax)?;
        let with_data = with_data(&mut p)?;
        MvStatement::Create {
            if_not_exists,
            name,
            options,
            query,
            with_data,
        }
    } else if p.parse_keyword(Keyword::REFRESH) {
        expect(&mut p, &[Keyword::MATERIALIZED, Keyword::VIEW])?;
        // CONCURRENTLY: every refresh here lets readers go on (one atomic commit).
        let _ = p.parse_keyword(Keyword::CONCURRENTLY);
        let name = p.parse_object_name(false).map_err(syntax)?;
        let with_data = with_data(&mut p)?;
        MvStatement::Refresh { name, with_data }
    } else if p.parse_keyword(Keyword::DROP) {
        expect(&mut p, &[Keyword::MATERIALIZED, Keyword::VIEW])?;
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let mut names = vec![p.parse_object_name(false).map_err(syntax)?];
        while p.consume_token(&Token::Comma) {
            names.push(p.parse_object_name(false).map_err(syntax)?);
        }
        // Nothing depends on a materialized view here: CASCADE and RESTRICT mean the same.
        let _ = p.parse_keyword(Keyword::CASCADE) || p.parse_keyword(Keyword::RESTRICT);
        MvStatement::Drop { if_exists, names }
    } else {
        expect(
            &mut p,
            &[Keyword::ALTER, Keyword::MATERIALIZED, Keyword::VIEW],
        )?;
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = p.parse_object_name(false).map_err(syntax)?;
        let (mut set, mut reset) = (vec![], vec![]);
        if p.parse_keyword(Keyword::SET) {
            p.expect_token(&Token::LParen).map_err(syntax)?;
            loop {
                set.push(option(p.parse_sql_option().map_err(syntax)?)?);
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            p.expect_token(&Token::RParen).map_err(syntax)?;
        } else if p.parse_keyword(Keyword::RESET) {
            p.expect_token(&Token::LParen).map_err(syntax)?;
            loop {
                reset.push(
                    p.parse_identifier()
                        .map_err(syntax)?
                        .value
                        .to_ascii_lowercase(),
                );
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            p.expect_token(&Token::RParen).map_err(syntax)?;
        } else {
            return Err(Error::unsupported(
                "ALTER MATERIALIZED VIEW supports SET (...) and RESET (...)",
            ));
        }
        MvStatement::Alter {
            if_exists,
            name,
            set,
            reset,
        }
    };
    let _ = p.consume_token(&Token::SemiColon);
    if p.peek_token().token != Token::EOF {
        return Err(Error::Syntax(format!(
            "syntax error at or near \"{}\"",
            p.peek_token().token
        )));
    }
    Ok(stmt)
}

fn expect(p: &mut Parser<'_>, keywords: &[Keyword]) -> Result<()> {
    if p.parse_keywords(keywords) {
        Ok(())
    } else {
        Err(Error::Syntax(format!(
            "syntax error at or near \"{}\"",
            p.peek_token().token
        )))
    }
}

/// `WITH DATA` (the default) or `WITH NO DATA` at the end.
fn with_data(p: &mut Parser<'_>) -> Result<bool> {
    if p.parse_keywords(&[Keyword::WITH, Keyword::NO, Keyword::DATA]) {
        Ok(false)
    } else {
        let _ = p.parse_keywords(&[Keyword::WITH, Keyword::DATA]);
        Ok(true)
    }
}

fn option(o: SqlOption) -> Result<(String, String)> {
    use datafusion::sql::sqlparser::ast::{Expr, Value};
    match o {
        SqlOption::KeyValue { key, value } => {
            let v = match value {
                Expr::Value(v) => match v.value {
                    Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s,
                    other => other.to_string(),
                },
                other => other.to_string(),
            };
            Ok((key.value.to_ascii_lowercase(), v))
        }
        other => Err(Error::Syntax(format!(
            "expected option = value, found {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_parse() -> Result<()> {
        let Some(Ok(MvStatement::Create {
            if_not_exists,
            options,
            with_data,
            ..
        })) = parse(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS s.mv WITH (refresh = 'auto', max_staleness = '5 minutes') \
             AS SELECT a, sum(b) FROM t GROUP BY a WITH NO DATA",
        )
        else {
            return Err(Error::internal("create did not parse"));
        };
        assert!(if_not_exists && !with_data);
        assert_eq!(options[0], ("refresh".into(), "auto".into()));
        assert!(matches!(
            parse("refresh materialized view concurrently mv"),
            Some(Ok(MvStatement::Refresh {
                with_data: true,
                ..
            }))
        ));
        assert!(matches!(
            parse("DROP MATERIALIZED VIEW IF EXISTS a, b CASCADE"),
            Some(Ok(MvStatement::Drop { if_exists: true, ref names })) if names.len() == 2
        ));
        assert!(matches!(
            parse("ALTER MATERIALIZED VIEW mv SET (refresh = 'every 60 seconds')"),
            Some(Ok(MvStatement::Alter { .. }))
        ));
        assert!(parse("CREATE VIEW v AS SELECT 1").is_none());
        Ok(())
    }
}
