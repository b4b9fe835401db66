//! Taking a verified branch: fetch the blocks of its headers (and no others), check that each is
//! the block of its verified header (same hash, and a body that matches the header's
//! transactions root), then import them on our head, or switch to the branch if fork choice
//! prefers it.

use std::sync::Arc;

use alloy_consensus::proofs;

use super::walk::Branch;
use super::{next_batch, Attempt, Failure, MAX_BRANCH_BODY_BYTES};
use crate::blockchain::{unix_now, Blockchain, ImportError};
use crate::consensus::clique::fork_choice::Tip;
use crate::network::peers::Offence;
use crate::network::protocol::{SyncRequest, SyncResponse};
use crate::primitives::Block;

/// Takes `branch`; returns whether our chain moved.
pub(super) async fn commit(a: &Attempt<'_>, branch: Branch, batch: &mut u32) -> Result<bool, Failure> {
    let Some((tip, tip_hash)) = branch.headers.last() else { return Ok(false) };
    if branch.fork_hash == a.chain.head().hash {
        return extend(a, &branch, batch).await;
    }
    let candidate = Tip {
        total_difficulty: branch.total_difficulty(),
        number: tip.number,
        hash: *tip_hash,
        signer: branch.tip_signer(),
    };
    if !a.chain.prefers(&candidate) {
        return Ok(false);
    }
    // A switch happens in one step: hold the branch's blocks (up to the cap), then switch.
    let mut blocks = Vec::new();
    let mut held = 0usize;
    let mut done = 0;
    while done < branch.headers.len() {
        let (got, bytes) = fetch_blocks(a, &branch, done, batch).await?;
        held += bytes;
        if held > MAX_BRANCH_BODY_BYTES {
            return Err(Failure::Other(format!(
                "the branch's blocks are over {MAX_BRANCH_BODY_BYTES} bytes; not switching to it"
            )));
        }
        done += got.len();
        blocks.extend(got);
    }
    let chain = a.chain.clone();
    let switched = tokio::task::spawn_blocking(move || chain.reorg_to(blocks, Some(unix_now())))
        .await
        .map_err(|e| Failure::Other(e.to_string()))?;
    match switched {
        Ok(_) => Ok(true),
        Err(e) => import_failure(e).map(|()| false),
    }
}

/// Imports the branch on our head, one answer of blocks at a time.
async fn extend(a: &Attempt<'_>, branch: &Branch, batch: &mut u32) -> Result<bool, Failure> {
    let mut done = 0;
    while done < branch.headers.len() {
        let (blocks, _) = fetch_blocks(a, branch, done, batch).await?;
        let n = blocks.len();
        let chain: Arc<Blockchain> = a.chain.clone();
        let imported = tokio::task::spawn_blocking(move || {
            for block in blocks {
                chain.import(block, Some(unix_now()))?;
            }
            Ok::<_, ImportError>(())
        })
        .await
        .map_err(|e| Failure::Other(e.to_string()))?;
        if let Err(e) = imported {
            import_failure(e)?;
            // Our head moved meanwhile (a block sealed or gossiped): the next round sees it.
            return Ok(done > 0);
        }
        done += n;
    }
    Ok(true)
}

/// An import error: the peer's fault if the block broke a rule, otherwise nobody's. Clocks
/// drift: a block from the future is no offence (see [`crate::network::blocks::offence_for`]), a
/// later attempt takes it.
fn import_failure(e: ImportError) -> Result<(), Failure> {
    if matches!(e, ImportError::NotOnHead { .. }) {
        return Ok(());
    }
    match crate::network::blocks::offence_for(&e) {
        Some(offence) => Err(Failure::offence(offence, e.to_string())),
        None => Err(Failure::Other(e.to_string())),
    }
}

/// Fetches the blocks of the branch's headers from index `start` on (as many as the peer's
/// answer holds, at most `batch`), each checked against its verified header. Returns the blocks
/// and their RLP size.
async fn fetch_blocks(
    a: &Attempt<'_>,
    branch: &Branch,
    start: usize,
    batch: &mut u32,
) -> Result<(Vec<Block>, usize), Failure> {
    let expected = &branch.headers[start..];
    let from = expected[0].0.number;
    let count = u32::try_from(expected.len()).unwrap_or(u32::MAX).min(*batch);
    let SyncResponse::Blocks(raw) = a.request(SyncRequest::Blocks { from, count }).await? else {
        return Err(Failure::offence(Offence::Garbage, "the answer to a block request is not blocks"));
    };
    if raw.is_empty() {
        return Err(Failure::Contradiction(format!(
            "it served the header of block {from} but not the block"
        )));
    }
    if raw.len() > count as usize {
        return Err(Failure::offence(Offence::BadBranch, format!("{} blocks for {count} asked", raw.len())));
    }
    *batch = next_batch(*batch, count, raw.len());
    let bytes = raw.iter().map(Vec::len).sum();
    let mut blocks = Vec::with_capacity(raw.len());
    for (bytes, (header, hash)) in raw.iter().zip(expected) {
        let block = decode_block(bytes).map_err(|e| {
            Failure::offence(Offence::BadBranch, format!("block {} does not decode: {e}", header.number))
        })?;
        check_matches(&block, header.number, hash)?;
        blocks.push(block);
    }
    Ok((blocks, bytes))
}

/// One RLP block, with nothing after it.
fn decode_block(bytes: &[u8]) -> Result<Block, alloy_rlp::Error> {
    let mut buf = bytes;
    let block = <Block as alloy_rlp::Decodable>::decode(&mut buf)?;
    if !buf.is_empty() {
        return Err(alloy_rlp::Error::Custom("bytes after the block"));
    }
    Ok(block)
}

/// The block is the one of the verified header `hash` (block `number`), and its body is the one
/// the header commits to.
fn check_matches(block: &Block, number: u64, hash: &alloy_primitives::B256) -> Result<(), Failure> {
    let bad = |why: String| Err(Failure::offence(Offence::BadBranch, why));
    let got = block.header.hash_slow();
    if got != *hash {
        // Blocks are asked for by number: its chain may have changed since it served the header.
        return Err(Failure::Contradiction(format!(
            "its block {number} is {got}, not the verified header {hash} it served"
        )));
    }
    let root = proofs::calculate_transaction_root(&block.body.transactions);
    if root != block.header.transactions_root {
        return bad(format!(
            "the body of block {number} does not match its header: transactionsRoot {} but the body's is {root}",
            block.header.transactions_root
        ));
    }
    if !block.body.ommers.is_empty() || block.body.withdrawals.as_ref().is_none_or(|w| !w.is_empty()) {
        return bad(format!("the body of block {number} has ommers or withdrawals"));
    }
    Ok(())
}
