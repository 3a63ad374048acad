//! The audit hand-off: a statement begins (nothing seen, policies re-read), runs, and leaves
//! exactly one audit record; rows are audited when their stream ends ([`AuditedStream`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use super::{CommandTag, Outcome, Parsed, Seen, Session, aborted_error, ends_transaction};
use crate::error::{Error, Result, SqlState};

impl Session {
    pub(super) fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write the statement's audit record now, or, for rows, when its stream ends.
    pub(super) fn audit(
        &self,
        statement: &str,
        started: std::time::Instant,
        r: Result<Outcome>,
    ) -> Result<Outcome> {
        let seen = std::mem::take(&mut *self.seen());
        let policies = self.engine.policies();
        let attributes =
            crate::policy::audit::attributes_text(&policies.attributes(&self.subject()));
        // Literals may be values of masked columns or secrets: never logged. (The last text's
        // redaction is kept: a session repeats its statements.)
        let statement = {
            let mut last = self.redacted.lock().unwrap_or_else(|p| p.into_inner());
            match &*last {
                Some((text, redacted)) if text == statement => redacted.clone(),
                _ => {
                    let redacted = crate::policy::audit::redact_literals(statement);
                    *last = Some((statement.to_string(), redacted.clone()));
                    redacted
                }
            }
        };
        let mut record = crate::policy::audit::AuditRecord {
            time: chrono::Utc::now().to_rfc3339(),
            principal: self.principal.name.clone(),
            role: self.principal.role.clone(),
            attributes,
            client: self.client.clone(),
            statement,
            reads: seen.reads.into_iter().collect(),
            writes: seen.writes.into_iter().collect(),
            policies: seen.policies.into_iter().collect(),
            policy_version: format!("{}@{}", policies.source, policies.version),
            decision: "allowed".into(),
            ..Default::default()
        };
        let log = self.engine.audit.clone();
        match r {
            Ok(Outcome::Rows {
                schema,
                names,
                stream,
                command,
            }) => Ok(Outcome::Rows {
                schema,
                names,
                stream: Box::pin(AuditedStream {
                    inner: stream,
                    record: Some(record),
                    log,
                    started,
                    rows: 0,
                    syncing: None,
                    ended: false,
                }),
                command,
            }),
            Ok(o) => {
                record.rows = match &o {
                    Outcome::Command(t) | Outcome::Commit(t) => t.rows.map(|r| r as u64),
                    _ => None,
                };
                record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
                log.write(&record).map(|()| o)
            }
            Err(e) => {
                let code = e.state();
                record.decision = if code == SqlState::InsufficientPrivilege {
                    "denied"
                } else {
                    "failed"
                }
                .into();
                record.sqlstate = Some(code.code().to_string());
                record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
                // Not audited: the audit log's error is the answer.
                log.write(&record)?;
                Err(e)
            }
        }
    }

    /// A statement starts: nothing seen yet, the policies in force re-read; its start time.
    /// Refused (58030) when its audit record could not be written: nothing runs unaudited.
    pub(super) async fn begin_statement(&self) -> Result<std::time::Instant> {
        self.engine.audit.ready()?;
        *self.seen() = Seen::default();
        self.engine.refresh_policies().await;
        Ok(std::time::Instant::now())
    }

    /// Execute one statement, refusing all but the end of the transaction once it failed;
    /// its audit record is written whatever happens.
    pub async fn execute_one(
        &mut self,
        stmt: &Arc<Parsed>,
        params: Vec<ScalarValue>,
        aborted: bool,
    ) -> Result<Outcome> {
        self.execute_one_as(stmt, params, aborted, None).await
    }

