//! `p2pe-node run`.

use std::path::PathBuf;

use clap::Args;

use super::common::{load_keystore, read_password, NodeArgs, P2pArgs, RpcArgs, SealArgs, ShutdownSignal};
use crate::chain::ChainSpec;
use crate::crypto::SigningKey;
use crate::node::{Node, NodeConfig};
use crate::storage::Store;

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Read settings from a TOML file as well: each key is a flag's long name without `--`
    /// (`datadir = "/var/lib/p2pe"`, `archive = true`, `bootnodes = ["/ip4/…"]`). A flag given on
    /// the command line wins over the file; an unknown key is an error.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory created by `p2pe-node init`.
    #[arg(long)]
    pub datadir: PathBuf,
    /// Keystore (Web3 Secret Storage JSON) of this node's signer; without it the node only follows.
    #[arg(long)]
    pub keystore: Option<PathBuf>,
    /// File whose first line is the keystore password (else the P2PE_PASSWORD variable).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Run the market keeper with the key of this keystore (Web3 Secret Storage): it opens the
    /// next 4 slots whose gate is open ahead of their orders (EnergyMarket.openSlot; only an
    /// operator opens slots, an order for a slot not open is refused). The key must be a registry operator (p2pe-node genesis
    /// --market-admin ADDRESS) and should not be used by anything else (a shared nonce races).
    /// Run one keeper per network.
    #[arg(long)]
    pub keeper_keystore: Option<PathBuf>,
    /// File whose first line is the keeper keystore's password (else the P2PE_KEEPER_PASSWORD
    /// variable).
    #[arg(long, requires = "keeper_keystore")]
    pub keeper_password_file: Option<PathBuf>,
    /// The keeper also clears every slot after its gate closure and settles it once its
    /// settlement opens: every account that ever had a meter and every account with an order in
    /// the slot, in parts of 150 (clear and settle are open to anyone; already settled accounts
    /// are skipped). Without it, something else must settle (the simulator's settler, the dApp's
    /// Settle button): a position left unsettled for 4,096 slots expires and forfeits its escrow.
    #[arg(long, requires = "keeper_keystore")]
    pub keeper_settle: bool,
    /// Largest block this node seals, in bytes of RLP. It may only lower the chain's limit
    /// (config.p2pe.maxBlockBytes in the genesis, default 8 MiB), which every node enforces on
    /// every block; at least 262144.
    #[arg(long)]
    pub max_block_bytes: Option<u64>,
    #[command(flatten)]
    pub seal: SealArgs,
    #[command(flatten)]
    pub rpc: RpcArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub p2p: P2pArgs,
}

/// The keeper's key (`--keeper-keystore`), decrypted with `--keeper-password-file` or
/// `P2PE_KEEPER_PASSWORD`; refused on a chain without an energy market.
fn keeper_key(args: &RunArgs, has_market: bool) -> anyhow::Result<Option<SigningKey>> {
    Ok(match &args.keeper_keystore {
        Some(path) => {
            if !has_market {
                anyhow::bail!(
                    "--keeper-keystore: this chain has no energy market, there are no slots to open"
                );
            }
            let password = match &args.keeper_password_file {
                Some(file) => read_password(Some(file))?,
                None => std::env::var("P2PE_KEEPER_PASSWORD").map_err(|_| {
                    anyhow::anyhow!(
                        "no keeper keystore password: pass --keeper-password-file FILE or set P2PE_KEEPER_PASSWORD"
                    )
                })?,
            };
            Some(load_keystore(path, &password)?)
        }
        None => None,
    })
}

/// Runs `run`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Listening before anything is announced: see `ShutdownSignal`.
    let shutdown = ShutdownSignal::install()?;
    let genesis = {
        let store = Store::open(&args.datadir, None)?;
        store.genesis_json()?.ok_or_else(|| {
            anyhow::anyhow!(
                "{} is not initialised: run `p2pe-node init --genesis FILE --datadir DIR` first",
                args.datadir.display()
            )
        })?
    };
    let spec = ChainSpec::from_json(&genesis)?;
    let market = spec.p2pe.market.clone();
    let signer = match &args.keystore {
        Some(path) => Some(load_keystore(path, &read_password(args.password_file.as_deref())?)?),
        None => None,
    };
    let keeper = keeper_key(&args, market.is_some())?;
    if let Some(key) = &signer {
        if !spec.signers.contains(&key.address()) {
            tracing::warn!(signer = %key.address(), "this key is not a genesis signer; it will seal only once voted in");
        }
    }
    let node = Node::start(
        spec,
        NodeConfig {
            datadir: args.datadir.clone(),
            http_addr: args.rpc.http_addr,
            signer: signer.clone(),
            dev_accounts: vec![],
            pool: {
                // The keeper must never be shut out of the pool by spam.
                let mut pool = args.node.pool();
                pool.priority.extend(keeper.as_ref().map(|k| k.address()));
                pool
            },
            rpc: args.rpc.config(),
            state_history: args.node.state_history(),
            chain: args.node.chain(),
            network: args.p2p.config(&args.datadir),
            keeper: keeper.clone(),
            keeper_settles: args.keeper_settle,
            metrics: args.node.metrics,
            seal: crate::chain::SealLimits {
                gas_limit_target: args.seal.gas_limit_target,
                max_block_bytes: args.max_block_bytes,
            },
        },
    )
    .await?;
    println!("p2pe-node running on {}", args.datadir.display());
    if let Some(key) = &signer {
        println!("Sealing as {}", key.address());
    }
    if let Some(m) = &market {
        println!("{}", m.describe());
    }
    if let Some(k) = &keeper {
        let settles = if args.keeper_settle { "; clears and settles every slot" } else { "" };
        println!(
            "Keeper: {} (opens the next {} slots ahead{settles})",
            k.address(),
            crate::keeper::DEFAULT_HORIZON
        );
    }
    if let Some(net) = &node.network {
        // Give the listener a moment to report its address.
        for _ in 0..50 {
            if !net.listen_addrs.lock().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        for addr in net.listen_addrs.lock().iter() {
            println!("P2P: {addr}");
        }
    }
    println!("JSON-RPC: http://{0} (WebSocket: ws://{0})", node.http_addr);
    shutdown.recv().await;
    println!("Shutting down");
    node.stop().await;
    Ok(())
}
