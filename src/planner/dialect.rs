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

/// Drop the `FOR` of `FOR VERSION AS OF` / `FOR TIMESTAMP AS OF`, so that the parser sees the
/// spelling it knows. Works on tokens, so string literals and identifiers are left alone.
pub fn normalize_versions(sql: &str) -> Result<String, ParserError> {
    let dialect = LakegateDialect::default();
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let is_kw = |t: Option<&Token>, k: Keyword| matches!(t, Some(Token::Word(Word { keyword, .. })) if *keyword == k);
    let mut out = String::with_capacity(sql.len());
    let mut changed = false;
    let mut i = 0;
    while i < tokens.len() {
        if is_kw(tokens.get(i), Keyword::FOR) {
            // skip whitespace between FOR and the next word
            let mut j = i + 1;
            while matches!(tokens.get(j), Some(Token::Whitespace(_))) {
                j += 1;
            }
            if is_kw(tokens.get(j), Keyword::VERSION) || is_kw(tokens.get(j), Keyword::TIMESTAMP) {
                changed = true;
                i = j;
                continue;
            }
        }
        if let Some(t) = tokens.get(i) {
            out.push_str(&t.to_string());
        }
        i += 1;
    }
    Ok(if changed { out } else { sql.to_string() })
}
