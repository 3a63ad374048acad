//! CancelRequest handling. pgwire's own cancel hook only covers planning; ours also stops a
//! result that is still streaming, so each statement gets a token that a cancel request fires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio_util::sync::CancellationToken;

/// The current statement of one connection: its cancellation token, whether the statement
/// timeout fired, and a token that ends the timeout timer when the next statement starts.
#[derive(Debug, Default)]
struct Current {
    token: CancellationToken,
    timed_out: Arc<AtomicBool>,
    done: CancellationToken,
}

/// The current statement's cancellation of one connection.
#[derive(Debug, Default)]
pub struct CancelSlot {
    current: Mutex<Current>,
}

impl CancelSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh token for a statement that is starting; `timeout` is `statement_timeout`.
    pub fn begin(&self, timeout: Option<Duration>) -> CancellationToken {
        let next = Current::default();
        let token = next.token.clone();
        if let Some(t) = timeout {
            let (token, flag, done) = (
                next.token.clone(),
                next.timed_out.clone(),
                next.done.clone(),
            );
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(t) => {
                        flag.store(true, Ordering::SeqCst);
                        token.cancel();
                    }
                    _ = done.cancelled() => {}
                }
            });
        }
        let previous = std::mem::replace(&mut *self.lock(), next);
        previous.done.cancel();
        token
    }

    /// The running statement's token.
    pub fn token(&self) -> CancellationToken {
        self.lock().token.clone()
    }

    /// Why the current statement was cancelled.
    pub fn error(&self) -> crate::error::Error {
        if self.lock().timed_out.load(Ordering::SeqCst) {
            crate::error::Error::StatementTimeout
        } else {
            crate::error::Error::Cancelled
        }
    }

    pub fn cancel(&self) {
        self.lock().token.cancel();
    }
}

type Key = (i32, Bytes);

/// All connections that can be cancelled, by backend pid and secret key.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    slots: Arc<Mutex<HashMap<Key, Arc<CancelSlot>>>>,
}

/// Removes the connection from the registry when the connection ends.
#[derive(Debug)]
pub struct Registration {
    key: Key,
    slots: Arc<Mutex<HashMap<Key, Arc<CancelSlot>>>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl CancelRegistry {
    pub fn register(&self, pid: i32, key: SecretKey) -> (Arc<CancelSlot>, Registration) {
        let slot = Arc::new(CancelSlot::default());
        let key = (pid, key.to_bytes());
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), slot.clone());
        (
            slot,
            Registration {
                key,
                slots: self.slots.clone(),
            },
        )
    }
}

#[async_trait]
impl CancelHandler for CancelRegistry {
    async fn on_cancel_request(&self, req: CancelRequest) {
        let key = (req.pid, req.secret_key.to_bytes());
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        // A wrong key is ignored silently, like PostgreSQL does.
        if let Some(slot) = slot {
            slot.cancel();
        }
    }
}
