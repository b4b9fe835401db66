//! `p2pe-node dev`: a throwaway single-signer chain for developers.

use std::path::PathBuf;

use alloy_primitives::U256;
use alloy_signer_local::{coins_bip39::English, MnemonicBuilder};
use clap::Args;

use super::common::{NodeArgs, RpcArgs, SealArgs, ShutdownSignal};
use crate::chain::{
    build_genesis, deploy_market, ChainSpec, GenesisParams, GenesisParticipant, MarketConfig,
    MarketDeployment,
};
use crate::crypto::SigningKey;
use crate::keeper::{DEFAULT_HORIZON, DEV_KEEPER_INDEX};
use crate::node::{Node, NodeConfig};
use crate::storage::Store;
use crate::txpool::PoolConfig;

/// The well-known development mnemonic (the same as anvil's and Hardhat's). Never use it for
/// anything of value.
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

/// Arguments of `dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Seconds between blocks; 0 seals as soon as transactions wait.
    #[arg(long, default_value_t = 1)]
    pub period: u64,
    /// Chain id.
    #[arg(long, default_value_t = 1337)]
    pub chain_id: u64,
    /// Block gas limit (high, so that gas never limits throughput on the dev chain).
    #[arg(long, default_value_t = 3_000_000_000)]
    pub gas_limit: u64,
    /// Largest block, in bytes of RLP: written to the dev genesis (config.p2pe.maxBlockBytes), a
    /// rule of the chain. Default 8 MiB (EIP-7934's limit); 262144 to 12582912.
    #[arg(long)]
    pub max_block_bytes: Option<u64>,
    /// Number of prefunded accounts derived from the mnemonic.
    #[arg(long, default_value_t = 10)]
    pub accounts: u32,
    /// Balance of each prefunded account, in ether.
    #[arg(long, default_value_t = 10_000)]
    pub balance: u64,
    /// Mnemonic the accounts are derived from (m/44'/60'/0'/0/i).
    #[arg(long, default_value = DEV_MNEMONIC)]
    pub mnemonic: String,
    /// Keep the chain in this directory (default: a temporary directory removed on exit).
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Length of a market delivery slot in seconds (≥ 5; 900 = 15 minutes). Shorter slots stand
    /// for 15 minutes: each dev account's 25 kW connection is registered scaled by 900 / slot
    /// length, so a slot carries up to 6.25 kWh of orders per side whatever its length.
    #[arg(long, default_value_t = 900)]
    pub slot_length: u32,
    /// Orders for a slot close this many seconds before it starts (default: a third of a slot).
    #[arg(long)]
    pub gate_closure: Option<u32>,
    /// Seconds after a slot ends before it settles, for late readings (default: a third of a slot).
    #[arg(long)]
    pub grace_period: Option<u32>,
    /// Pay-as-bid market instead of pay-as-clear.
    #[arg(long)]
    pub pay_as_bid: bool,
    /// Price granularity of the market, in thousandths of a credit per kWh (the registry's
    /// immutable priceTick). A slot has at most 255 price levels above feed-in, so an islanded
    /// microgrid whose cap is a value of lost load of several credits needs a coarser tick (20
    /// reaches 5.18 credits). Must divide the 220 between the default retail (0.30) and feed-in
    /// (0.08).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=220))]
    pub price_tick: u64,
    /// Also write the contract addresses to this file (always written to DATADIR/contracts.json).
    #[arg(long)]
    pub contracts_out: Option<PathBuf>,
    /// Do not run the market keeper. By default the node opens the next 4 slots whose gate is open
    /// ahead of their orders (EnergyMarket.openSlot), signing with the key at mnemonic index 97
    /// (an operator in the dev genesis, not account 0). Only an operator opens slots: without the
    /// keeper, orders are refused with SlotNotOpen.
    #[arg(long)]
    pub no_keeper: bool,
    /// The keeper also clears every slot after its gate closure and settles it once its
    /// settlement opens (every metered account and every account with an order, in parts of
    /// 150). Off by default, so that the dApp's Clear and Settle buttons have work to do.
    #[arg(long, conflicts_with = "no_keeper")]
    pub keeper_settle: bool,
    #[command(flatten)]
    pub seal: SealArgs,
    #[command(flatten)]
    pub rpc: RpcArgs,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Mnemonic index of the dev grid operator's account.
