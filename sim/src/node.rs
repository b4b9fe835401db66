//! The dev chain: `p2pe-node dev` as a child process, and the market's `contracts.json`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use alloy_primitives::Address;
use anyhow::Context;

use crate::procs::{find_binary, free_port, ChildProcess};

/// The market deployment as written by `p2pe-node` (`contracts.json`): the bindings' one type.
pub use p2pe_bindings::MarketDeployment as Contracts;

/// Dev chain settings.
#[derive(Debug, Clone)]
pub struct DevChainConfig {
    /// Wall-clock slot length, seconds (≥ 5).
    pub slot_length: u32,
    /// Gate closure, seconds.
    pub gate_closure: u32,
    /// Grace period, seconds.
    pub grace_period: u32,
    /// Keep the chain here (else a temporary directory).
    pub datadir: Option<PathBuf>,
    /// Where `contracts.json` goes.
    pub contracts_out: PathBuf,
    /// Node log file.
    pub log: PathBuf,
    /// JSON-RPC port on 127.0.0.1 if it is free (else, and when None, a free port).
    pub rpc_port: Option<u16>,
    /// Accounts with reserved room in the node's pool (`--txpool-priority`): the settler and the
    /// meters, so that spam can never keep a reading or a settlement out (the dev chain adds the
    /// operator itself).
    pub priority: Vec<Address>,
    /// The market's price tick, thousandths of a credit per kWh (`p2pe-node dev --price-tick`).
    pub price_tick_milli: u64,
}

/// A running dev chain.
pub struct DevChain {
    /// The node process.
    pub process: ChildProcess,
    /// JSON-RPC URL.
    pub url: String,
    /// The market.
    pub contracts: Contracts,
    _tmp: Option<tempfile::TempDir>,
}

impl DevChain {
    /// Starts `p2pe-node dev --period 1 --no-keeper` with the market schedule of `cfg`.
    pub fn start(cfg: &DevChainConfig) -> anyhow::Result<Self> {
        let bin = find_binary("p2pe-node", "P2PE_NODE_BIN", "p2pe-node")?;
        let (datadir, tmp) = match &cfg.datadir {
            Some(d) => {
                if d.exists() {
                    std::fs::remove_dir_all(d).with_context(|| format!("cannot clear {}", d.display()))?;
                }
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new().prefix("p2pe-sim-chain-").tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let port = match cfg.rpc_port {
            // Port 0 would let the node pick one this process does not know: take a free one.
            Some(p) if p != 0 && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() => p,
            Some(0) => free_port()?,
            Some(p) => {
                let free = free_port()?;
                tracing::warn!("port {p} is taken; the dev chain listens on {free} instead");
                free
            }
            None => free_port()?,
        };
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(bin);
        // The simulator runs its own keeper (account 0, `engine`): no second one in the node.
        cmd.args(["dev", "--period", "1", "--no-keeper"])
            .args(["--slot-length", &cfg.slot_length.to_string()])
            .args(["--gate-closure", &cfg.gate_closure.to_string()])
            .args(["--grace-period", &cfg.grace_period.to_string()])
            .args(["--price-tick", &cfg.price_tick_milli.to_string()])
            .arg("--contracts-out")
            .arg(&cfg.contracts_out)
            .arg("--datadir")
            .arg(&datadir)
            .args(["--http-addr", &addr])
            .args(cfg.priority.iter().flat_map(|a| ["--txpool-priority".to_string(), format!("{a:#x}")]))
            .env("P2PE_LOG", std::env::var("P2PE_NODE_LOG").unwrap_or_else(|_| "warn".into()));
        let (process, _) =
            ChildProcess::spawn("p2pe-node", cmd, &cfg.log, "JSON-RPC:", Duration::from_secs(60))?;
        let contracts = Contracts::load(&cfg.contracts_out)?;
        if contracts.chain_id.is_none() {
            anyhow::bail!(
                "{}: chainId: missing (not a contracts.json written by p2pe-node)",
                cfg.contracts_out.display()
            );
        }
        Ok(Self { process, url: format!("http://{addr}"), contracts, _tmp: tmp })
    }
}
