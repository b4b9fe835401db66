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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("P2PE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
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
    match rt.block_on(p2pe_mqtt_bridge::run(cfg)) {
        Ok(()) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
