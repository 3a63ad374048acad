//! The simple-query protocol's message of several statements, run one at a time.

use std::sync::Arc;

use super::query::materialize;
use super::{Outcome, Parsed, PreparedKind, Session, ends_transaction, parse, unparsed};
use crate::error::{Error, Result};

impl Session {
    /// Run the statements of one simple-query message, stopping at the first error.
    /// `aborted`: the transaction already failed, so only COMMIT/ROLLBACK are accepted.
    pub async fn execute_simple(&mut self, sql: &str, aborted: bool) -> Vec<Result<Outcome>> {
        let mut batch = self.begin_simple(sql, aborted);
        let several = batch.len() > 1;
        let mut out = vec![];
        while let Some(results) = self.next_simple(&mut batch).await {
            for r in results {
                // With several statements kept together, each is complete before the next.
                out.push(match r {
                    Ok(o) if several => materialize(o).await,
                    other => other,
                });
            }
        }
        out
    }

    /// The statements of one simple-query message, to run one at a time with
    /// [`Session::next_simple`]: the wire layer sends each statement's answer (rows streamed)
    /// before the next one runs, so a message of thousands of statements is held in memory one
    /// answer at a time.
    pub fn begin_simple(&self, sql: &str, aborted: bool) -> SimpleBatch {
        let items = self.simple_items(sql);
        SimpleBatch {
            items: items.into(),
            aborted,
            failed: false,
        }
    }

    pub(super) fn simple_items(&self, sql: &str) -> Vec<SimpleItem> {
        if let Err(e) = crate::planner::limits::check(sql) {
            return vec![SimpleItem::Refused(
                e,
                "<statement not shown: beyond the server's limits>".into(),
            )];
        }
        // Several statements in one message: each on its own, so the ones DataFusion's parser
        // does not take (COPY, MOVE, materialized views, maintenance) work there too.
        let pieces = split_statements(sql);
        if pieces.len() > 1
            && pieces
                .iter()
                .any(|p| matches!(unparsed(p), Ok(Some(_)) | Err(_)))
        {
            return pieces
                .iter()
                .map(|p| SimpleItem::Piece(p.to_string()))
                .collect();
        }
        match unparsed(sql) {
            Ok(Some(kind)) => return vec![SimpleItem::Unparsed(Box::new(kind), sql.into())],
            Ok(None) => {}
            Err(e) => return vec![SimpleItem::Refused(e, sql.into())],
        }
        match parse(sql) {
            Ok(stmts) => stmts
                .into_iter()
                .map(|s| SimpleItem::Statement(Parsed::new(s)))
                .collect(),
            Err(e) => vec![SimpleItem::Failed(e)],
        }
    }

    /// The answers of the batch's next statement (None: all done, or one failed). Rows are a
    /// stream, computed as they are read: read them all before the next call.
    pub async fn next_simple(&mut self, batch: &mut SimpleBatch) -> Option<Vec<Result<Outcome>>> {
        if batch.failed {
            return None;
        }
        let item = batch.items.pop_front()?;
        let aborted = batch.aborted;
        let out = match item {
            SimpleItem::Refused(e, shown) => {
                vec![match self.begin_statement().await {
                    Ok(started) => self.audit(&shown, started, Err(e)),
                    Err(unaudited) => Err(unaudited),
                }]
            }
            SimpleItem::Failed(e) => vec![Err(e)],
            SimpleItem::Unparsed(kind, sql) => vec![self.run_unparsed(&kind, &sql, aborted).await],
            SimpleItem::Piece(piece) => {
                let r = Box::pin(self.execute_simple(&piece, aborted)).await;
                batch.aborted = false;
                r
            }
            SimpleItem::Statement(stmt) => {
                let r = self.execute_one(&stmt, vec![], aborted).await;
                if ends_transaction(&stmt.stmt) {
                    batch.aborted = false;
                }
                vec![r]
            }
        };
        if out.iter().any(|r| r.is_err()) {
            batch.failed = true;
        }
        Some(out)
    }
}

/// Collect a row stream into memory (for multi-statement messages).
/// The statements of one simple-query message still to run ([`Session::begin_simple`]).
pub struct SimpleBatch {
    items: std::collections::VecDeque<SimpleItem>,
    /// Whether the transaction block is failed (statements other than its end are refused).
    aborted: bool,
    /// A statement failed: the rest of the message does not run.
    failed: bool,
}

impl SimpleBatch {
    /// Statements left.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

pub(super) enum SimpleItem {
    /// Refused before it was parsed (audited with the text shown).
    Refused(Error, String),
    /// Did not parse.
    Failed(Error),
    /// A statement DataFusion's parser does not take.
    Unparsed(Box<PreparedKind>, String),
    /// One statement's text, of a message mixing both kinds.
    Piece(String),
    Statement(Arc<Parsed>),
}

/// First keywords of a statement, for "not supported" messages (never the literals).
/// The statements of a simple-query message, as texts (split at semicolons outside quotes and
/// comments); empty ones left out.
pub(super) fn split_statements(sql: &str) -> Vec<String> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let dialect = crate::pg::dialect::LakegateDialect::default();
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return vec![sql.to_string()];
    };
    let mut out = vec![];
    let mut cur = String::new();
    for t in tokens {
        if t == Token::SemiColon {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push_str(&t.to_string());
        }
    }
    out.push(cur);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

pub(super) fn statement_keyword(sql: &str) -> String {
    sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}
