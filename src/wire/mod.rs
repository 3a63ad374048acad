//! The PostgreSQL wire protocol (crate `pgwire`): startup and SCRAM authentication, simple and
//! extended query, cancel, and the encoding of Arrow results. Talks to a `Session`, never to
//! DataFusion internals.

pub mod auth;
pub mod cancel;
mod deferred;
pub mod encode;
mod execute;
pub mod jwt;
pub mod params;
mod respond;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use futures::{Sink, StreamExt, stream};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DescribeResponse, FieldFormat, FieldInfo, Response};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::extendedquery::{
    Describe, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::TransactionStatus;
use tokio::sync::Mutex;

use crate::error::{Error, SqlState};
use crate::session::{Engine, Outcome, Prepared, Session};
use cancel::{CancelRegistry, CancelSlot};
use encode::TextOptions;
use respond::{field_infos, format_for, outcome_response, tag};

/// A connection's session, created on its first statement.
pub type SessionHandle = Arc<Mutex<Session>>;

/// Turn our error into the client's ErrorResponse.
pub fn pg_error(e: Error) -> PgWireError {
    let code = e.state();
    // The log never carries values (a message may quote one of a governed table's).
    if code == SqlState::InternalError || code == SqlState::IoError {
        let error = crate::policy::audit::redact_message(&e.to_string());
        tracing::error!(%error, sqlstate = code.code(), "statement failed");
    } else if tracing::enabled!(tracing::Level::DEBUG) {
        let error = crate::policy::audit::redact_message(&e.to_string());
        tracing::debug!(%error, sqlstate = code.code(), "statement failed");
    }
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.code().into(),
        e.client_message(),
    )))
}

/// Everything one server hands to each connection.
pub struct Handlers {
    engine: Arc<Engine>,
    startup: Arc<auth::Startup>,
    query: Arc<QueryHandler>,
    cancel: Arc<CancelRegistry>,
}

impl Handlers {
    pub fn new(engine: Arc<Engine>, startup: auth::Startup) -> Arc<Handlers> {
        let cancel = Arc::new(CancelRegistry::default());
        Arc::new(Handlers {
            engine: engine.clone(),
            startup: Arc::new(startup),
            query: Arc::new(QueryHandler {
                engine,
                cancel: cancel.clone(),
                parser: Arc::new(Parser),
            }),
            cancel,
        })
    }

    /// Handlers for one connection; `reject` answers its startup with that error instead.
    pub fn for_connection(self: &Arc<Self>, reject: Option<Error>) -> Arc<ConnectionHandlers> {
        Arc::new(ConnectionHandlers {
            shared: self.clone(),
            reject: reject.map(Arc::new),
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

pub struct ConnectionHandlers {
    shared: Arc<Handlers>,
    reject: Option<Arc<Error>>,
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.shared.query.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.shared.query.clone()
    }
    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::new(auth::ConnectionStartup::new(
            self.shared.startup.clone(),
            self.reject.clone(),
        ))
    }
    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.shared.cancel.clone()
    }
    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.shared.query.clone()
    }
}

/// Simple and extended query.
pub struct QueryHandler {
    engine: Arc<Engine>,
    cancel: Arc<CancelRegistry>,
    parser: Arc<Parser>,
}

/// The per-connection state kept in pgwire's session extensions.
pub(super) struct ConnState {
    session: SessionHandle,
    slot: Arc<CancelSlot>,
    _registration: cancel::Registration,
    _backend: crate::session::BackendRegistration,
}

impl QueryHandler {
    /// The status after a message where pgwire says failed (which it keeps until the end).
    async fn recovered_status<C: ClientInfo>(&self, client: &mut C) {
        let status = self.settled(client, client.transaction_status()).await;
        client.set_transaction_status(status);
    }

    /// A failed `status` as the session knows it: 'I' when the block ended (a failed COMMIT
    /// ends it), 'T' when a ROLLBACK TO SAVEPOINT recovered it.
    async fn settled<C: ClientInfo>(
        &self,
        client: &C,
        status: TransactionStatus,
    ) -> TransactionStatus {
        if status != TransactionStatus::Error {
            return status;
        }
        let state = self.state(client);
        let session = state.session.lock().await;
        if !session.in_block() {
            TransactionStatus::Idle
        } else if session.recovered() {
            TransactionStatus::Transaction
        } else {
            status
        }
    }