    /// `execute_one`, its audit record showing `shown` (the COPY a SELECT stands for) when given.
    pub(super) async fn execute_one_as(
        &mut self,
        stmt: &Arc<Parsed>,
        params: Vec<ScalarValue>,
        aborted: bool,
        shown: Option<&str>,
    ) -> Result<Outcome> {
        let started = self.begin_statement().await?;
        let aborted = aborted && !self.recovered;
        self.running = Some(stmt.clone());
        let r = self
            .execute_one_unaudited(&stmt.stmt, params, aborted)
            .await;
        self.running = None;
        if !self.in_transaction {
            self.drop_temp_at_commit().await;
        }
        self.sync_overlays();
        match &r {
            Ok(Outcome::RolledBack) => self.recovered = true,
            Ok(Outcome::Begin | Outcome::Commit(_)) => self.recovered = false,
            Err(_) if self.in_transaction => self.recovered = false,
            _ => {}
        }
        self.audit(shown.unwrap_or_else(|| stmt.text()), started, r)
    }

    pub(super) async fn execute_one_unaudited(
        &mut self,
        stmt: &DfStatement,
        params: Vec<ScalarValue>,
        aborted: bool,
    ) -> Result<Outcome> {
        if aborted {
            if ends_transaction(stmt) {
                self.pending.clear();
                self.draft.discard().await;
                self.close_block();
                return Ok(Outcome::Commit(CommandTag::new("ROLLBACK")));
            }
            // ROLLBACK TO SAVEPOINT recovers a failed block (psqlODBC wraps statements so).
            let to_savepoint = matches!(stmt, DfStatement::Statement(s)
                if matches!(s.as_ref(), SqlStatement::Rollback { savepoint: Some(_), .. }));
            if !to_savepoint {
                return Err(aborted_error());
            }
        }
        self.execute(stmt, params).await
    }
}

/// A result stream that writes its statement's audit record, with the rows it returned, when
/// it ends (or is dropped: a cancelled or abandoned query is recorded too).
pub(super) struct AuditedStream {
    inner: SendableRecordBatchStream,
    record: Option<crate::policy::audit::AuditRecord>,
    log: Arc<crate::policy::audit::AuditLog>,
    started: std::time::Instant,
    rows: u64,
    /// After the last batch: the record's line on its way to disk (the end is reported once it
    /// is there, without holding a runtime thread while it syncs).
    syncing: Option<std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>>,
    /// The rows and the record are done with (nothing more is polled).
    ended: bool,
}

impl AuditedStream {
    fn record(&mut self, sqlstate: Option<SqlState>) -> Option<crate::policy::audit::AuditRecord> {
        let mut r = self.record.take()?;
        r.rows = Some(self.rows);
        r.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        if let Some(code) = sqlstate {
            r.decision = if code == SqlState::InsufficientPrivilege {
                "denied"
            } else {
                "failed"
            }
            .into();
            r.sqlstate = Some(code.code().to_string());
        }
        Some(r)
    }

    fn finish(&mut self, sqlstate: Option<SqlState>) {
        if let Some(r) = self.record(sqlstate) {
            // The statement already failed or was dropped: the log said why it could not be
            // written (AuditLog::failed), and the next statement is refused.
            let _ = self.log.write(&r);
        }
    }
}

impl futures::Stream for AuditedStream {
    type Item = datafusion::error::Result<RecordBatch>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(syncing) = self.syncing.as_mut() {
            return match syncing.as_mut().poll(cx) {
                Poll::Ready(r) => {
                    self.syncing = None;
                    self.ended = true;
                    // The rows were sent, their record could not be written: the statement
                    // ends with the audit log's error.
                    Poll::Ready(r.err().map(|e| Err(e.into())))
                }
                Poll::Pending => Poll::Pending,
            };
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.rows += b.num_rows() as u64;
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e = Error::from(e);
                self.finish(Some(e.state()));
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => match self.record(None) {
                Some(r) => {
                    self.syncing = Some(Box::pin(self.log.write_async(&r)));
                    self.as_mut().poll_next(cx)
                }
                None => {
                    self.ended = true;
                    Poll::Ready(None)
                }
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

impl datafusion::physical_plan::RecordBatchStream for AuditedStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Drop for AuditedStream {
    fn drop(&mut self) {
        self.finish(None);
    }
}
