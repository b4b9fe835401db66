//! `p2pe-node check`: re-verifies a data directory from genesis through the import path.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::blockchain::{Blockchain, ChainOptions};
use crate::chain::ChainSpec;
use crate::storage::{BlockQuery, ReadPool, Store};
use crate::txpool::{PoolConfig, TxPool};

/// Arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Data directory to check (not modified, except that a schema-version-1 directory gets its
    /// stored state trie built, as any start of the node does).
    #[arg(long)]
    pub datadir: PathBuf,
}

/// Runs `check`: every stored block is imported into a scratch chain exactly as a block from a
/// peer would be (seal, rules, execution, roots), then the stored head is compared, and the
/// stored state (plain rows, hashed rows, branch nodes) is checked against a rebuild whose root
/// must be the re-executed head's. Memory: one account's storage at a time.
pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let (genesis, head) = {
        let store = Store::open(&args.datadir, None)?;
        let genesis = store
            .genesis_json()?
            .ok_or_else(|| anyhow::anyhow!("{} is not initialised", args.datadir.display()))?;
        let head = store.head()?.ok_or_else(|| anyhow::anyhow!("no blocks stored"))?;
        (genesis, head)
    };
    let spec = ChainSpec::from_json(&genesis)?;
    let source = ReadPool::open(&args.datadir.join("chain.sqlite"), 1)?;
    let scratch = tempfile::Builder::new().prefix("p2pe-check-").tempdir()?;
    let mut store = Store::open(scratch.path(), None)?;
    store.init_genesis(&spec, &genesis)?;
    let opts = ChainOptions { read_connections: 1, ..Default::default() };
    let chain = Blockchain::open(spec.clone(), store, Arc::new(TxPool::new(PoolConfig::default())), &opts)?;
    for n in 1..=head.0 {
        let (block, _) = source
            .canonical_block(n)?
            .ok_or_else(|| crate::storage::StorageError::Corrupt(format!("block {n} missing")))?;
        chain.import(block.block, None)?;
    }
    let final_head = chain.head();
    if final_head.hash != head.1 {
        anyhow::bail!("re-executed head {} differs from stored head {}", final_head.hash, head.1);
    }
    // The stored state must be the state the blocks produce: `verify` checks every plain row
    // against its hashed row, rebuilds each trie from the hashed rows and compares the stored
    // branch nodes, one account at a time (it never loads the whole state).
    let store = Store::open(&args.datadir, None)?;
    let root = store.read(crate::storage::trie::verify).map_err(|e| {
        anyhow::anyhow!(
            "the stored state trie is inconsistent: {e}; the node cannot compute state roots from it"
        )
    })?;
    if root != final_head.header.state_root {
        anyhow::bail!(
            "the stored state's root {root} differs from the re-executed {}",
            final_head.header.state_root
        );
    }
    println!(
        "OK: {} blocks re-verified; head {} (block {}), state root {root}; stored state trie verified",
        head.0, head.1, head.0
    );
    Ok(())
}
