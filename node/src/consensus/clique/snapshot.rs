//! The Clique snapshot: who may sign, who signed recently, and the running vote tally.
//!
//! This follows geth's `consensus/clique/snapshot.go`, the reference implementation of EIP-225.

use std::collections::{BTreeMap, BTreeSet};

use alloy_consensus::Header;
use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use super::{recover_sealer, CliqueError, NONCE_AUTH, NONCE_DROP};

/// One vote cast in a header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The signer that cast the vote.
    pub signer: Address,
    /// Block number the vote was cast in.
    pub block: u64,
    /// The account voted on.
    pub address: Address,
    /// Whether to add (`true`) or remove it.
    pub authorize: bool,
}

/// The running count of votes about one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Whether the votes are to add or to remove.
    pub authorize: bool,
    /// How many signers voted so.
    pub votes: usize,
}

/// The consensus state after a given block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Epoch length, for checkpoint detection.
    pub epoch: u64,
    /// Block number this snapshot is for.
    pub number: u64,
    /// Block hash this snapshot is for.
    pub hash: B256,
    /// Authorised signers.
    pub signers: BTreeSet<Address>,
    /// Recent signers by block number, for the "signed recently" rule.
    pub recents: BTreeMap<u64, Address>,
    /// Votes cast since the last checkpoint, in order.
    pub votes: Vec<Vote>,
    /// Vote tally per account.
    pub tally: BTreeMap<Address, Tally>,
}

impl Snapshot {
    /// The snapshot at a checkpoint (or genesis) listing `signers`.
    pub fn new(epoch: u64, number: u64, hash: B256, signers: impl IntoIterator<Item = Address>) -> Self {
        Self {
            epoch,
            number,
            hash,
            signers: signers.into_iter().collect(),
            recents: BTreeMap::new(),
            votes: Vec::new(),
            tally: BTreeMap::new(),
        }
    }

    /// How many consecutive blocks a signer must stay out of after signing: floor(N/2)+1.
    pub fn signer_limit(&self) -> u64 {
        self.signers.len() as u64 / 2 + 1
    }

    /// Signers in ascending order.
    pub fn signers_sorted(&self) -> Vec<Address> {
        self.signers.iter().copied().collect()
    }

    /// Whether `signer` is the in-turn signer at block `number`.
    pub fn in_turn(&self, number: u64, signer: &Address) -> bool {
        let signers = self.signers_sorted();
        match signers.iter().position(|s| s == signer) {
            Some(idx) => (number % signers.len() as u64) as usize == idx,
            None => false,
        }
    }

    /// Whether `signer` signed within the last `signer_limit` blocks, as of sealing `number`.
    pub fn signed_recently(&self, number: u64, signer: &Address) -> bool {
        let limit = self.signer_limit();
        self.recents.iter().any(|(seen, s)| s == signer && (number < limit || *seen > number - limit))
    }

    fn valid_vote(&self, address: &Address, authorize: bool) -> bool {
        let is_signer = self.signers.contains(address);
        (is_signer && !authorize) || (!is_signer && authorize)
    }

    fn cast(&mut self, address: Address, authorize: bool) -> bool {
        if !self.valid_vote(&address, authorize) {
            return false;
        }
        self.tally.entry(address).and_modify(|t| t.votes += 1).or_insert(Tally { authorize, votes: 1 });
        true
    }

    fn uncast(&mut self, address: &Address, authorize: bool) -> bool {
        let Some(tally) = self.tally.get_mut(address) else { return false };
        if tally.authorize != authorize {
            return false;
        }
        if tally.votes > 1 {
            tally.votes -= 1;
        } else {
            self.tally.remove(address);
        }
        true
    }

    /// Applies one header (the child of this snapshot's block) and returns its signer.
    pub fn apply(&mut self, header: &Header, hash: B256) -> Result<Address, CliqueError> {
        let number = header.number;
        if number != self.number + 1 {
            return Err(CliqueError::NonContiguous { expected: self.number + 1, got: number });
        }
        if number.is_multiple_of(self.epoch) {
            self.votes.clear();
            self.tally.clear();
        }
        let limit = self.signer_limit();
        if number >= limit {
            self.recents.remove(&(number - limit));
        }
        let signer = recover_sealer(header)?;
        if !self.signers.contains(&signer) {
            return Err(CliqueError::Unauthorized(signer));
        }
        if self.recents.values().any(|s| *s == signer) {
            return Err(CliqueError::RecentlySigned(signer));
        }
        self.recents.insert(number, signer);

        // Discard any previous vote of this signer about the same account.
        let target = header.beneficiary;
        if let Some(pos) = self.votes.iter().position(|v| v.signer == signer && v.address == target) {
            let old = self.votes.remove(pos);
            self.uncast(&old.address, old.authorize);
        }
        let authorize = if header.nonce == NONCE_AUTH {
            true
        } else if header.nonce == NONCE_DROP {
            false
        } else {
            return Err(CliqueError::InvalidVote);
        };
        if target != Address::ZERO && self.cast(target, authorize) {
            self.votes.push(Vote { signer, block: number, address: target, authorize });
        }
        // A vote that passes changes the signer set.
        if let Some(tally) = self.tally.get(&target).copied() {
            if tally.votes > self.signers.len() / 2 {
                if tally.authorize {
                    self.signers.insert(target);
                } else {
                    self.signers.remove(&target);
                    let limit = self.signer_limit();
                    if number >= limit {
                        self.recents.remove(&(number - limit));
                    }
                    // Votes the removed signer cast no longer count (no cascading).
                    let mut i = 0;
                    while i < self.votes.len() {
                        if self.votes[i].signer == target {
                            let v = self.votes.remove(i);
                            self.uncast(&v.address, v.authorize);
                        } else {
                            i += 1;
                        }
                    }
                }
                self.votes.retain(|v| v.address != target);
                self.tally.remove(&target);
            }
        }
        self.number = number;
        self.hash = hash;
        Ok(signer)
    }
}