    /// Run `f` on the connection's session as one statement: counted for graceful shutdown,
    /// stopped by a CancelRequest or statement_timeout (`cancelled` makes the result then), and
    /// returned with the session's text options and the notices it raised.
    /// Progress NOTICEs the statement raises while it runs are sent to `client` at once.
    async fn run<T, C>(
        &self,
        client: &mut C,
        state: &ConnState,
        f: impl AsyncFnOnce(&mut Session) -> T,
        cancelled: impl FnOnce(Error) -> T,
    ) -> (T, TextOptions, Vec<crate::session::Notice>)
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::{FutureExt, SinkExt};
        let _running = self.engine.statement_guard();
        let mut session = state.session.lock().await;
        let token = state.slot.begin(session.statement_timeout());
        let opts = TextOptions {
            timezone: session.settings.timezone(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        session.set_progress_sink(Some(tx));
        let out = {
            // A panic in a library (a bug there) fails the statement, not the connection.
            // The session's block's catalog draft is what its statements read and change.
            let draft = session.catalog_draft();
            let mut work = std::pin::pin!(
                draft.scope(std::panic::AssertUnwindSafe(f(&mut session)).catch_unwind())
            );
            let failed = loop {
                tokio::select! {
                    r = &mut work => match r {
                        Ok(v) => break Ok(v),
                        Err(panic) => break Err(Error::internal(format!(
                            "the statement failed on a bug: {}",
                            panic_text(panic.as_ref())
                        ))),
                    },
                    _ = token.cancelled() => break Err(state.slot.error()),
                    Some(n) = rx.recv() => {
                        // A client that went away fails the statement's own sends later.
                        if send_notices(client, vec![n]).await.is_ok() {
                            let _ = client.flush().await;
                        }
                    }
                }
            };
            match failed {
                Ok(v) => v,
                Err(e) => cancelled(e),
            }
        };
        session.set_progress_sink(None);
        let mut notices = Vec::new();
        while let Ok(n) = rx.try_recv() {
            notices.push(n);
        }
        notices.extend(session.take_notices());
        (out, opts, notices)
    }

    fn state<C: ClientInfo>(&self, client: &C) -> Arc<ConnState> {
        // Set by the JWT login (auth.rs), never from anything the client sent. Read before
        // get_or_insert_with, which holds the extensions' lock.
        let claimed = client.session_extensions().get::<crate::policy::Claimed>();
        client.session_extensions().get_or_insert_with(|| {
            let user = client
                .metadata()
                .get(pgwire::api::METADATA_USER)
                .cloned()
                .unwrap_or_default();
            let (pid, key) = client.pid_and_secret_key();
            let mut session = Session::new(self.engine.clone(), &user, claimed, pid);
            session.set_client(client.socket_addr().to_string());
            session.apply_startup(client.metadata());
            let (slot, registration) = self.cancel.register(pid, key);
            let backend = {
                let slot = slot.clone();
                self.engine
                    .register_backend(pid, &user, Arc::new(move || slot.cancel()))
            };
            ConnState {
                session: Arc::new(Mutex::new(session)),
                slot,
                _registration: registration,
                _backend: backend,
            }
        })
    }
}

/// `rows` until the statement is cancelled, then 57014. Applied to the batches of a result,
/// not to each row: a cancel is seen between batches (or at once while one is computed), and
/// streaming pays for one check per batch instead of one per row.
pub(super) fn cancellable<S, T>(
    rows: S,
    slot: Arc<CancelSlot>,
    guard: crate::session::RunningGuard,
) -> impl futures::Stream<Item = PgWireResult<T>> + Send + 'static
where
    S: futures::Stream<Item = PgWireResult<T>> + Send + 'static,
    T: Send + 'static,
{
    // A panic while a row is computed or encoded (a bug) fails the statement with XX000, never
    // the connection; the stream ends after it.
    let rows = Box::pin(
        std::panic::AssertUnwindSafe(rows)
            .catch_unwind()
            .map(|r| match r {
                Ok(item) => item,
                Err(panic) => Err(pg_error(Error::internal(format!(
                    "the statement failed on a bug: {}",
                    panic_text(panic.as_ref())
                )))),
            }),
    );
    stream::unfold(Some((rows, slot, guard)), |state| async move {
        let (mut rows, slot, guard) = state?;
        let token = slot.token();
        tokio::select! {
            biased;
            _ = token.cancelled() => Some((Err(pg_error(slot.error())), None)),
            item = rows.next() => item.map(|i| (i, Some((rows, slot, guard)))),
        }
    })
}

/// The message of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

async fn send_notices<C>(client: &mut C, notices: Vec<crate::session::Notice>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    use futures::SinkExt;
    for n in notices {
        let info = ErrorInfo::new(n.severity.into(), n.code.code().into(), n.message);
        client
            .feed(PgWireBackendMessage::NoticeResponse(info.into()))
            .await?;
    }
    Ok(())
}

/// COPY FROM STDIN's data: handed to the session, which streams it into the INSERT; the
/// command tag (or the error) comes at CopyDone, and nothing is written on CopyFail.
#[async_trait]
impl pgwire::api::copy::CopyHandler for QueryHandler {
    async fn on_copy_data<C>(
        &self,
        client: &mut C,
        data: pgwire::messages::copy::CopyData,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = self.state(client);
        let mut session = state.session.lock().await;
        session.copy_in_data(&data.data).await;
        Ok(())
    }

