//! `p2pe-node testnet`: a local multi-node network in one command, for trying the network and
//! for tests. Generates signer keystores, a genesis (market included), the data directories and
//! node identities, then starts every node as its own process on loopback and prints the URLs.

use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use alloy_primitives::{B256, U256};
use clap::Args;
use serde::Serialize;

use super::common::ShutdownSignal;
use super::dev::{dev_keys, DEV_MNEMONIC};
use crate::chain::{build_genesis, deploy_market, ChainSpec, GenesisParams, MarketConfig};
use crate::storage::Store;
use p2pe_keystore::{write_keystore, write_secret_file, Kdf};

/// Arguments of `testnet`.
#[derive(Debug, Args)]
pub struct TestnetArgs {
    /// Number of signer nodes.
    #[arg(long, default_value_t = 3)]
    pub signers: usize,
    /// Number of follower (non-signing) nodes.
    #[arg(long, default_value_t = 1)]
    pub followers: usize,
    /// Directory for keys, genesis and data directories (created; must be empty or absent).
    #[arg(long)]
    pub dir: PathBuf,
    /// Seconds between blocks.
    #[arg(long, default_value_t = 1)]
    pub period: u64,
    /// Chain id.
    #[arg(long, default_value_t = 1338)]
    pub chain_id: u64,
    /// First JSON-RPC port (node i uses base + i).
    #[arg(long, default_value_t = 8545)]
    pub rpc_base_port: u16,
    /// First peer-network port (node i uses base + i).
    #[arg(long, default_value_t = 30303)]
    pub p2p_base_port: u16,
    /// Largest block, in bytes of RLP (config.p2pe.maxBlockBytes in the genesis, a chain rule).
    /// Default 8 MiB; 262144 to 12582912.
    #[arg(long)]
    pub max_block_bytes: Option<u64>,
    /// Only write everything (including DIR/testnet.json with each node's command line); start nothing.
    #[arg(long)]
    pub generate_only: bool,
    /// Encrypt the signers' keystores with geth's light scrypt cost (n = 4096, p = 6) instead of
    /// the standard one, so that nodes start in milliseconds rather than about a second each. For
    /// tests and throwaway networks only.
    #[arg(long)]
    pub light_kdf: bool,
}

/// One node of the testnet, as written to `testnet.json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestnetNode {
    /// `signer-0`, `follower-0`, ...
    pub name: String,
    /// Signing address, for signers.
    pub signer: Option<String>,
    /// Data directory.
    pub datadir: PathBuf,
    /// JSON-RPC URL.
    pub rpc: String,
    /// Peer id.
    pub peer_id: String,
    /// Peer-network address with the peer id.
    pub p2p: String,
    /// Arguments for `p2pe-node` that start this node.
    pub args: Vec<String>,
}

