//! Catching up with peers, header first: ask a peer for its status; if its chain is better
//! (EIP-3436), fetch its canonical headers from a little below our head and verify them as they
//! arrive against a copy of the Clique snapshot ([`HeaderChain`](crate::consensus::clique::HeaderChain):
//! parent links, seals, difficulty, recent signers, timestamps); only then fetch the blocks of the
//! verified headers, check that each matches its header, and import them or switch to the branch.
//! Nothing of a branch touches our chain (no block is reverted) before every header of it that we
//! hold has been verified.
//!
//! - [`walk`]: fetching and verifying a peer's headers into a [`walk::Branch`];
//! - [`commit`]: fetching the blocks of a verified branch and importing them, or reorganising;
//! - [`codec`]: the protocol's codec, with a decoding cap per kind of answer;
//! - [`serve`]: answering header requests.
//!
//! What one peer can make a node hold or spend in one sync attempt is capped
//! ([`MAX_BRANCH_HEADERS`], [`MAX_BRANCH_HEADER_BYTES`], [`MAX_BRANCH_BODY_BYTES`],
//! [`REQUEST_TIMEOUT`], [`ATTEMPT_TIMEOUT`]); a peer that serves a branch that does not link up or
//! does not verify ([`Offence::BadBranch`], at once banned), one that does not meet our chain
//! within [`REORG_WINDOW`] ([`Offence::Unverifiable`]), or one that is not on the head it claimed
//! and still claims ([`Offence::FalseHead`]) is punished; a peer that stalls is left alone for
//! [`STALL_BACKOFF`] while the node syncs from others.
//!
//! Block answers are capped in bytes by the serving side ([`super::protocol::SYNC_RESPONSE_BUDGET`]);
//! an answer that comes back with fewer blocks than asked makes the next request ask for that
//! many, and full answers double it again up to [`MAX_BLOCKS_PER_REQUEST`] (see [`next_batch`]).

#[cfg(test)]
mod attempts;
mod codec;
mod commit;
mod serve;
mod walk;

pub use codec::{RequestFailure, SyncCodec};
pub use serve::serve_headers;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{B256, U256};
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use super::peers::Offence;
use super::protocol::{SyncRequest, SyncResponse, MAX_BLOCKS_PER_REQUEST};
use super::Command;
use crate::blockchain::Blockchain;
use crate::primitives::Block;
use crate::storage::BlockQuery;

/// How far below our head we look for where a better chain diverges.
pub const REORG_WINDOW: u64 = 64;
/// Most verified headers one attempt holds before it fetches their blocks. Under Clique a block
/// adds 1 or 2 to the total difficulty, so a valid branch of this many blocks from a fork point
/// at most [`REORG_WINDOW`] below our head always outweighs our chain: the cap never stops a
/// reorganisation that fork choice wants.
pub const MAX_BRANCH_HEADERS: u64 = 1024;
/// Most bytes of RLP headers one attempt holds (about 1,600 headers of 650 bytes; reached before
/// [`MAX_BRANCH_HEADERS`] only by checkpoints listing many signers).
pub const MAX_BRANCH_HEADER_BYTES: usize = 1024 * 1024;
/// Most bytes of blocks held for a reorganisation (which switches in one step, so its blocks are
/// all fetched first). A branch that extends our head is imported as each answer arrives instead.
/// Eight blocks at the largest block size allowed by any chain (12 MiB), or thousands of
/// ordinary ones; a longer heavy branch is not switched to from this peer, and the refusal is
/// logged.
pub const MAX_BRANCH_BODY_BYTES: usize = 96 * 1024 * 1024;
/// How long one request may take before the peer counts as stalled. Honest nodes answer in
/// milliseconds, but a node under load (a debug build on two cores during a 4,000-transaction
/// burst) was measured at over 10 s, and an answer of 16 MiB on a slow uplink takes as long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one sync attempt with one peer may take; then the node turns to the next peer in
/// line (what was imported stays; the same peer is asked again on its next turn).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a peer that stalled is not synced from, while another peer is there to sync from.
pub const STALL_BACKOFF: Duration = Duration::from_secs(30);
/// A peer counts as there to sync from if it asked for a turn this recently (connected peers are
/// queued every 3 s).
const PRESENT: Duration = Duration::from_secs(10);

/// Whose turn it is: a peer that stalled is skipped for [`STALL_BACKOFF`], but only while another
/// peer that did not stall is present; if every peer stalled, they all keep their turns (a node
/// under load is slow, not lost).
#[derive(Debug, Default)]
struct Turns {
    stalled: HashMap<PeerId, Instant>,
    present: HashMap<PeerId, Instant>,
}

impl Turns {
    /// Whether `peer`, asking for a turn at `now`, gets it.
    fn take(&mut self, peer: PeerId, now: Instant) -> bool {
        self.present.insert(peer, now);
        self.present.retain(|_, t| now.duration_since(*t) < PRESENT);
        self.stalled.retain(|_, t| now.duration_since(*t) < STALL_BACKOFF);
        !self.stalled.contains_key(&peer) || self.present.keys().all(|p| self.stalled.contains_key(p))
    }

