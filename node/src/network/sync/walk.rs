//! Walking a peer's canonical headers from a little below our head: the common prefix is
//! skipped, and from the first header that is not ours on, every header is verified as it
//! arrives on a copy of the snapshot of the block it grows from, into a [`Branch`].

use alloy_consensus::Header;
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rlp::Decodable;

use super::{Attempt, Failure, Status, MAX_BRANCH_HEADERS, MAX_BRANCH_HEADER_BYTES, REORG_WINDOW};
use crate::blockchain::{unix_now, Blockchain};
use crate::consensus::clique::{CliqueError, HeaderChain};
use crate::network::peers::Offence;
use crate::network::protocol::{SyncRequest, SyncResponse, MAX_HEADERS_PER_REQUEST};
use crate::storage::BlockQuery;

/// A peer's branch: headers verified one by one from a block of ours (the fork point).
pub(super) struct Branch {
    /// The block of ours the branch grows from.
    pub fork_hash: B256,
    /// Its total difficulty.
    fork_td: U256,
    verifier: HeaderChain,
    /// The verified headers and their hashes, in order.
    pub headers: Vec<(Header, B256)>,
    tip_signer: Address,
    bytes: usize,
}

impl Branch {
    /// A branch whose first header is `first`: its parent must be a canonical block of ours.
    fn start(chain: &Blockchain, first: &Header) -> Result<Self, Failure> {
        let parent = first.parent_hash;
        let number = first.number.checked_sub(1).ok_or_else(|| {
            Failure::offence(Offence::BadBranch, "a header numbered 0 is not the genesis block")
        })?;
        if chain.reads().canonical_hash(number)? != Some(parent) {
            return Err(Failure::offence(
                Offence::Unverifiable,
                format!(
                    "its header {} does not link to our block {number}: its chain leaves ours more \
                     than {REORG_WINDOW} blocks below our head, where it cannot be verified",
                    first.number
                ),
            ));
        }
        let head = chain.head();
        let (header, td, snapshot) = if head.hash == parent {
            (head.header, head.total_difficulty, head.snapshot)
        } else {
            let (header, td) = chain
                .reads()
                .header_by_hash(&parent)?
                .ok_or_else(|| Failure::Other(format!("block {parent} vanished")))?;
            let snapshot = chain
                .snapshot_at(&parent)?
                .ok_or_else(|| Failure::Other(format!("no Clique snapshot kept for block {number}")))?;
            (header, td, snapshot)
        };
        let verifier = HeaderChain::new(chain.spec().clique, header, parent, snapshot)
            .map_err(|e| Failure::Other(format!("our snapshot of block {number}: {e}")))?;
        Ok(Self {
            fork_hash: parent,
            fork_td: td,
            verifier,
            headers: Vec::new(),
            tip_signer: Address::ZERO,
            bytes: 0,
        })
    }

    fn push(&mut self, header: Header, size: usize, now: u64) -> Result<(), CliqueError> {
        let (hash, signer) = self.verifier.push(header.clone(), now)?;
        self.headers.push((header, hash));
        self.tip_signer = signer;
        self.bytes += size;
        Ok(())
    }

    /// Whether the branch holds as much as one attempt may.
    fn is_full(&self) -> bool {
        self.headers.len() as u64 >= MAX_BRANCH_HEADERS || self.bytes >= MAX_BRANCH_HEADER_BYTES
    }

    /// Total difficulty at the branch's tip.
    pub fn total_difficulty(&self) -> U256 {
        self.fork_td + self.verifier.difficulty()
    }

    /// The signer of the tip.
    pub fn tip_signer(&self) -> Address {
        self.tip_signer
    }
}

/// What a walk found.
pub(super) struct Walked {
    /// The verified branch, if their chain leaves ours.
    pub branch: Option<Branch>,
    /// Whether the walk reached the head the peer claimed (or stopped at a header from the
    /// future, which a later attempt takes); if not, the branch is at its cap.
    pub complete: bool,
}

