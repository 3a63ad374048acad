//! The `lakegate` binary: parse the command line, run, print errors with their causes, exit 2 on failure.

use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LAKEGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lakegate=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    quiet_panics();
    let cli = lakegate::cli::Cli::parse();
    if let Err(e) = lakegate::cli::run(cli) {
        eprintln!("lakegate: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(2);
    }
}

/// A panic (a bug: each one is caught where a statement or a connection runs and answered
/// XX000) is one error line in the log, with its message and place; its backtrace only at
/// debug level (`LAKEGATE_LOG=debug`) or with `RUST_BACKTRACE` set, so that no client can fill
/// the log with them.
fn quiet_panics() {
    let full = std::env::var_os("RUST_BACKTRACE").is_some()
        || std::env::var("LAKEGATE_LOG").is_ok_and(|v| v.contains("debug") || v.contains("trace"));
    if full {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%place, "caught a panic (a bug): {message}");
    }));
}
