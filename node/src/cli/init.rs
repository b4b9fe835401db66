//! `p2pe-node init`.

use std::path::PathBuf;

use clap::Args;

use crate::chain::ChainSpec;
use crate::storage::Store;

/// Arguments of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// geth-style genesis file: config.chainId, config.clique {period, epoch}, extraData
    /// (32-byte vanity ‖ signer addresses ‖ 65 zero bytes), alloc, gasLimit, baseFeePerGas (0).
    #[arg(long)]
    pub genesis: PathBuf,
    /// Data directory to create.
    #[arg(long)]
    pub datadir: PathBuf,
}

/// Runs `init`.
pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let spec = ChainSpec::from_file(&args.genesis)?;
    let text = std::fs::read_to_string(&args.genesis)?;
    let mut store = Store::open(&args.datadir, None)?;
    store.init_genesis(&spec, &text)?;
    if let Some(m) = &spec.p2pe.market {
        crate::chain::write_contracts_json(m, spec.chain_id, &args.datadir.join("contracts.json"))?;
    }
    println!(
        "Initialised {} for chain {} (genesis {}, {} signer(s), period {} s)",
        args.datadir.display(),
        spec.chain_id,
        spec.genesis_hash,
        spec.signers.len(),
        spec.clique.period
    );
    if let Some(m) = &spec.p2pe.market {
        println!("{}", m.describe());
    }
    Ok(())
}
