//! `p2pe-node genesis`: writes a genesis file for a new network.

use std::path::PathBuf;

use alloy_primitives::{Address, U256};
use clap::Args;

use crate::chain::{build_genesis, ChainSpec, GenesisParams, DEFAULT_EPOCH};

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
    /// Block gas limit.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub gas_limit: u64,
    /// Prefund an account: ADDRESS=WEI; repeatable.
    #[arg(long = "fund", value_parser = parse_fund)]
    pub funded: Vec<(Address, U256)>,
    /// Only these accounts may send transactions (repeatable); default: anyone.
    #[arg(long = "allow")]
    pub allowlist: Vec<Address>,
    /// Where to write the genesis file.
    #[arg(long)]
    pub out: PathBuf,
}

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
    };
    let genesis = build_genesis(&params);
    let json = serde_json::to_string_pretty(&genesis)?;
    let spec = ChainSpec::from_json(&json)?;
    std::fs::write(&args.out, json)?;
    println!("Wrote {} (chain {}, genesis {})", args.out.display(), spec.chain_id, spec.genesis_hash);
    Ok(())
}
