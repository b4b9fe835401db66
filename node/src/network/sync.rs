//! Catching up with peers: ask a peer for its status; if its chain is better (EIP-3436), fetch
//! its canonical blocks from a little below our head, import what extends our chain and switch
//! to its branch where it diverges.
//!
//! Range answers are capped in bytes by the serving side ([`super::protocol::SYNC_RESPONSE_BUDGET`]); an answer
//! that comes back with fewer blocks than asked makes the next request ask for that many, and
//! full answers double it again up to [`MAX_BLOCKS_PER_REQUEST`] (see [`next_batch`]).

use std::sync::Arc;

use alloy_primitives::{B256, U256};
use alloy_rlp::Decodable;
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use super::peers::Offence;
use super::protocol::{SyncRequest, SyncResponse, MAX_BLOCKS_PER_REQUEST};
use super::Command;
use crate::blockchain::{Blockchain, ImportError};
use crate::consensus::clique::{fork_choice::Tip, recover_sealer};
use crate::primitives::Block;
use crate::storage::BlockQuery;

/// How far below our head we look for where a better chain diverges.
const REORG_WINDOW: u64 = 64;

async fn request(
    cmds: &mpsc::Sender<Command>,
    peer: PeerId,
    request: SyncRequest,
) -> Result<SyncResponse, String> {
    let (tx, rx) = oneshot::channel();
    cmds.send(Command::Request { peer, request, reply: tx })
        .await
        .map_err(|_| "network stopped".to_string())?;
    rx.await.map_err(|_| "network stopped".to_string())?
}

/// How far behind its best peer a node must be for `eth_syncing` to report a sync: catching up a
/// block or two announced by gossip is ordinary operation, not a sync.
pub const SYNCING_THRESHOLD: u64 = 8;

/// What `eth_syncing` reports: the block a sync started from and the peer's head, while a sync
/// that started at least [`SYNCING_THRESHOLD`] blocks behind runs.
#[derive(Debug, Default)]
pub struct SyncProgress(parking_lot::Mutex<Option<(u64, u64)>>);

impl SyncProgress {
    /// `(startingBlock, highestBlock)` while syncing, `None` otherwise.
    pub fn get(&self) -> Option<(u64, u64)> {
        *self.0.lock()
    }
}

/// Clears the progress when a sync attempt ends, however it ends.
struct Syncing<'a>(&'a SyncProgress);

impl<'a> Syncing<'a> {
    fn start(p: &'a SyncProgress, from: u64, highest: u64) -> Option<Self> {
        (highest >= from + SYNCING_THRESHOLD).then(|| {
            *p.0.lock() = Some((from, highest));
            Self(p)
        })
    }
}

impl Drop for Syncing<'_> {
    fn drop(&mut self) {
        *self.0 .0.lock() = None;
    }
}

/// Runs sync requests one at a time.
pub(super) async fn run(
    chain: Arc<Blockchain>,
    cmds: mpsc::Sender<Command>,
    mut rx: mpsc::Receiver<(PeerId, Option<Block>)>,
    progress: Arc<SyncProgress>,
) {
    // Blocks per range request, adapted to the sizes of the blocks peers send.
    let mut batch = MAX_BLOCKS_PER_REQUEST;
    while let Some((peer, _hint)) = rx.recv().await {
        if let Err(e) = sync_with(&chain, &cmds, peer, &mut batch, &progress).await {
            tracing::debug!(%peer, error = %e, "sync attempt failed");
        }
    }
}

/// The number of blocks to ask for next, after asking for `asked` blocks (with `batch` the
/// current request size) and getting `got`: an answer cut short by the peer's byte budget means
/// that many blocks is what fits; a full answer at the current size doubles it.
pub(super) fn next_batch(batch: u32, asked: u32, got: usize) -> u32 {
    let got = u32::try_from(got).unwrap_or(u32::MAX);
    if got < asked {
        got.max(1)
    } else if asked >= batch {
        batch.saturating_mul(2).min(MAX_BLOCKS_PER_REQUEST)
    } else {
        batch
    }
}

