//! Notices, warnings and progress messages a statement sends to its client.

use super::Session;
use crate::error::SqlState;

impl Session {
    pub(crate) fn warn(&mut self, code: SqlState, message: String) {
        self.notices.push(Notice {
            severity: "WARNING",
            code,
            message,
        });
    }

    /// While a statement runs, send progress NOTICEs to `sink` as they happen (None: stop).
    pub fn set_progress_sink(&mut self, sink: Option<tokio::sync::mpsc::UnboundedSender<Notice>>) {
        self.progress = sink;
    }

    /// Tell the client (now, while the statement still runs) and the log how a long operation
    /// is getting on.
    pub(crate) fn progress(&mut self, message: String) {
        tracing::info!("{message}");
        let n = Notice {
            severity: "NOTICE",
            code: SqlState::SuccessfulCompletion,
            message,
        };
        match &self.progress {
            Some(tx) => {
                if let Err(e) = tx.send(n) {
                    self.notices.push(e.0);
                }
            }
            None => self.notices.push(n),
        }
    }

    /// Until the returned guard drops, a NOTICE every `every` saying `what` is still running.
    pub(crate) fn heartbeat(&self, what: String, every: std::time::Duration) -> Heartbeat {
        let Some(tx) = self.progress.clone() else {
            return Heartbeat(None);
        };
        let started = std::time::Instant::now();
        Heartbeat(Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let message = format!(
                    "{what}: still running after {} s",
                    started.elapsed().as_secs()
                );
                tracing::info!("{message}");
                let n = Notice {
                    severity: "NOTICE",
                    code: SqlState::SuccessfulCompletion,
                    message,
                };
                if tx.send(n).is_err() {
                    break;
                }
            }
        })))
    }

    /// Report progress or a result to the client as a NOTICE.
    pub(crate) fn notice(&mut self, message: String) {
        self.notices.push(Notice {
            severity: "NOTICE",
            code: SqlState::SuccessfulCompletion,
            message,
        });
    }

    /// Notices raised since the last call, to send to the client.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }
}

/// Stops a [`Session::heartbeat`] when dropped.
#[derive(Debug)]
pub(crate) struct Heartbeat(Option<tokio::task::JoinHandle<()>>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// A NOTICE or WARNING for the client, sent before the statement's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub severity: &'static str,
    pub code: SqlState,
    pub message: String,
}
