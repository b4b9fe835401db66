//! The proposals this node's signer votes for, set through `clique_propose` / `clique_discard`.
//!
//! As in geth (`clique.go`, `Prepare`): for every non-checkpoint block it seals, the signer
//! picks one proposal at random among those that would still change something (adding an
//! account that is not a signer, dropping one that is) and casts it in the header. Proposals
//! are kept after they pass (a reorg may undo them) until discarded, and live only in memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use alloy_primitives::Address;
use parking_lot::Mutex;
use rand::Rng;

use super::{Proposal, Snapshot};

/// A shared map of account → `true` (vote to add) / `false` (vote to drop).
#[derive(Debug, Clone, Default)]
pub struct Proposals(Arc<Mutex<BTreeMap<Address, bool>>>);

impl Proposals {
    /// Votes to add (`authorize`) or drop `address` from now on, replacing an earlier proposal.
    pub fn propose(&self, address: Address, authorize: bool) {
        self.0.lock().insert(address, authorize);
    }

    /// Stops voting on `address`. Returns whether there was a proposal.
    pub fn discard(&self, address: &Address) -> bool {
        self.0.lock().remove(address).is_some()
    }

    /// Every current proposal.
    pub fn all(&self) -> BTreeMap<Address, bool> {
        self.0.lock().clone()
    }

    /// The vote to cast in block `number`, sealed on top of `snapshot`: a random proposal that
    /// would change the signer set, or none (always none on a checkpoint block).
    pub fn pick(&self, snapshot: &Snapshot, number: u64, rng: &mut impl Rng) -> Option<Proposal> {
        if number.is_multiple_of(snapshot.epoch) {
            return None;
        }
        let candidates: Vec<Proposal> = self
            .0
            .lock()
            .iter()
            .filter(|(address, authorize)| snapshot.valid_vote(address, **authorize))
            .map(|(address, authorize)| Proposal { address: *address, authorize: *authorize })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[rng.gen_range(0..candidates.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;
    use rand::SeedableRng;

    fn addr(b: u8) -> Address {
        Address::repeat_byte(b)
    }

    #[test]
    fn picks_only_votes_that_change_something() {
        let snap = Snapshot::new(30_000, 0, B256::ZERO, [addr(1), addr(2)]);
        let proposals = Proposals::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert!(proposals.pick(&snap, 1, &mut rng).is_none(), "no proposals, no vote");
        // Adding an existing signer and dropping a non-signer are already in effect.
        proposals.propose(addr(1), true);
        proposals.propose(addr(9), false);
        assert!(proposals.pick(&snap, 1, &mut rng).is_none());
        proposals.propose(addr(3), true);
        proposals.propose(addr(2), false);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let p = proposals.pick(&snap, 1, &mut rng).expect("a valid proposal");
            assert!((p.address == addr(3) && p.authorize) || (p.address == addr(2) && !p.authorize));
            seen.insert(p.address);
        }
        assert_eq!(seen.len(), 2, "both valid proposals are picked at random");
        assert_eq!(proposals.all().len(), 4);
        assert!(proposals.discard(&addr(3)));
        assert!(!proposals.discard(&addr(3)));
        for _ in 0..20 {
            assert_eq!(proposals.pick(&snap, 1, &mut rng).unwrap().address, addr(2));
        }
    }

    #[test]
    fn never_votes_on_checkpoint_blocks() {
        let snap = Snapshot::new(10, 9, B256::ZERO, [addr(1)]);
        let proposals = Proposals::default();
        proposals.propose(addr(5), true);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!(proposals.pick(&snap, 10, &mut rng).is_none());
        assert!(proposals.pick(&snap, 20, &mut rng).is_none());
        assert_eq!(proposals.pick(&snap, 11, &mut rng).unwrap().address, addr(5));
    }

    #[test]
    fn clones_share_the_map() {
        let a = Proposals::default();
        let b = a.clone();
        a.propose(addr(4), false);
        assert_eq!(b.all().get(&addr(4)), Some(&false));
    }
}
