//! The accept loop: TLS, the connection limit, and graceful shutdown.

pub mod demo;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::planner::Planner;
use crate::session::Engine;
use crate::storage::Warehouse;
use crate::wire::{Handlers, auth};

/// A bound, not yet running server.
/// How often the names of attached catalogs are reloaded.
const ATTACHED_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// Load the attached catalogs' names now, then keep them fresh in the background.
async fn refresh_attached(catalog: &std::sync::Arc<Catalog>) {
    let attached = catalog.attached();
    if attached.is_empty() {
        return;
    }
    for a in &attached {
        if let Err(e) = a.refresh().await {
            tracing::warn!(catalog = %a.name, error = %e, "attached catalog does not answer yet");
        }
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ATTACHED_REFRESH).await;
            for a in &attached {
                if let Err(e) = a.refresh().await {
                    tracing::warn!(catalog = %a.name, error = %e, "could not refresh an attached catalog");
                }
            }
        }
    });
}

pub struct Server {
    listener: TcpListener,
    handlers: Arc<Handlers>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    settings: Settings,
    runtimes: Runtimes,
    /// The CDC subscriptions' workers (stopped after their batch in flight at shutdown).
    ingest: Arc<crate::ingest::Ingest>,
}

/// The stack of every thread that parses, plans or computes statements: room for the deepest
/// statement `planner::limits` lets through (a debug build's frames included), many times
/// over. It is reserved address space; only what a statement uses is ever touched.
const STACK_BYTES: usize = 256 << 20;

/// The runtimes a server serves on, apart from its caller's: `connections` (the wire, sessions,
/// parsing and planning, cached answers) and `compute` (queries' execution, as many threads as
/// cores). A heavy query keeps the compute threads busy, never the connection ones, so others
/// still connect and get cheap answers at once (the split InfluxDB 3 and GreptimeDB use).
pub struct Runtimes {
    connections: Option<tokio::runtime::Runtime>,
    compute: Option<tokio::runtime::Runtime>,
}

impl Runtimes {
    fn new() -> Result<Runtimes> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let build = |name: &str, threads: usize| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(name)
                .thread_stack_size(STACK_BYTES)
                .enable_all()
                .build()
                .map_err(|e| Error::internal(format!("cannot start the {name} runtime: {e}")))
        };
        Ok(Runtimes {
            // More threads than cores: planning a pathological statement (a 2,000-term
            // expression plans for seconds) holds one, and the others keep answering; the
            // operating system shares the cores among them.
            connections: Some(build("lakegate-conn", (cores * 4).clamp(8, 64))?),
            compute: Some(build("lakegate-compute", cores)?),
        })
    }

    fn connections(&self) -> Result<&tokio::runtime::Runtime> {
        self.connections
            .as_ref()
            .ok_or_else(|| Error::internal("the connection runtime is gone"))
    }

    fn compute(&self) -> Result<tokio::runtime::Handle> {
        self.compute
            .as_ref()
            .map(|r| r.handle().clone())
            .ok_or_else(|| Error::internal("the compute runtime is gone"))
    }
}

impl Drop for Runtimes {
    /// Dropped inside an async context too (a test's server): without blocking.
    fn drop(&mut self) {
        for r in [self.connections.take(), self.compute.take()]
            .into_iter()
            .flatten()
        {
            r.shutdown_background();
        }
    }
}