    /// Records that `peer` stalled at `now`.
    fn stalled(&mut self, peer: PeerId, now: Instant) {
        self.stalled.insert(peer, now);
    }
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

/// Why an attempt ended early.
#[derive(Debug)]
enum Failure {
    /// The peer misbehaved: punish it.
    Offence(Offence, String),
    /// A request got no answer within [`REQUEST_TIMEOUT`].
    Stalled(String),
    /// The peer's answers contradict its status or each other (their chain ended early or
    /// changed): a lie if its head is still the one it claimed, a reorganisation on its side if
    /// not. Settled by asking its status again ([`settle`]).
    Contradiction(String),
    /// Anything else (network failure, our own storage, the attempt's time is up, a branch we
    /// cannot take): try again later, nobody is punished.
    Other(String),
}

impl Failure {
    fn offence(offence: Offence, why: impl Into<String>) -> Self {
        Self::Offence(offence, why.into())
    }
}

impl From<crate::storage::StorageError> for Failure {
    fn from(e: crate::storage::StorageError) -> Self {
        Self::Other(e.to_string())
    }
}

/// A peer's status.
#[derive(Debug, Clone, Copy)]
struct Status {
    head: u64,
    head_hash: B256,
    total_difficulty: U256,
}

/// One sync attempt with one peer.
struct Attempt<'a> {
    chain: &'a Arc<Blockchain>,
    cmds: &'a mpsc::Sender<Command>,
    peer: PeerId,
    deadline: Instant,
}

impl Attempt<'_> {
    /// Sends `request` and waits for the answer, at most [`REQUEST_TIMEOUT`] and never past the
    /// attempt's deadline.
    async fn request(&self, request: SyncRequest) -> Result<SyncResponse, Failure> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Other("the attempt's time is up".into()));
        }
        let (tx, rx) = oneshot::channel();
        let stopped = || Failure::Other("network stopped".into());
        self.cmds
            .send(Command::Request { peer: self.peer, request, reply: tx })
            .await
            .map_err(|_| stopped())?;
        match tokio::time::timeout(REQUEST_TIMEOUT.min(left), rx).await {
            Err(_) if left < REQUEST_TIMEOUT => Err(Failure::Other("the attempt's time is up".into())),
            Err(_) => Err(Failure::Stalled(format!("no answer within {REQUEST_TIMEOUT:?}"))),
            Ok(Err(_)) => Err(stopped()),
            Ok(Ok(Err(RequestFailure::Undecodable(e)))) => Err(Failure::offence(Offence::Garbage, e)),
            Ok(Ok(Err(RequestFailure::Network(e)))) => Err(Failure::Other(e)),
            Ok(Ok(Ok(SyncResponse::Error(e)))) => {
                Err(Failure::Other(format!("the peer could not answer: {e}")))
            }
            Ok(Ok(Ok(answer))) => Ok(answer),
        }
    }

    /// The peer's status, checked: same genesis, and a total difficulty its claimed head can
    /// carry (at most 2 per block above genesis).
    async fn status(&self) -> Result<Status, Failure> {
        let SyncResponse::Status { genesis, head, head_hash, total_difficulty } =
            self.request(SyncRequest::Status).await?
        else {
            return Err(Failure::offence(Offence::Garbage, "the answer to a status request is not a status"));
        };
        let spec = self.chain.spec();
        if B256::from(genesis) != spec.genesis_hash {
            return Err(Failure::offence(Offence::WrongChain, "the peer is on another chain"));
        }
        let total_difficulty = U256::from_be_bytes(total_difficulty);
        let genesis_td =
            self.chain.reads().header_by_hash(&spec.genesis_hash)?.map(|(_, td)| td).unwrap_or(U256::from(1));
        let most = genesis_td + U256::from(head) * crate::consensus::clique::DIFF_IN_TURN;
        if total_difficulty > most {
            return Err(Failure::offence(
                Offence::FalseHead,
                format!(
                    "the peer claims total difficulty {total_difficulty} at block {head}, more than \
                     {most} (2 per block above genesis)"
                ),
            ));
        }
        Ok(Status { head, head_hash: B256::from(head_hash), total_difficulty })
    }
}

