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
