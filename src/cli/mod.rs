//! The command line: one file per subcommand.

pub mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Result;

#[derive(Debug, Parser)]
#[command(
    name = "lakegate",
    version,
    about = "A governed SQL gateway to the lakehouse, speaking the PostgreSQL protocol"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (defaults: 127.0.0.1:5433, warehouse ./lakegate-data, demo data).
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A TOML config file (see examples/lakegate.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// HOST:PORT to listen on (overrides server.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// The warehouse folder or URL (overrides storage.warehouse).
    #[arg(long = "data-dir")]
    pub data_dir: Option<String>,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
    }
}