impl Server {
    /// Open the warehouse, load the catalog, create demo data on first start, and bind the port.
    pub async fn bind(settings: Settings) -> Result<Server> {
        if let Some(jwt) = &settings.jwt {
            crate::wire::jwt::check_config(jwt)?;
        }
        crate::storage::delta::register_object_stores();
        let warehouse = Warehouse::open(
            &settings.warehouse,
            settings.s3.clone(),
            settings.metadata_dir.as_deref(),
        )?;
        warehouse.check().await?;
        let catalog = Catalog::open(warehouse, settings.default_format)?;
        catalog.drop_leftover_temp_schemas().await;
        for spec in &settings.catalogs {
            catalog.attach(crate::catalog::attached::AttachedCatalog::connect(spec).await?);
        }
        refresh_attached(&catalog).await;
        let runtimes = Runtimes::new()?;
        let planner = Planner::new(
            catalog,
            &settings.database,
            &settings.engine,
            runtimes.compute()?,
        )?;
        let admins = settings
            .users
            .iter()
            .filter(|u| u.admin)
            .map(|u| u.name.clone())
            .collect();
        let mask_key = settings.mask_key.as_ref().map(|k| k.0.as_bytes().to_vec());
        let policies =
            crate::policy::PolicySet::load(&settings.policy_dir, settings.policy_dir_configured)
                .await?
                .with_mask_key(mask_key.clone());
        let watch = crate::policy::PolicyWatch::new(
            settings.policy_dir.clone(),
            mask_key,
            &policies,
            settings.policy_dir_configured,
        );
        tracing::info!(source = %policies.source, "policies loaded");
        let audit = crate::policy::audit::AuditLog::open(
            planner.catalog().warehouse().meta_path("audit"),
            settings.audit_sync,
        )?;
        let cache = Arc::new(crate::mv::cache::ResultCache::new(
            settings.engine.result_cache,
        ));
        planner.catalog().add_system_schema(
            "lakegate",
            Arc::new(crate::policy::audit::SystemSchema {
                audit: audit.clone(),
                mv: crate::mv::SystemTables {
                    catalog: planner.catalog().clone(),
                    cache: cache.clone(),
                },
            }),
        );
        let admission = crate::session::admission::Admission::new(
            settings.engine.max_running_queries,
            settings.engine.max_queued,
            settings.engine.queue_timeout,
            settings.limits.clone(),
        );
        let engine = Engine::new(
            planner,
            settings.max_connections,
            admins,
            crate::session::Governance {
                policies,
                watch,
                audit,
            },
            cache,
            admission,
        );
        // Materialized views that refresh by themselves (after source commits, or on a schedule).
        tokio::spawn(crate::session::matview::refresher(Arc::downgrade(&engine)));
        // CDC subscriptions (their workers start now; the statements reach them by the engine).
        let ingest = crate::ingest::Ingest::start(&engine)?;
        if settings.demo.enabled {
            demo::ensure_demo_data(&engine, &settings).await?;
        }
        demo::run_setup_sql(&engine, &settings).await?;
        let (tls, cert_pem) = match &settings.tls {
            Some((cert, key)) => {
                let (acceptor, pem) = tls_acceptor(cert, key)?;
                (Some(acceptor), Some(pem))
            }
            None => (None, None),
        };
        let startup = auth::Startup::new(
            &settings.users,
            settings.scram_iterations,
            cert_pem.as_deref(),
            settings.tls_required,
            settings.jwt.as_ref(),
        )?;
        let handlers = Handlers::new(engine, startup);
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", settings.listen)))?;
        Ok(Server {
            listener,
            handlers,
            tls,
            settings,
            runtimes,
            ingest,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serve until `shutdown` resolves; then stop accepting, give running statements the grace
    /// period to finish, and return.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let active = Arc::new(AtomicUsize::new(0));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    let _ = socket.set_nodelay(true);
                    let n = active.fetch_add(1, Ordering::SeqCst) + 1;
                    let reject = (n > self.settings.max_connections)
                        .then(|| Error::TooManyConnections("sorry, too many clients already".into()));
                    let handlers = self.handlers.for_connection(reject);
                    let tls = self.tls.clone();
                    let active = active.clone();
                    self.runtimes.connections()?.spawn(async move {
                        let span = tracing::info_span!("connection", %peer);
                        let _e = span.enter();
                        drop(_e);
                        if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                            // One line per connection refused or broken off (a malformed
                            // message, a failed handshake, a client gone mid-message).
                            tracing::info!(%peer, error = %e, "connection ended with an error");
                        }
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
        }
        drop(self.listener);
        let engine = self.handlers.engine().clone();
        let deadline = tokio::time::Instant::now() + self.settings.shutdown_grace;
        while engine.running_statements() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the last responses reach their clients before the process ends.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let left = engine.running_statements();
        if left > 0 {
            tracing::warn!(
                statements = left,
                "grace period over; stopping with statements still running"
            );
        }
        self.ingest.shutdown().await;
        tracing::info!("lakegate stopped");
        Ok(())
    }
}

/// A TLS acceptor from PEM files; also returns the certificate PEM for SCRAM channel binding.
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(pgwire::tokio::TlsAcceptor, Vec<u8>)> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    // Two crypto providers are compiled in; pick one before the first handshake.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cert_pem = std::fs::read(cert)
        .map_err(|e| Error::Config(format!("cannot read tls.cert {}: {e}", cert.display())))?;
    let key_pem = std::fs::read(key)
        .map_err(|e| Error::Config(format!("cannot read tls.key {}: {e}", key.display())))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<std::result::Result<Vec<CertificateDer>, _>>()
        .map_err(|e| Error::Config(format!("invalid tls.cert {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "tls.cert {} holds no certificate",
            cert.display()
        )));
    }
    let key: PrivateKeyDer = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| Error::Config(format!("invalid tls.key {}: {e}", key.display())))?
        .ok_or_else(|| Error::Config(format!("tls.key {} holds no private key", key.display())))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("tls certificate and key do not fit: {e}")))?;
    Ok((pgwire::tokio::TlsAcceptor::from(Arc::new(config)), cert_pem))
}