/// Runs sync attempts one at a time, one peer after another.
pub(super) async fn run(
    chain: Arc<Blockchain>,
    cmds: mpsc::Sender<Command>,
    mut rx: mpsc::Receiver<(PeerId, Option<Block>)>,
    progress: Arc<SyncProgress>,
) {
    // Blocks per range request, adapted to the sizes of the blocks peers send.
    let mut batch = MAX_BLOCKS_PER_REQUEST;
    let mut turns = Turns::default();
    while let Some((peer, _hint)) = rx.recv().await {
        if !turns.take(peer, Instant::now()) {
            continue;
        }
        let attempt =
            Attempt { chain: &chain, cmds: &cmds, peer, deadline: Instant::now() + ATTEMPT_TIMEOUT };
        // The deadline is checked before each request; this bounds the imports in between too.
        let outcome = tokio::time::timeout(
            ATTEMPT_TIMEOUT + REQUEST_TIMEOUT,
            sync_with(&attempt, &mut batch, &progress),
        )
        .await
        .unwrap_or_else(|_| Err(Failure::Other("the attempt's time is up".into())));
        match outcome {
            Ok(()) => {}
            Err(Failure::Offence(offence, why)) => {
                tracing::warn!(%peer, ?offence, reason = %why, "sync peer misbehaved");
                let _ = cmds.send(Command::Punish { peer, offence }).await;
            }
            Err(Failure::Stalled(why)) => {
                tracing::warn!(%peer, reason = %why, backoff = ?STALL_BACKOFF, "sync peer stalled; syncing from others");
                turns.stalled(peer, Instant::now());
            }
            Err(Failure::Other(why) | Failure::Contradiction(why)) => {
                tracing::debug!(%peer, reason = %why, "sync attempt ended")
            }
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

/// One attempt: status, then rounds of (verified branch, its blocks) until we are on the peer's
/// claimed head, or the attempt fails or runs out of time.
async fn sync_with(a: &Attempt<'_>, batch: &mut u32, progress: &SyncProgress) -> Result<(), Failure> {
    let status = a.status().await?;
    let ours = a.chain.head();
    if status.head_hash == ours.hash || status.total_difficulty <= ours.total_difficulty {
        return Ok(());
    }
    let _syncing = Syncing::start(progress, ours.header.number, status.head);
    match rounds(a, &status, batch).await {
        Err(Failure::Contradiction(why)) => Err(settle(a, &status, why).await),
        other => other,
    }
}

/// A contradiction is an offence ([`Offence::FalseHead`]) if the peer still claims the head it
/// claimed when the attempt began; otherwise its chain moved under us, which is no offence.
async fn settle(a: &Attempt<'_>, claimed: &Status, why: String) -> Failure {
    match a.status().await {
        Ok(now) if now.head_hash == claimed.head_hash => {
            Failure::offence(Offence::FalseHead, format!("{why}, and it still claims that head"))
        }
        Ok(_) => Failure::Other(format!("{why}; its head moved meanwhile")),
        Err(e) => e,
    }
}

/// Rounds of (verified branch, its blocks) until we are on the peer's claimed head.
async fn rounds(a: &Attempt<'_>, status: &Status, batch: &mut u32) -> Result<(), Failure> {
    loop {
        // Each round looks for where their chain leaves ours from a little below our head (which
        // the last round, or our own sealer, may have moved).
        let from = a.chain.head_number().saturating_sub(REORG_WINDOW).max(1);
        let walked = walk::walk(a, status, from).await?;
        let Some(branch) = walked.branch else {
            return Ok(()); // nothing of theirs to take (yet)
        };
        let progressed = commit::commit(a, branch, batch).await?;
        if walked.complete || !progressed {
            return Ok(());
        }
    }
}

// A branch held at its cap always outweighs our chain above a fork point within the window:
// ours adds at most 2 per block, theirs at least 1.
const _: () = assert!(MAX_BRANCH_HEADERS > 2 * REORG_WINDOW);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_peer_waits_out_its_backoff_while_another_peer_is_present() {
        let (slow, other) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let mut turns = Turns::default();
        assert!(turns.take(slow, t0));
        turns.stalled(slow, t0);
        // Alone, it keeps its turns.
        assert!(turns.take(slow, t0 + Duration::from_secs(3)));
        // With another peer present, it is skipped until the backoff is over.
        assert!(turns.take(other, t0 + Duration::from_secs(4)));
        assert!(!turns.take(slow, t0 + Duration::from_secs(5)));
        assert!(turns.take(other, t0 + Duration::from_secs(7)));
        let just_under = t0 + STALL_BACKOFF - Duration::from_millis(1);
        assert!(turns.take(other, just_under - Duration::from_secs(1)));
        assert!(!turns.take(slow, just_under));
        assert!(turns.take(slow, t0 + STALL_BACKOFF), "at the backoff");
        // The other peer gone (not queued within PRESENT) leaves the slow one its turns again.
        turns.stalled(slow, t0 + STALL_BACKOFF);
        assert!(turns.take(other, t0 + STALL_BACKOFF + Duration::from_secs(1)));
        assert!(!turns.take(slow, t0 + STALL_BACKOFF + PRESENT));
        assert!(turns.take(slow, t0 + STALL_BACKOFF + Duration::from_secs(1) + PRESENT));
        // Both stalled: both keep their turns.
        turns.stalled(other, t0 + STALL_BACKOFF + PRESENT);
        assert!(turns.take(other, t0 + STALL_BACKOFF + PRESENT + Duration::from_secs(1)));
    }

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