/// Fetches the peer's headers from block `from` up to its claimed head, verifying as they come,
/// until the branch is at its cap. Every offence found ends the walk before anything is fetched
/// or changed.
pub(super) async fn walk(a: &Attempt<'_>, status: &Status, from: u64) -> Result<Walked, Failure> {
    let mut next = from;
    let mut prev: Option<B256> = None;
    let mut branch: Option<Branch> = None;
    while next <= status.head {
        let room = match &branch {
            Some(b) if b.is_full() => return Ok(Walked { branch, complete: false }),
            Some(b) => MAX_BRANCH_HEADERS - b.headers.len() as u64,
            None => MAX_BRANCH_HEADERS,
        };
        let count = (status.head - next + 1).min(u64::from(MAX_HEADERS_PER_REQUEST)).min(room) as u32;
        let headers = fetch_headers(a, next, count, prev).await?;
        if headers.is_empty() {
            return Err(Failure::Contradiction(format!(
                "its headers end at block {}, below the head {} it claimed",
                next - 1,
                status.head
            )));
        }
        let now = unix_now();
        for (header, hash, size) in headers {
            let number = header.number;
            if number == status.head && hash != status.head_hash {
                return Err(Failure::Contradiction(format!(
                    "its block {number} is {hash}, not the head {} it claimed",
                    status.head_hash
                )));
            }
            if branch.is_none() {
                if a.chain.reads().canonical_hash(number)? == Some(hash) {
                    (prev, next) = (Some(hash), number + 1);
                    continue; // common prefix
                }
                branch = Some(Branch::start(a.chain, &header)?);
            }
            let Some(b) = branch.as_mut() else { continue };
            match b.push(header, size, now) {
                Ok(()) => {}
                // Clock skew is not an offence: take what came before it; a later attempt the rest.
                Err(CliqueError::FutureBlock(_)) => {
                    return Ok(Walked { branch: branch.filter(|b| !b.headers.is_empty()), complete: true })
                }
                Err(e) => {
                    return Err(Failure::offence(
                        Offence::BadBranch,
                        format!("its header {number} ({hash}): {e}"),
                    ))
                }
            }
            (prev, next) = (Some(hash), number + 1);
        }
    }
    check_claimed_difficulty(a, status, branch.as_ref())?;
    Ok(Walked { branch, complete: true })
}

/// At the claimed head, the total difficulty claimed must be the chain's.
fn check_claimed_difficulty(
    a: &Attempt<'_>,
    status: &Status,
    branch: Option<&Branch>,
) -> Result<(), Failure> {
    let actual = match branch {
        Some(b) => b.total_difficulty(),
        // Their head is a block of ours.
        None => a.chain.reads().header_by_hash(&status.head_hash)?.map(|(_, td)| td).unwrap_or_default(),
    };
    if actual != status.total_difficulty {
        return Err(Failure::Contradiction(format!(
            "it claimed total difficulty {} at block {}, but its chain has {actual}",
            status.total_difficulty, status.head
        )));
    }
    Ok(())
}

/// Asks for `count` headers from `from` and checks the answer's shape: no more than asked,
/// each decodes, numbers from `from` one by one, each the parent of the next (the first the child
/// of `prev`, the last header of the previous answer). Returns (header, hash, RLP size).
async fn fetch_headers(
    a: &Attempt<'_>,
    from: u64,
    count: u32,
    prev: Option<B256>,
) -> Result<Vec<(Header, B256, usize)>, Failure> {
    let SyncResponse::Headers(raw) = a.request(SyncRequest::Headers { from, count }).await? else {
        return Err(Failure::offence(Offence::Garbage, "the answer to a header request is not headers"));
    };
    if raw.len() > count as usize {
        return Err(Failure::offence(Offence::BadBranch, format!("{} headers for {count} asked", raw.len())));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut link = prev;
    for (i, bytes) in raw.iter().enumerate() {
        let header = decode_header(bytes).map_err(|e| {
            Failure::offence(Offence::BadBranch, format!("header {i} of an answer does not decode: {e}"))
        })?;
        let hash = header.hash_slow();
        let expected = from + i as u64;
        // Between two answers its chain may have changed (a reorganisation): not a lie yet.
        if i == 0 && header.number == expected && link.is_some_and(|p| p != header.parent_hash) {
            return Err(Failure::Contradiction(format!(
                "its header {expected} is not the child of the header {} it served before",
                expected - 1
            )));
        }
        if header.number != expected || link.is_some_and(|p| p != header.parent_hash) {
            return Err(Failure::offence(
                Offence::BadBranch,
                format!(
                    "a non-contiguous branch: block {} where block {expected}, child of the block before, was due",
                    header.number
                ),
            ));
        }
        link = Some(hash);
        out.push((header, hash, bytes.len()));
    }
    Ok(out)
}

/// One RLP header, with nothing after it.
fn decode_header(bytes: &Bytes) -> Result<Header, alloy_rlp::Error> {
    let mut buf = bytes.as_ref();
    let header = Header::decode(&mut buf)?;
    if !buf.is_empty() {
        return Err(alloy_rlp::Error::Custom("bytes after the header"));
    }
    Ok(header)
}
