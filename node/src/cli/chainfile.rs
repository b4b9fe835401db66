//! `p2pe-node export`, `import` and `dumpgenesis`: geth's chain-file format (concatenated RLP
//! blocks), for backups, seeding a follower offline and reproducing a chain in a bug report.

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use alloy_rlp::{Decodable, Encodable, Header as RlpHeader};
use clap::Args;

use crate::blockchain::{Blockchain, ChainOptions};
use crate::chain::ChainSpec;
use crate::primitives::Block;
use crate::storage::{BlockQuery, ReadPool, Store};
use crate::txpool::{PoolConfig, TxPool};

/// Arguments of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Data directory to read (the node may be running).
    #[arg(long)]
    pub datadir: PathBuf,
    /// First block to export (default 1; the genesis is not part of a chain file).
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// Last block to export (default: the head).
    #[arg(long)]
    pub to: Option<u64>,
    /// Output file.
    pub file: PathBuf,
}

/// Arguments of `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Data directory to import into (initialised with the same genesis; the node must not be
    /// running on it).
    #[arg(long)]
    pub datadir: PathBuf,
    /// Chain file (concatenated RLP blocks, as written by `export` or geth).
    pub file: PathBuf,
}

/// Arguments of `dumpgenesis`.
#[derive(Debug, Args)]
pub struct DumpGenesisArgs {
    /// Data directory whose genesis to print.
    #[arg(long)]
    pub datadir: PathBuf,
}

/// Runs `export`.
pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let path = args.datadir.join("chain.sqlite");
    if !path.exists() {
        anyhow::bail!("{} has no chain database", args.datadir.display());
    }
    let pool = ReadPool::open(&path, 1)?;
    let head = pool.canonical_head_number()?;
    let to = args.to.unwrap_or(head).min(head);
    if args.from > to {
        anyhow::bail!("nothing to export: --from {} is after --to {to}", args.from);
    }
    let mut out = BufWriter::new(std::fs::File::create(&args.file)?);
    let mut buf = Vec::new();
    for n in args.from..=to {
        let (block, _) = pool
            .canonical_block(n)?
            .ok_or_else(|| crate::storage::StorageError::Corrupt(format!("block {n} missing")))?;
        buf.clear();
        block.block.encode(&mut buf);
        out.write_all(&buf)?;
    }
    out.flush()?;
    println!("Exported blocks {}..={to} to {}", args.from, args.file.display());
    Ok(())
}

/// Splits a chain file into blocks, naming the position of any malformed one.
fn read_blocks(bytes: &[u8]) -> impl Iterator<Item = Result<Block, String>> + '_ {
    let mut rest = bytes;
    let mut index = 0usize;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let offset = bytes.len() - rest.len();
        index += 1;
        let mut probe = rest;
        let item = match RlpHeader::decode(&mut probe) {
            Ok(h) if h.list => {
                let total = (rest.len() - probe.len()) + h.payload_length;
                if total > rest.len() {
                    Err(format!("block #{index} at byte {offset} is truncated"))
                } else {
                    let mut one = &rest[..total];
                    let decoded =
                        Block::decode(&mut one).map_err(|e| format!("block #{index} at byte {offset}: {e}"));
                    rest = &rest[total..];
                    decoded
                }
            }
            Ok(_) => Err(format!("block #{index} at byte {offset} is not an RLP list")),
            Err(alloy_rlp::Error::InputTooShort) => {
                Err(format!("block #{index} at byte {offset} is truncated"))
            }
            Err(e) => Err(format!("block #{index} at byte {offset}: {e}")),
        };
        if item.is_err() {
            rest = &[];
        }
        Some(item)
    })
}

/// Runs `import`: every block is verified and executed exactly as a block from a peer.
pub fn import(args: ImportArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.datadir, None)?;
    let genesis = store.genesis_json()?.ok_or_else(|| {
        anyhow::anyhow!(
            "{} is not initialised: run `p2pe-node init` with the chain's genesis first",
            args.datadir.display()
        )
    })?;
    let spec = ChainSpec::from_json(&genesis)?;
    let opts = ChainOptions { read_connections: 1, ..Default::default() };
    let chain = Blockchain::open(spec, store, Arc::new(TxPool::new(PoolConfig::default())), &opts)?;
    let mut bytes = Vec::new();
    std::fs::File::open(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", args.file.display()))?
        .read_to_end(&mut bytes)?;
    let (mut imported, mut known) = (0u64, 0u64);
    for block in read_blocks(&bytes) {
        let block = block.map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
        let number = block.header.number;
        if number <= chain.head_number() {
            // Already have a block at this height: it must be the same one.
            let hash = block.header.hash_slow();
            let ours = chain.reads().canonical_hash(number)?;
            if ours != Some(hash) {
                anyhow::bail!("block {number} ({hash}) conflicts with the stored block {number}; stopping");
            }
            known += 1;
            continue;
        }
        chain
            .import(block, None)
            .map_err(|e| anyhow::anyhow!("import stopped: {e} ({imported} blocks imported before it)"))?;
        imported += 1;
    }
    println!("Imported {imported} blocks ({known} already present); head is block {}", chain.head_number());
    Ok(())
}

/// Runs `dumpgenesis`: prints the genesis JSON the data directory was initialised with.
pub fn dump_genesis(args: DumpGenesisArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.datadir, None)?;
    let json = store
        .genesis_json()?
        .ok_or_else(|| anyhow::anyhow!("{} is not initialised", args.datadir.display()))?;
    println!("{json}");
    Ok(())
}
