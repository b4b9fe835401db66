//! `p2pe-mqtt-bridge --config bridge.toml`: runs the bridge. `--check` validates the configuration and
//! decrypts the keystores, then exits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Smart-meter readings from MQTT to signed on-chain meter readings.
#[derive(Parser, Debug)]
#[command(name = "p2pe-mqtt-bridge", version)]
struct Args {
    /// The TOML configuration file (see README, "MQTT bridge": every key with its default, including
    /// the plausibility limits `meters.<id>.rated_current_a` / `phases` / `voltage_v` / `device_id`,
    /// `chain.confirmations` and the dead-letter bounds in `[limits]`).
    #[arg(long, short, env = "P2PE_BRIDGE_CONFIG")]
    config: PathBuf,
    /// Validate the configuration and decrypt the keystores, then exit.
    #[arg(long)]
    check: bool,
    /// How log lines are written to stderr: `text`, or `json` (one object per line) for journald,
    /// Loki or Elasticsearch. The level comes from P2PE_LOG (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("P2PE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => logs.json().init(),
    }
    let cfg = match p2pe_mqtt_bridge::config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        return match p2pe_mqtt_bridge::keys::load_all(&cfg)
            .map_err(p2pe_mqtt_bridge::StartError::from)
            .and_then(|_| {
                p2pe_mqtt_bridge::mqtt::tls_config(&cfg.broker)?;
                p2pe_mqtt_bridge::rpc::tls_config(cfg.chain.rpc_ca_file.as_deref())?;
                Ok(())
            }) {
            Ok(()) => {
                println!("config ok: {} meters", cfg.meters.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    // SIGTERM (systemd's stop) or Ctrl-C ends the run where it is. Nothing is lost: a reading is
    // acknowledged to the broker only once it is committed to the outbox, and a transaction is
    // recorded before it is sent, so the next start resumes as after a crash (bridge_crash.rs).
    let stopped = rt.block_on(async {
        tokio::select! {
            r = p2pe_mqtt_bridge::run(cfg) => Some(r),
            () = shutdown_signal() => None,
        }
    });
    match stopped {
        None => {
            tracing::info!("stopping on a shutdown signal");
            ExitCode::SUCCESS
        }
        Some(Ok(())) => ExitCode::from(1),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