pub const DEV_GRID_INDEX: u32 = 99;
/// Mnemonic index of dev account i's meter key is `DEV_METER_INDEX_BASE + i`.
pub const DEV_METER_INDEX_BASE: u32 = 100;

/// Derives one key of the mnemonic at m/44'/60'/0'/0/index.
pub fn dev_key(mnemonic: &str, index: u32) -> anyhow::Result<SigningKey> {
    let signer = MnemonicBuilder::<English>::default()
        .phrase(mnemonic)
        .index(index)?
        .build()
        .map_err(|e| anyhow::anyhow!("invalid mnemonic: {e}"))?;
    Ok(SigningKey::from_bytes(&signer.to_bytes())?)
}

/// The dev market: account 0 operates it, with the keeper's key (index
/// [`DEV_KEEPER_INDEX`]) as a second operator; every dev account is a participant (even ones
/// prosumers, odd ones consumers) with 1,000 credits and a bound meter (key index 100 + i); the
/// grid account (key index 99) holds 1,000,000 credits in the market.
pub fn dev_market(args: &DevArgs, keys: &[SigningKey], start: u64) -> anyhow::Result<MarketConfig> {
    let admin = keys.first().ok_or_else(|| anyhow::anyhow!("--accounts must be at least 1"))?.address();
    let grid = dev_key(&args.mnemonic, DEV_GRID_INDEX)?.address();
    let keeper = dev_key(&args.mnemonic, DEV_KEEPER_INDEX)?.address();
    if args.slot_length < 5 {
        anyhow::bail!("--slot-length must be at least 5 seconds");
    }
    let slot = args.slot_length as u64;
    let mut cfg = MarketConfig::new(vec![admin, keeper], grid, start - start % slot, args.slot_length);
    if let Some(g) = args.gate_closure {
        cfg.gate_closure = g;
    }
    if let Some(g) = args.grace_period {
        cfg.grace_period = g;
    }
    cfg.pay_as_bid = args.pay_as_bid;
    set_price_tick(&mut cfg, args.price_tick)?;
    let w = crate::chain::compressed_capacity_w(crate::chain::DEFAULT_CAPACITY_W, args.slot_length);
    cfg.default_capacity_w = (w, w);
    let credits = U256::from(1_000u64) * U256::from(10u64).pow(U256::from(18));
    for (i, k) in keys.iter().enumerate() {
        cfg.participants.push(GenesisParticipant {
            account: k.address(),
            prosumer: i % 2 == 0,
            meter: Some(dev_key(&args.mnemonic, DEV_METER_INDEX_BASE + i as u32)?.address()),
            credits,
        });
    }
    Ok(cfg)
}

/// Sets the market's price tick to `milli` thousandths of a credit per kWh, refusing one that does
/// not divide the spread between the default retail and feed-in prices (the registry would refuse
/// to deploy).
pub fn set_price_tick(cfg: &mut MarketConfig, milli: u64) -> anyhow::Result<()> {
    let tick = U256::from(milli) * U256::from(10u64).pow(U256::from(15));
    let spread = cfg.retail - cfg.feed_in;
    if milli == 0 || spread % tick != U256::ZERO {
        anyhow::bail!(
            "--price-tick {milli} must divide the {} thousandths of a credit between the default retail and feed-in prices",
            spread / U256::from(10u64).pow(U256::from(15))
        );
    }
    cfg.price_tick = tick;
    Ok(())
}

/// Derives the development accounts.
pub fn dev_keys(mnemonic: &str, n: u32) -> anyhow::Result<Vec<SigningKey>> {
    (0..n).map(|i| dev_key(mnemonic, i)).collect()
}

