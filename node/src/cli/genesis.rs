//! `p2pe-node genesis`: writes a genesis file for a new network.

use std::path::PathBuf;

use alloy_primitives::{Address, U256};
use clap::Args;

use crate::chain::{build_genesis, deploy_market, ChainSpec, GenesisParams, MarketConfig, DEFAULT_EPOCH};

/// Arguments of `genesis`.
#[derive(Debug, Args)]
pub struct GenesisArgs {
    /// A signer address; repeat for several signers.
    #[arg(long = "signer", required = true)]
    pub signers: Vec<Address>,
    /// Chain id.
    #[arg(long)]
    pub chain_id: u64,
    /// Seconds between blocks.
    #[arg(long, default_value_t = 5)]
    pub period: u64,
    /// Blocks between Clique checkpoints.
    #[arg(long, default_value_t = DEFAULT_EPOCH)]
    pub epoch: u64,
    /// Block gas limit of the genesis (at least 16777216, the chain's minimum). Signers steer it
    /// later with `run --gas-limit-target`, by under 1/1024 per block. The default, 30 M gas (geth's
    /// long-standing mainnet limit), executes in well under a second on modest hardware even with
    /// expensive opcodes, so every node keeps up at a 1 s period; it binds before the 8 MiB byte
    /// limit for calldata (3 MB of zero bytes at EIP-7623's floor price).
    #[arg(long, default_value_t = DEFAULT_GENESIS_GAS_LIMIT)]
    pub gas_limit: u64,
    /// Largest block, in bytes of RLP: written to the genesis as config.p2pe.maxBlockBytes, a rule
    /// every node enforces on every block. Default 8 MiB (EIP-7934's limit, half the gossip message
    /// cap); 262144 to 12582912.
    #[arg(long)]
    pub max_block_bytes: Option<u64>,
    /// Prefund an account: ADDRESS=WEI; repeatable.
    #[arg(long = "fund", value_parser = parse_fund)]
    pub funded: Vec<(Address, U256)>,
    /// Only these accounts may send transactions (repeatable); default: anyone.
    #[arg(long = "allow")]
    pub allowlist: Vec<Address>,
    /// Market operator (registry admin, credit minter); repeatable. Default: the signers.
    #[arg(long = "market-admin")]
    pub market_admins: Vec<Address>,
    /// The grid operator's account (buys at feed-in, sells at retail). Default: the first admin.
    #[arg(long)]
    pub grid: Option<Address>,
    /// Credits (whole units) minted to the grid account and deposited in the market.
    #[arg(long, default_value_t = 1_000_000)]
    pub grid_credits: u64,
    /// Market delivery slot length in seconds.
    #[arg(long, default_value_t = 900)]
    pub slot_length: u32,
    /// Orders close this many seconds before their slot (default: a third of a slot).
    #[arg(long)]
    pub gate_closure: Option<u32>,
    /// Seconds after a slot ends before it settles (default: a third of a slot).
    #[arg(long)]
    pub grace_period: Option<u32>,
    /// Pay-as-bid market instead of pay-as-clear.
    #[arg(long)]
    pub pay_as_bid: bool,
    /// Price granularity, in thousandths of a credit per kWh (the registry's immutable priceTick;
    /// a slot has at most 255 levels above feed-in: an islanded microgrid priced up to a value of
    /// lost load of 5 credits needs 20). Must divide the 220 between retail 0.30 and feed-in 0.08.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=220))]
    pub price_tick: u64,
    /// Unix time of slot 0 (default: now, aligned down to the slot length).
    #[arg(long)]
    pub start_time: Option<u64>,
    /// Orders are accepted only for slots starting at most this many seconds ahead (the
    /// registry's order horizon; operators change it later with Registry.setOrderHorizon).
    #[arg(long, default_value_t = crate::chain::DEFAULT_ORDER_HORIZON)]
    pub order_horizon: u32,
    /// Short imbalance premium in price ticks (0.001 credit/kWh by default): a seller who delivers
    /// less than it sold buys the rest at retail plus this (Registry.setImbalancePrices; 1-65535).
    #[arg(long, default_value_t = crate::chain::DEFAULT_IMBALANCE_TICKS)]
    pub imbalance_short_premium: u16,
    /// Long imbalance penalty in price ticks: a buyer who uses less than it bought gets feed-in
    /// less this for the rest (Registry.setImbalancePrices; 1-65535).
    #[arg(long, default_value_t = crate::chain::DEFAULT_IMBALANCE_TICKS)]
    pub imbalance_long_penalty: u16,
    /// Import capacity in watts of each participant registered (Registry.setDefaultCapacity): it
    /// bids at most this power times the slot length per slot. Change one with setCapacity.
    #[arg(long, default_value_t = crate::chain::DEFAULT_CAPACITY_W)]
    pub default_import_w: u32,
    /// Export capacity in watts of each participant registered: it asks at most this power times
    /// the slot length per slot.
    #[arg(long, default_value_t = crate::chain::DEFAULT_CAPACITY_W)]
    pub default_export_w: u32,
    /// Where to write the genesis file.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the contract addresses to this JSON file.
    #[arg(long)]
    pub contracts_out: Option<PathBuf>,
}