    async fn on_copy_done<C>(
        &self,
        client: &mut C,
        _done: pgwire::messages::copy::CopyDone,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = self.state(client);
        let mut session = state.session.lock().await;
        let draft = session.catalog_draft();
        let r = draft.scope(session.copy_in_done(None)).await;
        drop(session);
        match r {
            Ok(t) => {
                futures::SinkExt::send(
                    client,
                    PgWireBackendMessage::CommandComplete(tag(&t).into()),
                )
                .await?;
                Ok(())
            }
            Err(e) => Err(pg_error(e)),
        }
    }

    async fn on_copy_fail<C>(
        &self,
        client: &mut C,
        fail: pgwire::messages::copy::CopyFail,
    ) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = self.state(client);
        let r = state
            .session
            .lock()
            .await
            .copy_in_done(Some(fail.message.clone()))
            .await;
        match r {
            Err(e) => pg_error(e),
            Ok(_) => pg_error(Error::Data {
                sqlstate: SqlState::QueryCanceled,
                message: format!("COPY from stdin failed: {}", fail.message),
            }),
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn on_query<C>(
        &self,
        client: &mut C,
        query: pgwire::messages::simplequery::Query,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // pgwire's status cannot go from failed back to in-block, and it reads the status
        // before the message runs: a message starting with ROLLBACK TO SAVEPOINT in a failed
        // block runs as in-block (the session recovers the block when it succeeds, and an
        // error fails it again), so its ReadyForQuery says 'T' as PostgreSQL's does.
        if client.transaction_status() == TransactionStatus::Error
            && execute::starts_with_rollback_to(&query.query)
        {
            client.set_transaction_status(TransactionStatus::Transaction);
        }
        // each_statement settles the status it sends with ReadyForQuery.
        self.each_statement(client, query.query).await
    }

    /// Not called: [`QueryHandler::each_statement`] answers every simple query, one statement at
    /// a time. This gives the same answers all at once.
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = self.state(client);
        let aborted = client.transaction_status() == TransactionStatus::Error;
        let (results, opts, notices) = self
            .run(
                client,
                &state,
                async |s| s.execute_simple(query, aborted).await,
                |e| vec![Err(e)],
            )
            .await;
        send_notices(client, notices).await?;
        results
            .into_iter()
            .map(|r| self.response(r, &state, &opts))
            .collect()
    }
}

impl QueryHandler {
    /// A statement's outcome as pgwire's response (an error as an error response).
    fn response(
        &self,
        r: crate::error::Result<Outcome>,
        state: &ConnState,
        opts: &TextOptions,
    ) -> PgWireResult<Response> {
        match r.map_err(pg_error).and_then(|o| {
            // A BINARY cursor's rows go out in binary over the simple protocol.
            let format = match &o {
                Outcome::Rows { schema, .. }
                    if schema
                        .metadata()
                        .contains_key(crate::session::cursor::BINARY_ROWS) =>
                {
                    Format::UnifiedBinary
                }
                _ => Format::UnifiedText,
            };
            outcome_response(o, &format, state, opts.clone(), &self.engine)
        }) {
            Ok(resp) => Ok(resp),
            Err(PgWireError::UserError(info)) => Ok(Response::Error(info)),
            Err(other) => Err(other),
        }
    }

