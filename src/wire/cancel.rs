//! CancelRequest handling. pgwire's own cancel hook only covers planning; ours also stops a
//! result that is still streaming, so each statement gets a token that a cancel request fires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio_util::sync::CancellationToken;

/// The current statement's cancellation token of one connection.
#[derive(Debug, Default)]
pub struct CancelSlot {
    current: Mutex<CancellationToken>,
}

impl CancelSlot {
    /// A fresh token for a statement that is starting.
    pub fn begin(&self) -> CancellationToken {
        let t = CancellationToken::new();
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = t.clone();
        t
    }

    /// The running statement's token.
    pub fn token(&self) -> CancellationToken {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn cancel(&self) {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cancel();
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
