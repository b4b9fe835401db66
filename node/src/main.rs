//! The `p2pe-node` binary: parses the command line and runs a subcommand.

use clap::{CommandFactory, FromArgMatches};
use p2pe_node::cli::{self, Cli, Command, LogFormat};

/// glibc's malloc gives every thread that allocates concurrently its own arena (up to 8 per
/// core) and keeps what was freed in each: under a long transaction load that fragmentation alone
/// was about 170 MB of the node's RSS (BENCHMARKS.md, "State on disk"). Two arenas keep it flat at
/// no measured cost in throughput. `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() {
    limit_malloc_arenas();
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