    /// A simple-query message (pgwire's `_on_query`), its statements run and answered one at a
    /// time: each statement's rows are streamed to the client before the next statement
    /// starts, so a message of thousands of statements holds one answer at a time.
    async fn each_statement<C>(&self, client: &mut C, sql: String) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        use pgwire::api::PgWireConnectionState as Conn;
        use pgwire::messages::response::EmptyQueryResponse;
        if !matches!(client.state(), Conn::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let mut status = client.transaction_status();
        client.set_state(Conn::QueryInProgress);
        if sql.chars().all(|c| c == ';' || c.is_whitespace()) {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        } else {
            let state = self.state(client);
            let mut batch = state
                .session
                .lock()
                .await
                .begin_simple(&sql, status == TransactionStatus::Error);
            drop(sql);
            loop {
                let (results, opts, notices) = self
                    .run(
                        client,
                        &state,
                        async |s| s.next_simple(&mut batch).await,
                        |e| Some(vec![Err(e)]),
                    )
                    .await;
                let Some(results) = results else { break };
                send_notices(client, notices).await?;
                let mut failed = false;
                for r in results {
                    match self.response(r, &state, &opts)? {
                        Response::EmptyQuery => {
                            client
                                .feed(PgWireBackendMessage::EmptyQueryResponse(
                                    EmptyQueryResponse::new(),
                                ))
                                .await?;
                        }
                        Response::Query(rows) => {
                            pgwire::api::query::send_query_response(client, rows, true).await?;
                        }
                        Response::Execution(tag) => {
                            pgwire::api::query::send_execution_response(client, tag).await?;
                        }
                        Response::TransactionStart(tag) => {
                            pgwire::api::query::send_execution_response(client, tag).await?;
                            status = status.to_in_transaction_state();
                        }
                        Response::TransactionEnd(tag) => {
                            pgwire::api::query::send_execution_response(client, tag).await?;
                            status = status.to_idle_state();
                        }
                        Response::Error(e) => {
                            client
                                .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                                .await?;
                            status = status.to_error_state();
                            failed = true;
                        }
                        Response::CopyIn(r) => {
                            pgwire::api::copy::send_copy_in_response(client, r).await?;
                            client.set_state(Conn::CopyInProgress(false));
                        }
                        Response::CopyOut(r) => {
                            pgwire::api::copy::send_copy_out_response(client, r).await?;
                        }
                        Response::CopyBoth(r) => {
                            pgwire::api::copy::send_copy_both_response(client, r).await?;
                            client.set_state(Conn::CopyInProgress(false));
                        }
                    }
                }
                // A COPY FROM STDIN takes the connection over: the rest of the message is
                // not run (as in PostgreSQL, COPY FROM STDIN ends a simple-query message).
                if failed || matches!(client.state(), Conn::CopyInProgress(_)) {
                    break;
                }
            }
        }
        if !matches!(client.state(), Conn::CopyInProgress(_)) {
            let status = self.settled(client, status).await;
            client.set_state(Conn::ReadyForQuery);
            client.set_transaction_status(status);
            pgwire::api::query::send_ready_for_query(client, status).await?;
        }
        Ok(())
    }
}

/// Parses (and for queries, plans) statements of the extended protocol.
pub struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let Some(state) = client.session_extensions().get::<ConnState>() else {
            return Err(pg_error(Error::internal("no session for this connection")));
        };
        let client_types: Vec<Option<DataType>> = types
            .iter()
            .map(|t| t.as_ref().and_then(params::arrow_type))
            .collect();
        let session = state.session.lock().await;
        let prepared = session
            .catalog_draft()
            .scope(session.prepare(sql, &client_types))
            .await
            .map_err(pg_error)?;
        if prepared.statement.is_none() {
            return Ok(None);
        }
        Ok(Some(prepared))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.iter().map(param_pg_type).collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        formats: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match &stmt.schema {
            Some(s) => field_infos(s, &stmt.names, formats.unwrap_or(&Format::UnifiedText)),
            None => vec![],
        })
    }
}

/// What Describe answers: ParameterDescription (statements only), then RowDescription or NoData.
struct Description {
    parameters: Option<Vec<Type>>,
    fields: Vec<FieldInfo>,
}

impl DescribeResponse for Description {
    fn parameters(&self) -> Option<&[Type]> {
        self.parameters.as_deref()
    }
    fn fields(&self) -> &[FieldInfo] {
        &self.fields
    }
    fn no_data() -> Self {
        Description {
            parameters: None,
            fields: vec![],
        }
    }
    fn is_no_data(&self) -> bool {
        self.fields.is_empty()
    }
}