fn generate(args: &TestnetArgs) -> anyhow::Result<Vec<TestnetNode>> {
    if args.signers == 0 {
        anyhow::bail!("--signers must be at least 1");
    }
    if args.dir.exists() && std::fs::read_dir(&args.dir)?.next().is_some() {
        anyhow::bail!("{} is not empty; use a new --dir", args.dir.display());
    }
    std::fs::create_dir_all(&args.dir)?;
    let password = args.dir.join("password.txt");
    write_secret_file(&password, format!("{:x}\n", rand::random::<u128>()).as_bytes())?;
    let pw = super::common::read_password(Some(&password))?;
    let kdf = if args.light_kdf { Kdf::Light } else { Kdf::Standard };
    let mut signer_addrs = Vec::new();
    for i in 0..args.signers {
        let dir = args.dir.join(format!("signer-{i}"));
        let signer = alloy_signer_local::PrivateKeySigner::random();
        let secret = B256::from(signer.to_bytes());
        write_keystore(&dir, Some("keystore.json"), &secret, &pw, kdf, &mut rand::thread_rng())?;
        signer_addrs.push(signer.address());
    }
    // Users get the well-known dev accounts, funded, as on the dev chain.
    let users = dev_keys(DEV_MNEMONIC, 10)?;
    let ether = U256::from(10u64).pow(U256::from(18));
    let now = crate::blockchain::unix_now();
    let params = GenesisParams {
        chain_id: args.chain_id,
        period: args.period,
        signers: signer_addrs.clone(),
        funded: users.iter().map(|k| (k.address(), U256::from(10_000u64) * ether)).collect(),
        timestamp: now,
        max_block_bytes: args.max_block_bytes,
        ..Default::default()
    };
    let mut genesis = build_genesis(&params);
    let market = MarketConfig::new(vec![users[0].address()], users[0].address(), now - now % 900, 900);
    deploy_market(&mut genesis, &market)?;
    let json = serde_json::to_string_pretty(&genesis)?;
    let spec = ChainSpec::from_json(&json)?;
    let genesis_path = args.dir.join("genesis.json");
    std::fs::write(&genesis_path, &json)?;

    let total = args.signers + args.followers;
    let mut nodes = Vec::new();
    for i in 0..total {
        let (name, datadir) = if i < args.signers {
            (format!("signer-{i}"), args.dir.join(format!("signer-{i}")).join("data"))
        } else {
            let f = i - args.signers;
            (format!("follower-{f}"), args.dir.join(format!("follower-{f}")).join("data"))
        };
        let mut store = Store::open(&datadir, None)?;
        store.init_genesis(&spec, &json)?;
        let key = crate::network::load_identity(&datadir.join("p2p-identity.key"))?;
        let peer_id = key.public().to_peer_id();
        let p2p_port = args.p2p_base_port + i as u16;
        let rpc_port = args.rpc_base_port + i as u16;
        nodes.push(TestnetNode {
            name,
            signer: signer_addrs.get(i).map(|a| a.to_string()),
            datadir,
            rpc: format!("http://127.0.0.1:{rpc_port}"),
            peer_id: peer_id.to_string(),
            p2p: format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{peer_id}"),
            args: vec![],
        });
    }
    let all: Vec<String> = nodes.iter().map(|n| n.p2p.clone()).collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        let mut a = vec![
            "run".to_string(),
            "--datadir".into(),
            node.datadir.display().to_string(),
            "--http-addr".into(),
            node.rpc.trim_start_matches("http://").to_string(),
            "--p2p-addr".into(),
            "127.0.0.1".into(),
            "--rpc-admin".into(),
            "--p2p-port".into(),
            (args.p2p_base_port + i as u16).to_string(),
        ];
        let others: Vec<&str> = all.iter().filter(|p| **p != node.p2p).map(String::as_str).collect();
        if !others.is_empty() {
            a.push("--bootnodes".into());
            a.push(others.join(","));
        }
        if i < args.signers {
            a.push("--keystore".into());
            a.push(args.dir.join(format!("signer-{i}")).join("keystore.json").display().to_string());
            a.push("--password-file".into());
            a.push(password.display().to_string());
        }
        node.args = a;
    }
    std::fs::write(args.dir.join("testnet.json"), serde_json::to_string_pretty(&nodes)?)?;
    Ok(nodes)
}

fn spawn(node: &TestnetNode, log_dir: &Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(log_dir.join(format!("{}.log", node.name)))?;
    Ok(Command::new(exe).args(&node.args).stdout(Stdio::null()).stderr(log).spawn()?)
}

/// Runs `testnet`.
pub async fn run(mut args: TestnetArgs) -> anyhow::Result<()> {
    // Listening before anything is announced: see `ShutdownSignal`.
    let shutdown = ShutdownSignal::install()?;
    // `testnet.json` holds command lines to start the nodes from anywhere: its paths are absolute.
    args.dir = std::path::absolute(&args.dir)
        .with_context(|| format!("cannot resolve --dir {}", args.dir.display()))?;
    let nodes = generate(&args)?;
    println!(
        "Testnet in {} ({} signers, {} followers, period {} s)",
        args.dir.display(),
        args.signers,
        args.followers,
        args.period
    );
    if args.generate_only {
        println!("Wrote {}", args.dir.join("testnet.json").display());
        return Ok(());
    }
    let mut children = Vec::new();
    for node in &nodes {
        children.push(spawn(node, &args.dir)?);
        println!("  {:<12} JSON-RPC {}  P2P {}", node.name, node.rpc, node.p2p);
    }
    println!("Logs: {}/*.log. Ctrl-C stops every node.", args.dir.display());
    shutdown.recv().await;
    for c in &mut children {
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    }
    for c in &mut children {
        let _ = c.wait();
    }
    Ok(())
}