async fn sync_with(
    chain: &Arc<Blockchain>,
    cmds: &mpsc::Sender<Command>,
    peer: PeerId,
    batch: &mut u32,
    progress: &SyncProgress,
) -> Result<(), String> {
    let SyncResponse::Status { genesis, head: their_head, head_hash, total_difficulty } =
        request(cmds, peer, SyncRequest::Status).await?
    else {
        return Err("unexpected answer to a status request".into());
    };
    if B256::from(genesis) != chain.spec().genesis_hash {
        let _ = cmds.send(Command::Punish { peer, offence: Offence::WrongChain }).await;
        return Err("peer is on another chain".into());
    }
    let ours = chain.head();
    let their_td = U256::from_be_bytes(total_difficulty);
    if B256::from(head_hash) == ours.hash || their_td < ours.total_difficulty {
        return Ok(());
    }
    let _syncing = Syncing::start(progress, ours.header.number, their_head);
    // Walk their canonical chain from a little below our head.
    let mut from = ours.header.number.saturating_sub(REORG_WINDOW).max(1);
    let mut branch: Vec<Block> = Vec::new();
    while from <= their_head {
        let count = u32::try_from(their_head - from + 1).unwrap_or(u32::MAX).min(*batch);
        let SyncResponse::Blocks(raw) = request(cmds, peer, SyncRequest::Blocks { from, count }).await?
        else {
            return Err("unexpected answer to a blocks request".into());
        };
        if raw.is_empty() {
            break;
        }
        let size: usize = raw.iter().map(Vec::len).sum();
        if raw.len() > count as usize {
            let _ = cmds.send(Command::Punish { peer, offence: Offence::Garbage }).await;
            return Err(format!("a range answer of {} blocks for {count} asked", raw.len()));
        }
        let next = next_batch(*batch, count, raw.len());
        if next < *batch {
            tracing::debug!(%peer, asked = count, got = raw.len(), bytes = size, next, "range answer cut by the peer's byte budget");
        }
        *batch = next;
        for bytes in raw {
            let Ok(block) = Block::decode(&mut bytes.as_slice()) else {
                let _ = cmds.send(Command::Punish { peer, offence: Offence::Garbage }).await;
                return Err("undecodable block".into());
            };
            from = block.header.number + 1;
            let number = block.header.number;
            let hash = block.header.hash_slow();
            if branch.is_empty() {
                let head = chain.head();
                let canonical = if number <= head.header.number {
                    chain.reads().with(|c| c.canonical_hash(number)).map_err(|e| e.to_string())?
                } else {
                    None
                };
                if canonical == Some(hash) {
                    continue; // common prefix
                }
                if block.header.parent_hash == head.hash {
                    let c = chain.clone();
                    match tokio::task::spawn_blocking(move || {
                        c.import(block, Some(crate::blockchain::unix_now()))
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    {
                        Ok(_) => continue,
                        Err(e) => return punish_import(cmds, peer, e).await,
                    }
                }
            }
            // Diverged from our chain below our head: collect their branch.
            branch.push(block);
        }
    }
    if branch.is_empty() {
        return Ok(());
    }
    let tip = branch.last().expect("non-empty");
    let parent_td = {
        let first = &branch[0];
        chain
            .reads()
            .with(|c| c.header_by_hash(&first.header.parent_hash))
            .map_err(|e| e.to_string())?
            .map(|(_, td)| td)
            .ok_or("branch parent unknown")?
    };
    let td = branch.iter().fold(parent_td, |acc, b| acc + b.header.difficulty);
    let candidate = Tip {
        total_difficulty: td,
        number: tip.header.number,
        hash: tip.header.hash_slow(),
        signer: recover_sealer(&tip.header).map_err(|e| e.to_string())?,
    };
    if !chain.prefers(&candidate) {
        return Ok(());
    }
    let c = chain.clone();
    match tokio::task::spawn_blocking(move || c.reorg_to(branch, Some(crate::blockchain::unix_now())))
        .await
        .map_err(|e| e.to_string())?
    {
        Ok(_) => Ok(()),
        Err(e) => punish_import(cmds, peer, e).await,
    }
}

async fn punish_import(cmds: &mpsc::Sender<Command>, peer: PeerId, e: ImportError) -> Result<(), String> {
    // A block from the future is not punished (clocks drift): the next sync round fetches it
    // again, once its time has come (see `super::blocks`).
    if let Some(offence) = super::blocks::offence_for(&e) {
        tracing::warn!(%peer, error = %e, "invalid block in a peer's chain");
        let _ = cmds.send(Command::Punish { peer, offence }).await;
    }
    Err(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_size_follows_what_fits_in_an_answer() {
        let max = MAX_BLOCKS_PER_REQUEST;
        // Cut short by the budget: ask for what came.
        assert_eq!(next_batch(max, max, 3), 3);
        assert_eq!(next_batch(3, 3, 1), 1);
        // Never below one.
        assert_eq!(next_batch(1, 1, 0), 1);
        // Full answers grow it back, up to the maximum.
        assert_eq!(next_batch(3, 3, 3), 6);
        assert_eq!(next_batch(200, 200, 200), max);
        // A full answer to a smaller request (the tail of their chain) leaves it as it was.
        assert_eq!(next_batch(64, 10, 10), 64);
    }
}
