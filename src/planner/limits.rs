//! How large and how deep a statement may be, checked on its text before anything parses it.
//!
//! Parsing, planning, optimizing, the policy rewrite and the caches walk a statement's syntax
//! tree and plans recursively, and so do the compiler-made `Clone`, `Drop`, `Hash` and
//! `Display` of those trees, which no stack guard reaches: a statement nested deeply enough
//! (`SELECT 1 UNION ALL SELECT 1 ...` with 20,000 arms, `1+1+...+1`, thousands of nested
//! parentheses) would overflow a thread's stack, and a stack overflow aborts the whole process.
//! So a statement whose nesting is beyond [`MAX_DEPTH`] answers PostgreSQL's `54001 stack depth
//! limit exceeded`, and one beyond [`MAX_STATEMENT_BYTES`] `54000`, before it is parsed.
//!
//! The depth is read from the tokens, without recursion: every parenthesis or bracket opens a
//! level (and so does CASE, closed by END), and every binary operator, NOT, set operation (UNION, INTERSECT, EXCEPT), AND, OR and
//! JOIN chains one more node onto the left-deep tree the parser builds at its level; the depth
//! is the largest sum of open levels and their chains. Lists (IN lists, VALUES rows, select
//! lists, function arguments, CASE branches) are flat and count nothing, so a huge IN list or
//! VALUES runs. The threads that parse, plan and run statements have stacks sized for this
//! depth (`server`), with room to spare.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Error, Result};

/// The deepest nesting a statement may have (see the module doc).
pub const MAX_DEPTH: usize = 2000;

/// The largest statement text (64 MiB; PostgreSQL's own limit is 1 GB, but a statement is
/// parsed into a tree many times its size).
pub const MAX_STATEMENT_BYTES: usize = 64 << 20;

/// 54000 for a statement text beyond [`MAX_STATEMENT_BYTES`], 54001 for one nested beyond
/// [`MAX_DEPTH`].
pub fn check(sql: &str) -> Result<()> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(Error::ProgramLimit(format!(
            "statement too large: {} bytes, the limit is {MAX_STATEMENT_BYTES}",
            sql.len()
        )));
    }
    if depth(sql) > MAX_DEPTH {
        return Err(crate::error::stack_depth());
    }
    Ok(())
}

/// The nesting depth of a statement's text (see the module doc); text that does not tokenize
/// counts as flat (the parser then refuses it).
pub fn depth(sql: &str) -> usize {
    let dialect = crate::pg::dialect::LakegateDialect::default();
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return 0;
    };
    // The chain length of each open level; the sum of all of them plus the number of levels.
    let mut levels: Vec<usize> = vec![0];
    let mut total = 0usize;
    let mut deepest = 0usize;
    for t in &tokens {
        match t {
            Token::LParen | Token::LBracket | Token::LBrace => levels.push(0),
            Token::Word(w) if w.keyword == Keyword::CASE => levels.push(0),
            Token::RParen | Token::RBracket | Token::RBrace if levels.len() > 1 => {
                total -= levels.pop().unwrap_or(0);
            }
            Token::Word(w) if w.keyword == Keyword::END && levels.len() > 1 => {
                total -= levels.pop().unwrap_or(0);
            }
            // A statement ends: its levels with it.
            Token::SemiColon => {
                levels = vec![0];
                total = 0;
            }
            t if chains(t) => {
                if let Some(l) = levels.last_mut() {
                    *l += 1;
                }
                total += 1;
            }
            _ => {}
        }
        deepest = deepest.max(total + levels.len());
    }
    deepest
}

/// Whether a token adds a node to the left-deep chain of its level.
fn chains(t: &Token) -> bool {
    match t {
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::UNION
                | Keyword::INTERSECT
                | Keyword::EXCEPT
                | Keyword::JOIN
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::IS
        ),
        Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::Mod
        | Token::StringConcat
        | Token::Eq
        | Token::DoubleEq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Caret
        | Token::Ampersand
        | Token::Pipe
        | Token::ShiftLeft
        | Token::ShiftRight
        | Token::DoubleColon
        | Token::Arrow
        | Token::LongArrow
        | Token::HashArrow
        | Token::HashLongArrow
        | Token::AtArrow
        | Token::ArrowAt
        | Token::Tilde
        | Token::TildeAsterisk
        | Token::ExclamationMarkTilde
        | Token::ExclamationMarkTildeAsterisk => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_lists_are_shallow_chains_and_nesting_are_deep() {
        let in_list = format!(
            "SELECT * FROM t WHERE a IN ({})",
            (0..100_000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(depth(&in_list) < 10, "{}", depth(&in_list));
        assert!(check(&in_list).is_ok());
        let unions = format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(20_000));
        assert!(depth(&unions) > 20_000);
        assert_eq!(
            check(&unions).map_err(|e| e.state()),
            Err(crate::error::SqlState::StatementTooComplex)
        );
        let sum = format!("SELECT 1{}", " + 1".repeat(5_000));
        assert_eq!(
            check(&sum).map_err(|e| e.state()),
            Err(crate::error::SqlState::StatementTooComplex)
        );
        let parens = format!("SELECT {}1{}", "(".repeat(3_000), ")".repeat(3_000));
        assert_eq!(
            check(&parens).map_err(|e| e.state()),
            Err(crate::error::SqlState::StatementTooComplex)
        );
        // Several statements: each counts on its own.
        let many = "SELECT 1 + 1 + 1;".repeat(10_000);
        assert!(depth(&many) < 10);
        assert!(check("SELECT a AND b OR c FROM t WHERE x = 1 AND y = 2").is_ok());
    }
}