/// Default block gas limit of `p2pe-node genesis`.
pub const DEFAULT_GENESIS_GAS_LIMIT: u64 = 30_000_000;

fn parse_fund(s: &str) -> Result<(Address, U256), String> {
    let (a, v) = s.split_once('=').ok_or("expected ADDRESS=WEI")?;
    let addr: Address = a.parse().map_err(|e| format!("bad address {a}: {e}"))?;
    let value: U256 = v.parse().map_err(|e| format!("bad amount {v}: {e}"))?;
    Ok((addr, value))
}

/// Runs `genesis`.
pub fn run(args: GenesisArgs) -> anyhow::Result<()> {
    let params = GenesisParams {
        chain_id: args.chain_id,
        period: args.period,
        epoch: args.epoch,
        gas_limit: args.gas_limit,
        signers: args.signers,
        funded: args.funded,
        allowlist: (!args.allowlist.is_empty()).then_some(args.allowlist),
        timestamp: crate::blockchain::unix_now(),
        max_block_bytes: args.max_block_bytes,
    };
    let mut genesis = build_genesis(&params);
    let admins =
        if args.market_admins.is_empty() { params.signers.clone() } else { args.market_admins.clone() };
    let grid = args.grid.unwrap_or(admins[0]);
    if args.slot_length < 5 {
        anyhow::bail!("--slot-length must be at least 5 seconds");
    }
    let start = args.start_time.unwrap_or(params.timestamp - params.timestamp % args.slot_length as u64);
    let mut market = MarketConfig::new(admins, grid, start, args.slot_length);
    market.grid_credits = U256::from(args.grid_credits) * U256::from(10u64).pow(U256::from(18));
    if let Some(g) = args.gate_closure {
        market.gate_closure = g;
    }
    if let Some(g) = args.grace_period {
        market.grace_period = g;
    }
    market.pay_as_bid = args.pay_as_bid;
    super::dev::set_price_tick(&mut market, args.price_tick)?;
    if args.order_horizon == 0 {
        anyhow::bail!("--order-horizon must be more than 0 seconds");
    }
    market.order_horizon = args.order_horizon;
    if args.imbalance_short_premium == 0 || args.imbalance_long_penalty == 0 {
        anyhow::bail!(
            "--imbalance-short-premium and --imbalance-long-penalty must be at least 1 tick: an imbalance priced at retail or feed-in costs nothing"
        );
    }
    market.imbalance_ticks = (args.imbalance_short_premium, args.imbalance_long_penalty);
    market.default_capacity_w = (args.default_import_w, args.default_export_w);
    let deployment = deploy_market(&mut genesis, &market)?;
    let json = serde_json::to_string_pretty(&genesis)?;
    let spec = ChainSpec::from_json(&json)?;
    std::fs::write(&args.out, json)?;
    println!("Wrote {} (chain {}, genesis {})", args.out.display(), spec.chain_id, spec.genesis_hash);
    println!("{}", deployment.describe());
    if let Some(out) = &args.contracts_out {
        crate::chain::write_contracts_json(&deployment, spec.chain_id, out)?;
    }
    Ok(())
}