/// pgwire's `send_describe_response`, queuing the messages instead of flushing each: like
/// PostgreSQL, the extended protocol's answers reach the socket at Sync or Flush, so a client's
/// Parse/Bind/Describe/Execute/Sync gets one write instead of one per message (pgbench's
/// prepared mode: four fewer system calls and TCP segments per query).
async fn feed_describe_response<C>(client: &mut C, description: &Description) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    use futures::SinkExt;
    use pgwire::api::results::DescribeResponse;
    if let Some(types) = description.parameters() {
        client
            .feed(PgWireBackendMessage::ParameterDescription(
                pgwire::messages::data::ParameterDescription::new(
                    types.iter().map(|t| t.oid()).collect(),
                ),
            ))
            .await?;
    }
    if description.is_no_data() {
        client
            .feed(PgWireBackendMessage::NoData(
                pgwire::messages::data::NoData::new(),
            ))
            .await?;
    } else {
        client
            .feed(PgWireBackendMessage::RowDescription(
                pgwire::messages::data::RowDescription::new(
                    description.fields().iter().map(Into::into).collect(),
                ),
            ))
            .await?;
    }
    Ok(())
}

/// The type the client declared for parameter `i` in Parse (OID 0, "unknown", is no declaration).
fn declared_type(stmt: &StoredStatement<Prepared>, i: usize) -> Option<Type> {
    stmt.parameter_types
        .get(i)
        .cloned()
        .flatten()
        .filter(|t| *t != Type::UNKNOWN)
}

fn param_pg_type(f: &datafusion::arrow::datatypes::Field) -> Type {
    match f.data_type() {
        DataType::Null => Type::TEXT,
        _ => encode::pg_type_of(f),
    }
}

/// Prepared statements, and portals, one session may hold at once: past it Parse (Bind) of a
/// new name answers 53400. PostgreSQL has no such bound, but each one holds a plan here; drivers
/// cache far fewer (pgjdbc 256, Npgsql 256).
const MAX_PREPARED_PER_SESSION: usize = 1000;

/// How many statements and portals a connection holds (pgwire's in-memory store).
fn stored<S: PortalStore>(store: &S) -> (usize, usize) {
    store
        .as_any()
        .downcast_ref::<pgwire::api::store::MemPortalStore<Prepared>>()
        .map(|s| (s.statement_count(), s.portal_count()))
        .unwrap_or((0, 0))
}

