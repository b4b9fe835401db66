//! The `p2pe-node` binary: parses the command line and runs a subcommand.

use clap::{CommandFactory, FromArgMatches};
use p2pe_node::cli::{self, Cli, Command, LogFormat};

fn main() {
    let cli = parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("P2PE_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
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
            Command::PeerId(a) => cli::peer_id::run(a),
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Parses the command line, with the settings of `--config FILE` (see `cli::config_file`).
fn parse() -> Cli {
    let command = Cli::command();
    let args = match cli::config_file::expand(&command, std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let matches = command.get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}
