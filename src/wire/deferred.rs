//! Execute's answer queued until Sync or Flush.
//!
//! pgwire's `on_execute` sends CommandComplete (and PortalSuspended) with `send`, a write to
//! the socket of its own, and Sync then writes ReadyForQuery in a second one. PostgreSQL holds
//! the extended protocol's answers until Sync or Flush (the protocol lets it: a client must
//! send one of them to be sure of reading anything), so a prepared statement's
//! Bind/Execute/Sync gets one write. [`Deferred`] wraps the connection for pgwire's own
//! `_on_execute`: it skips the flush that follows the messages that end an Execute's rows.
//! Every other message is flushed as before — CopyInResponse above all, which the client
//! waits for before it sends its data (deferring it deadlocks COPY FROM STDIN); ErrorResponse
//! too. Written here because pgwire takes no option for it; the wrapper only forwards.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Sink;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, SessionExtensions};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::startup::SecretKey;
use pgwire::messages::{PgWireBackendMessage, ProtocolVersion};
use rustls::pki_types::CertificateDer;

/// The connection `C`, with the flush after an Execute's last message skipped.
pub struct Deferred<'a, C> {
    inner: &'a mut C,
    /// The last message queued ends an Execute's rows: its flush waits for Sync or Flush.
    hold: bool,
}

impl<'a, C> Deferred<'a, C> {
    pub fn new(inner: &'a mut C) -> Self {
        Deferred { inner, hold: false }
    }
}

impl<C: Sink<PgWireBackendMessage> + Unpin> Sink<PgWireBackendMessage> for Deferred<'_, C> {
    type Error = C::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Pin::new(&mut *self.inner).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: PgWireBackendMessage) -> Result<(), C::Error> {
        self.hold = matches!(
            item,
            PgWireBackendMessage::DataRow(_)
                | PgWireBackendMessage::CommandComplete(_)
                | PgWireBackendMessage::PortalSuspended(_)
                | PgWireBackendMessage::EmptyQueryResponse(_)
        );
        Pin::new(&mut *self.inner).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        if self.hold {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Pin::new(&mut *self.inner).poll_close(cx)
    }
}

impl<C: ClientPortalStore> ClientPortalStore for Deferred<'_, C> {
    type PortalStore = C::PortalStore;
    fn portal_store(&self) -> &Self::PortalStore {
        self.inner.portal_store()
    }
}

impl<C: ClientInfo> ClientInfo for Deferred<'_, C> {
    fn socket_addr(&self) -> SocketAddr {
        self.inner.socket_addr()
    }
    fn is_secure(&self) -> bool {
        self.inner.is_secure()
    }
    fn protocol_version(&self) -> ProtocolVersion {
        self.inner.protocol_version()
    }
    fn set_protocol_version(&mut self, version: ProtocolVersion) {
        self.inner.set_protocol_version(version)
    }
    fn pid_and_secret_key(&self) -> (i32, SecretKey) {
        self.inner.pid_and_secret_key()
    }
    fn set_pid_and_secret_key(&mut self, pid: i32, secret_key: SecretKey) {
        self.inner.set_pid_and_secret_key(pid, secret_key)
    }
    fn state(&self) -> PgWireConnectionState {
        self.inner.state()
    }
    fn set_state(&mut self, new_state: PgWireConnectionState) {
        self.inner.set_state(new_state)
    }
    fn transaction_status(&self) -> TransactionStatus {
        self.inner.transaction_status()
    }
    fn set_transaction_status(&mut self, new_status: TransactionStatus) {
        self.inner.set_transaction_status(new_status)
    }
    fn metadata(&self) -> &HashMap<String, String> {
        self.inner.metadata()
    }
    fn metadata_mut(&mut self) -> &mut HashMap<String, String> {
        self.inner.metadata_mut()
    }
    fn session_extensions(&self) -> &SessionExtensions {
        self.inner.session_extensions()
    }
    fn sni_server_name(&self) -> Option<&str> {
        self.inner.sni_server_name()
    }
    fn client_certificates<'b>(&self) -> Option<&[CertificateDer<'b>]> {
        self.inner.client_certificates()
    }
}