fn too_many(what: &str, hint: &str) -> PgWireError {
    pg_error(Error::Data {
        sqlstate: SqlState::ConfigurationLimitExceeded,
        message: format!(
            "too many {what} in this session: {MAX_PREPARED_PER_SESSION} at most; {hint}"
        ),
    })
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = Prepared;
    type QueryParser = Parser;

    /// pgwire's own, with the block's status as the session knows it (see `settled`).
    async fn on_sync<C>(
        &self,
        client: &mut C,
        _message: pgwire::messages::extendedquery::Sync,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        self.recovered_status(client).await;
        client.portal_store().rm_portal(pgwire::api::DEFAULT_NAME);
        let status = client.transaction_status();
        client
            .feed(PgWireBackendMessage::ReadyForQuery(
                pgwire::messages::response::ReadyForQuery::new(status),
            ))
            .await?;
        client.flush().await?;
        Ok(())
    }

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// pgwire's own with the rows streamed ([`execute`]), and CommandComplete (or
    /// PortalSuspended) queued for Sync or Flush instead of written at once ([`deferred`]).
    async fn on_execute<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::extendedquery::Execute,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        execute::execute(self, &mut deferred::Deferred::new(client), message).await
    }

    async fn on_parse<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::extendedquery::Parse,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Make sure the session exists before the parser looks for it.
        let _ = self.state(client);
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| pgwire::api::DEFAULT_NAME.to_owned());
        let store = client.portal_store();
        if store.get_statement(&name).is_none() && stored(store).0 >= MAX_PREPARED_PER_SESSION {
            return Err(too_many("prepared statements", "DEALLOCATE (Close) some"));
        }
        let parser = self.query_parser();
        match StoredStatement::parse(client, &message, parser).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        use futures::SinkExt;
        client
            .feed(PgWireBackendMessage::ParseComplete(
                pgwire::messages::extendedquery::ParseComplete::new(),
            ))
            .await?;
        Ok(())
    }

    /// Describe, answered like PostgreSQL: NoData whenever there are no result columns (pgwire's
    /// default sends an empty RowDescription for a statement that has parameters, which pgjdbc
    /// reads as "a result was returned").
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        let description = match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => match client.portal_store().get_statement(name) {
                Some(Entry::Value(stmt)) => {
                    let prepared = &stmt.statement;
                    let params = prepared
                        .param_types
                        .iter()
                        .enumerate()
                        .map(|(i, t)| declared_type(&stmt, i).unwrap_or_else(|| param_pg_type(t)))
                        .collect();
                    Description {
                        parameters: Some(params),
                        fields: self.parser.get_result_schema(prepared, None)?,
                    }
                }
                Some(Entry::Empty) => Description {
                    parameters: Some(vec![]),
                    fields: vec![],
                },
                None => return Err(PgWireError::StatementNotFound(name.to_owned())),
            },
            TARGET_TYPE_BYTE_PORTAL => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => Description {
                    parameters: None,
                    fields: self.parser.get_result_schema(
                        &portal.statement.statement,
                        Some(&portal.result_column_format),
                    )?,
                },
                Some(Entry::Empty) => Description {
                    parameters: None,
                    fields: vec![],
                },
                // psycopg describes `DECLARE name CURSOR ...`'s cursor as a portal: in
                // PostgreSQL SQL cursors and portals are one namespace.
                None => {
                    let state = self.state(client);
                    let schema = state.session.lock().await.cursor_schema(name);
                    match schema {
                        Some(schema) => Description {
                            parameters: None,
                            fields: field_infos(&schema, &[], &Format::UnifiedText),
                        },
                        None => return Err(PgWireError::PortalNotFound(name.to_owned())),
                    }
                }
            },
            other => return Err(PgWireError::InvalidTargetType(other)),
        };
        feed_describe_response(client, &description).await
    }

    /// pgwire's, with BindComplete queued rather than flushed (see [`feed_describe_response`]),
    /// and the session's bound on portals.
    async fn on_bind<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::extendedquery::Bind,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        let statement_name = message
            .statement_name
            .as_deref()
            .unwrap_or(pgwire::api::DEFAULT_NAME);
        let portal_name = message
            .portal_name
            .as_deref()
            .unwrap_or(pgwire::api::DEFAULT_NAME);
        let store = client.portal_store();
        if store.get_portal(portal_name).is_none() && stored(store).1 >= MAX_PREPARED_PER_SESSION {
            return Err(too_many("portals", "close some, or end the transaction"));
        }
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) => {
                if !message.parameters.is_empty() {
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "ERROR".to_owned(),
                        SqlState::ProtocolViolation.code().to_owned(),
                        format!(
                            "bind message supplies {} parameters, but prepared statement \"{statement_name}\" requires 0",
                            message.parameters.len(),
                        ),
                    ))));
                }
                client.portal_store().put_empty_portal(portal_name);
            }
            None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
        }
        client
            .feed(PgWireBackendMessage::BindComplete(
                pgwire::messages::extendedquery::BindComplete::new(),
            ))
            .await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = self.state(client);
        let prepared = &portal.statement.statement;
        let sql = prepared.sql.clone();
        let Some(kind) = prepared.statement.clone() else {
            return Ok(Response::EmptyQuery);
        };
        // Decode parameters by the type the client declared, else the inferred one.
        let mut values = Vec::with_capacity(portal.parameters.len());
        for (i, raw) in portal.parameters.iter().enumerate() {
            let t = declared_type(&portal.statement, i).unwrap_or_else(|| {
                prepared
                    .param_types
                    .get(i)
                    .map(param_pg_type)
                    .unwrap_or(Type::TEXT)
            });
            let binary = format_for(&portal.parameter_format, i) == FieldFormat::Binary;
            values.push(params::decode(raw.as_deref(), &t, binary).map_err(pg_error)?);
        }
        let aborted = client.transaction_status() == TransactionStatus::Error;
        let (result, opts, notices) = self
            .run(
                client,
                &state,
                async |s| s.execute_prepared(&kind, &sql, values, aborted).await,
                Err,
            )
            .await;
        send_notices(client, notices).await?;
        let outcome = result.map_err(pg_error)?;
        outcome_response(
            outcome,
            &portal.result_column_format,
            &state,
            opts,
            &self.engine,
        )
    }
}