/// Runs `dev`.
/// The pool of the dev chain: the market's own accounts (the operator, account 0; the keeper; the
/// grid account; every dev account's meter key) are priority senders, next to `--txpool-priority`.
fn dev_pool(args: &DevArgs, keys: &[SigningKey], keeper: Option<&SigningKey>) -> anyhow::Result<PoolConfig> {
    let mut pool = args.node.pool();
    pool.priority.extend(keys.first().map(SigningKey::address));
    pool.priority.extend(keeper.map(SigningKey::address));
    pool.priority.insert(dev_key(&args.mnemonic, DEV_GRID_INDEX)?.address());
    for i in 0..keys.len() as u32 {
        pool.priority.insert(dev_key(&args.mnemonic, DEV_METER_INDEX_BASE + i)?.address());
    }
    Ok(pool)
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    // Listening before anything is announced: see `ShutdownSignal`.
    let shutdown = ShutdownSignal::install()?;
    let keys = dev_keys(&args.mnemonic, args.accounts)?;
    // The sealing key is fresh for each run and never leaves memory.
    let sealer = alloy_signer_local::PrivateKeySigner::random();
    let sealer = SigningKey::from_bytes(&sealer.to_bytes())?;
    let (datadir, _tmp) = match &args.datadir {
        Some(d) => (d.clone(), None),
        None => {
            let tmp = tempfile::Builder::new().prefix("p2pe-dev-").tempdir()?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let spec = open_dev_chain(&args, &keys, &sealer, &datadir)?;
    let chain_id = spec.chain_id;
    let market = spec.p2pe.market.clone();
    // The keeper opens slots with its own key (not account 0, whose nonce users share).
    let keeper = match (&market, args.no_keeper) {
        (Some(_), false) => Some(dev_key(&args.mnemonic, DEV_KEEPER_INDEX)?),
        _ => None,
    };
    if let Some(m) = &market {
        crate::chain::write_contracts_json(m, chain_id, &datadir.join("contracts.json"))?;
        if let Some(out) = &args.contracts_out {
            crate::chain::write_contracts_json(m, chain_id, out)?;
        }
    }
    let node = Node::start(
        spec,
        NodeConfig {
            datadir: datadir.clone(),
            http_addr: args.rpc.http_addr,
            signer: Some(sealer.clone()),
            dev_accounts: keys.clone(),
            pool: dev_pool(&args, &keys, keeper.as_ref())?,
            rpc: args.rpc.config(),
            state_history: args.node.state_history(),
            chain: args.node.chain(),
            network: None,
            keeper: keeper.clone(),
            keeper_settles: args.keeper_settle,
            metrics: args.node.metrics,
            seal: crate::chain::SealLimits {
                gas_limit_target: args.seal.gas_limit_target,
                max_block_bytes: None,
            },
        },
    )
    .await?;
    let banner = Banner {
        chain_id,
        keys: &keys,
        market: market.as_ref(),
        keeper: keeper.as_ref(),
        keeper_settles: args.keeper_settle,
        sealer: &sealer,
    };
    banner.print(&args, &datadir, _tmp.is_some(), &node.http_addr.to_string());
    shutdown.recv().await;
    println!("Shutting down");
    node.stop().await;
    Ok(())
}

/// Opens the dev chain in `datadir`: a new genesis (accounts, market) on first use; an existing
/// one only if `sealer` signs it (dev sealing keys are ephemeral, so dev chains cannot resume).
fn open_dev_chain(
    args: &DevArgs,
    keys: &[SigningKey],
    sealer: &SigningKey,
    datadir: &std::path::Path,
) -> anyhow::Result<ChainSpec> {
    let mut store = Store::open(datadir, None)?;
    if let Some(json) = store.genesis_json()? {
        let spec = ChainSpec::from_json(&json)?;
        if !spec.signers.contains(&sealer.address()) {
            anyhow::bail!(
                "{} holds a dev chain sealed by another (ephemeral) key; dev chains cannot be resumed, use a new --datadir",
                datadir.display()
            );
        }
        return Ok(spec);
    }
    let ether = U256::from(10u64).pow(U256::from(18));
    let params = GenesisParams {
        chain_id: args.chain_id,
        period: args.period,
        gas_limit: args.gas_limit,
        signers: vec![sealer.address()],
        funded: keys.iter().map(|k| (k.address(), U256::from(args.balance) * ether)).collect(),
        timestamp: crate::blockchain::unix_now(),
        max_block_bytes: args.max_block_bytes,
        ..Default::default()
    };
    let mut genesis = build_genesis(&params);
    deploy_market(&mut genesis, &dev_market(args, keys, params.timestamp)?)?;
    let json = serde_json::to_string_pretty(&genesis)?;
    let spec = ChainSpec::from_json(&json)?;
    store.init_genesis(&spec, &json)?;
    Ok(spec)
}

/// What `p2pe-node dev` prints once it serves: accounts, market, keeper, signer, where.
struct Banner<'a> {
    chain_id: u64,
    keys: &'a [SigningKey],
    market: Option<&'a MarketDeployment>,
    keeper: Option<&'a SigningKey>,
    keeper_settles: bool,
    sealer: &'a SigningKey,
}

impl Banner<'_> {
    fn print(&self, args: &DevArgs, datadir: &std::path::Path, temporary: bool, http_addr: &str) {
        println!(
            "p2pe-node dev chain (chain id {}, period {} s, gas limit {})",
            self.chain_id, args.period, args.gas_limit
        );
        println!();
        println!("Mnemonic: {}", args.mnemonic);
        println!("Derivation path: m/44'/60'/0'/0/<index>");
        println!();
        println!("Available accounts ({} ether each)", args.balance);
        for (i, k) in self.keys.iter().enumerate() {
            println!("  ({i}) {}", k.address());
        }
        println!();
        if let Some(m) = &self.market {
            println!("{}", m.describe());
            println!("  Participants: the accounts above (meters: mnemonic index {DEV_METER_INDEX_BASE} + i; grid: index {DEV_GRID_INDEX})");
            match &self.keeper {
                Some(k) => println!(
                    "  Keeper        {} (mnemonic index {DEV_KEEPER_INDEX}; opens the next {DEFAULT_HORIZON} slots ahead{}; --no-keeper to turn off)",
                    k.address(),
                    if self.keeper_settles { ", clears and settles every slot" } else { "" }
                ),
                None => println!("  Keeper        off (--no-keeper): nobody opens slots, so orders are refused (SlotNotOpen)"),
            }
            println!();
        }
        println!("Signer: {}", self.sealer.address());
        println!(
            "Data directory: {}{}",
            datadir.display(),
            if temporary { " (removed on exit)" } else { "" }
        );
        println!("JSON-RPC: http://{0} (WebSocket: ws://{0})", http_addr);
    }
}

