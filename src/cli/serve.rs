//! `lakegate serve`: load the config, bind, print how to connect, serve until SIGINT/SIGTERM.

use crate::cli::ServeArgs;
use crate::config::{Config, Overrides};
use crate::error::{Error, Result};
use crate::server::Server;

pub fn run(args: ServeArgs) -> Result<()> {
    let config = Config::load(args.config.as_deref())?.apply(&Overrides {
        listen: args.listen.clone(),
        data_dir: args.data_dir.clone(),
    });
    let settings = config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let admin = settings.users.first().map(|u| u.name.clone()).unwrap_or_default();
        let database = settings.database.clone();
        let server = Server::bind(settings).await?;
        let addr = server.local_addr()?;
        println!(
            "lakegate listening on {addr}; connect with: psql postgresql://{admin}@{}:{}/{database}",
            addr.ip(),
            addr.port()
        );
        server.run(shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested: no new connections; waiting for running statements");
}
