//! The `p2pe-node` binary: parses the command line and runs a subcommand.

use clap::Parser;
use p2pe_node::cli::{self, Cli, Command};

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("P2PE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Dev(a) => cli::dev::run(a).await,
            Command::Run(a) => cli::run::run(a).await,
            Command::Init(a) => cli::init::run(a),
            Command::Genesis(a) => cli::genesis::run(a),
            Command::Account(a) => cli::account::run(a),
            Command::Check(a) => tokio::task::block_in_place(|| cli::check::run(a)),
            Command::Export(a) => cli::chainfile::export(a),
            Command::Testnet(a) => cli::testnet::run(a).await,
            Command::Import(a) => tokio::task::block_in_place(|| cli::chainfile::import(a)),
            Command::Dumpgenesis(a) => cli::chainfile::dump_genesis(a),
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