#[cfg(test)]
mod price_tick_tests {
    use super::set_price_tick;
    use crate::chain::{build_genesis, deploy_market, GenesisParams, MarketConfig};
    use alloy_primitives::{Address, U256};

    fn config() -> MarketConfig {
        MarketConfig::new(vec![Address::repeat_byte(7)], Address::repeat_byte(7), 1_800_000_000, 5)
    }

    /// A tick that divides the 0.22 credit spread deploys (a coarse one included: 20 thousandths reach a
    /// cap of 5.18 credits in 255 levels); one that does not is refused before deployment, where the
    /// registry's constructor would revert.
    #[test]
    fn the_price_tick_must_divide_the_default_spread() {
        let milli = U256::from(10u64).pow(U256::from(15));
        for ok in [1u64, 20, 220] {
            let mut cfg = config();
            set_price_tick(&mut cfg, ok).expect("divides 220");
            assert_eq!(cfg.price_tick, U256::from(ok) * milli);
            let mut genesis = build_genesis(&GenesisParams {
                signers: vec![Address::repeat_byte(7)],
                ..Default::default()
            });
            deploy_market(&mut genesis, &cfg).unwrap_or_else(|e| panic!("tick {ok} deploys: {e}"));
        }
        for bad in [0u64, 3, 221] {
            let mut cfg = config();
            let err = set_price_tick(&mut cfg, bad).expect_err("refused").to_string();
            assert!(err.contains("--price-tick"), "{err}");
            assert_eq!(cfg.price_tick, milli, "unchanged");
        }
    }
}
