//! Verifying a chain of headers before any of its bodies is fetched (header-first sync).
//!
//! A [`HeaderChain`] starts from a block this node has (the fork point: its header, hash and
//! Clique snapshot) and takes a peer's headers one at a time. Each must be the next block of the
//! last one accepted and pass every rule of [`verify_header`]: number and parent link, seal
//! (recovering to an authorised signer, low-s), difficulty for that signer's turn, the
//! recent-signer rule, timestamps (not before parent + period, not in the future), votes,
//! checkpoints, gas and the fixed post-London fields. The snapshot it checks against is its own
//! copy, advanced header by header: nothing of the node's chain changes while a peer's branch is
//! checked.

use alloy_consensus::Header;
use alloy_primitives::{Address, B256, U256};

use super::{verify_header, CliqueError, Snapshot};
use crate::chain::CliqueConfig;

/// A verified header chain growing from a known block.
#[derive(Debug, Clone)]
pub struct HeaderChain {
    config: CliqueConfig,
    tip: Header,
    tip_hash: B256,
    snapshot: Snapshot,
    /// Sum of the difficulties of the headers accepted (the fork point's not included).
    difficulty: U256,
    accepted: u64,
}

impl HeaderChain {
    /// A chain whose next header must be the child of `parent` (hash `parent_hash`), checked
    /// against `snapshot`, the Clique snapshot after `parent` (the caller's copy).
    ///
    /// A snapshot that is not `parent`'s is refused with [`CliqueError::UnknownParent`]: every
    /// later verdict would be wrong.
    pub fn new(
        config: CliqueConfig,
        parent: Header,
        parent_hash: B256,
        snapshot: Snapshot,
    ) -> Result<Self, CliqueError> {
        if snapshot.hash != parent_hash || snapshot.number != parent.number {
            return Err(CliqueError::UnknownParent(parent_hash));
        }
        Ok(Self { config, tip: parent, tip_hash: parent_hash, snapshot, difficulty: U256::ZERO, accepted: 0 })
    }

    /// Verifies `header` as the next block and accepts it; returns its hash and signer. A header
    /// that breaks a rule leaves the chain as it was. `now` is the local time for the
    /// future-block rule.
    pub fn push(&mut self, header: Header, now: u64) -> Result<(B256, Address), CliqueError> {
        let (snapshot, signer) =
            verify_header(&self.config, &header, &self.tip, self.tip_hash, &self.snapshot, Some(now))?;
        let hash = header.hash_slow();
        self.difficulty += header.difficulty;
        self.snapshot = snapshot;
        self.tip = header;
        self.tip_hash = hash;
        self.accepted += 1;
        Ok((hash, signer))
    }

    /// The last accepted header (the fork point while none is).
    pub fn tip(&self) -> &Header {
        &self.tip
    }

    /// Hash of [`HeaderChain::tip`].
    pub fn tip_hash(&self) -> B256 {
        self.tip_hash
    }

    /// The snapshot after the tip.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Total difficulty the accepted headers add on top of the fork point.
    pub fn difficulty(&self) -> U256 {
        self.difficulty
    }

    /// Headers accepted so far.
    pub fn len(&self) -> u64 {
        self.accepted
    }

    /// Whether no header was accepted yet.
    pub fn is_empty(&self) -> bool {
        self.accepted == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::clique::{prepare_header, sign_header, SealIntent, DIFF_IN_TURN, DIFF_NO_TURN};
    use crate::crypto::{SigningKey, SECP256K1N_HALF};
    use alloy_primitives::keccak256;

    const PERIOD: u64 = 5;
    const GAS: u64 = 30_000_000;
    const T0: u64 = 1_700_000_000;
    /// A local clock well after every header of these tests (the future rule has its own test).
    const NOW: u64 = T0 + 1_000_000;

    fn keys() -> Vec<SigningKey> {
        let mut keys: Vec<SigningKey> = (0..3)
            .map(|i| SigningKey::from_bytes(&keccak256(format!("header chain test key {i}"))).unwrap())
            .collect();
        keys.sort_by_key(SigningKey::address);
        keys
    }

    fn config() -> CliqueConfig {
        CliqueConfig { period: PERIOD, epoch: 30_000 }
    }

    /// Genesis of a 3-signer chain (sorted keys) and its snapshot.
    fn genesis(keys: &[SigningKey]) -> (Header, B256, Snapshot) {
        let header = Header { gas_limit: GAS, timestamp: T0, ..Default::default() };
        let hash = header.hash_slow();
        (header, hash, Snapshot::new(30_000, 0, hash, keys.iter().map(SigningKey::address)))
    }

    /// The child of `chain`'s tip sealed by `key` at `timestamp`, with the right difficulty.
    fn child(chain: &HeaderChain, key: &SigningKey, timestamp: u64) -> Header {
        let intent = SealIntent { signer: &key.address(), timestamp, gas_limit: GAS, vote: None };
        let mut h = prepare_header(&config(), chain.tip(), chain.tip_hash(), chain.snapshot(), intent);
        h.timestamp = timestamp;
        sign_header(&mut h, key).unwrap();
        h
    }

    /// A chain of `n` in-turn blocks, `PERIOD` apart, from genesis.
    fn chain_of(n: u64) -> (Vec<SigningKey>, HeaderChain) {
        let keys = keys();
        let (g, hash, snap) = genesis(&keys);
        let mut chain = HeaderChain::new(config(), g, hash, snap).unwrap();
        for i in 1..=n {
            let h = child(&chain, &keys[(i % 3) as usize], T0 + i * PERIOD);
            chain.push(h, NOW).unwrap();
        }
        (keys, chain)
    }

    fn in_turn(chain: &HeaderChain, keys: &[SigningKey]) -> SigningKey {
        keys[((chain.tip().number + 1) % 3) as usize].clone()
    }

    #[test]
    fn a_valid_chain_is_accepted_on_a_copy_of_the_snapshot() {
        let keys = keys();
        let (g, hash, snap) = genesis(&keys);
        let original = snap.clone();
        let mut chain = HeaderChain::new(config(), g, hash, snap).unwrap();
        for i in 1..=6u64 {
            let h = child(&chain, &keys[(i % 3) as usize], T0 + i * PERIOD);
            let expected = h.hash_slow();
            assert_eq!(chain.push(h, NOW).unwrap(), (expected, keys[(i % 3) as usize].address()));
        }
        assert_eq!(chain.len(), 6);
        assert_eq!(chain.difficulty(), U256::from(12), "six in-turn blocks");
        assert_eq!(chain.snapshot().number, 6);
        assert_eq!(original.number, 0, "the caller's snapshot is not touched");
        assert!(original.recents.is_empty());
    }

    #[test]
    fn a_snapshot_of_another_block_is_refused() {
        let keys = keys();
        let (g, hash, snap) = genesis(&keys);
        let err = HeaderChain::new(config(), g, B256::repeat_byte(1), snap).unwrap_err();
        assert_eq!(err, CliqueError::UnknownParent(B256::repeat_byte(1)));
        let child = Header { number: 1, ..Default::default() };
        assert!(HeaderChain::new(config(), child, hash, genesis(&keys).2).is_err(), "wrong number");
    }

    #[test]
    fn timestamps_just_under_at_and_over_parent_plus_period() {
        let (keys, chain) = chain_of(2);
        let parent = chain.tip().timestamp;
        let key = in_turn(&chain, &keys);
        let mut c = chain.clone();
        let err = c.push(child(&chain, &key, parent + PERIOD - 1), NOW).unwrap_err();
        assert_eq!(err, CliqueError::TimestampTooEarly { min: parent + PERIOD, got: parent + PERIOD - 1 });
        assert_eq!(c.len(), 2, "a refused header leaves the chain as it was");
        assert!(c.push(child(&chain, &key, parent + PERIOD), NOW).is_ok());
        let mut c = chain.clone();
        assert!(c.push(child(&chain, &key, parent + PERIOD + 1), NOW).is_ok());
    }

    #[test]
    fn future_timestamps_just_under_at_and_over_the_tolerance() {
        let (keys, chain) = chain_of(1);
        let key = in_turn(&chain, &keys);
        let t = chain.tip().timestamp + PERIOD;
        // The rule: a header may be at most one second ahead of the local clock.
        for (now, ok) in [(t, true), (t - 1, true), (t - 2, false)] {
            let mut c = chain.clone();
            let r = c.push(child(&chain, &key, t), now);
            assert_eq!(r.is_ok(), ok, "header at {t}, clock at {now}: {r:?}");
            if !ok {
                assert_eq!(r.unwrap_err(), CliqueError::FutureBlock(t));
            }
        }
    }

    #[test]
    fn parent_link_and_number_must_follow_the_tip() {
        let (keys, chain) = chain_of(2);
        let key = in_turn(&chain, &keys);
        let t = chain.tip().timestamp + PERIOD;
        let mut h = child(&chain, &key, t);
        h.parent_hash = B256::repeat_byte(7);
        sign_header(&mut h, &key).unwrap();
        assert_eq!(chain.clone().push(h, NOW).unwrap_err(), CliqueError::ParentHash);
        let mut h = child(&chain, &key, t);
        h.number += 1;
        sign_header(&mut h, &key).unwrap();
        assert_eq!(
            chain.clone().push(h, NOW).unwrap_err(),
            CliqueError::NonContiguous { expected: 3, got: 4 }
        );
        // The tip itself again (a repeated header) is not the next block either.
        let (_, tip) = chain_of(2);
        assert!(chain.clone().push(tip.tip().clone(), NOW).is_err());
    }

    #[test]
    fn seals_must_recover_to_an_authorised_signer_with_low_s() {
        let (keys, chain) = chain_of(2);
        let t = chain.tip().timestamp + PERIOD;
        let key = in_turn(&chain, &keys);
        // A stranger's seal.
        let stranger = SigningKey::from_bytes(&keccak256("stranger")).unwrap();
        let mut h = child(&chain, &key, t);
        sign_header(&mut h, &stranger).unwrap();
        assert_eq!(chain.clone().push(h, NOW).unwrap_err(), CliqueError::Unauthorized(stranger.address()));
        // Garbage in the seal bytes.
        let mut h = child(&chain, &key, t);
        let mut extra = h.extra_data.to_vec();
        let n = extra.len();
        extra[n - 65..].fill(0xff);
        h.extra_data = extra.into();
        assert!(matches!(
            chain.clone().push(h, NOW).unwrap_err(),
            CliqueError::InvalidSeal | CliqueError::HighSSeal
        ));
        // The malleated (high-s) twin of a valid seal.
        let good = child(&chain, &key, t);
        let mut twin = good.clone();
        let mut extra = twin.extra_data.to_vec();
        let at = extra.len() - 65;
        let order = SECP256K1N_HALF * U256::from(2) + U256::from(1);
        let s = U256::from_be_slice(&extra[at + 32..at + 64]);
        extra[at + 32..at + 64].copy_from_slice(&(order - s).to_be_bytes::<32>());
        extra[at + 64] = 1 - extra[at + 64];
        twin.extra_data = extra.into();
        assert_eq!(chain.clone().push(twin, NOW).unwrap_err(), CliqueError::HighSSeal);
        assert!(chain.clone().push(good, NOW).is_ok());
        // A header with no room for a seal.
        let mut h = child(&chain, &key, t);
        h.extra_data = vec![0u8; 96].into();
        assert_eq!(chain.clone().push(h, NOW).unwrap_err(), CliqueError::MissingSeal);
    }

    #[test]
    fn difficulty_must_match_the_signers_turn() {
        let (keys, chain) = chain_of(2);
        let t = chain.tip().timestamp + PERIOD;
        let in_turn_key = in_turn(&chain, &keys);
        // Block 3: in turn is keys[0]; keys[1] signed block 1 and may sign again (limit 2).
        let out_of_turn = keys[1].clone();
        let resign = |diff: U256, key: &SigningKey| {
            let mut h = child(&chain, key, t);
            h.difficulty = diff;
            sign_header(&mut h, key).unwrap();
            h
        };
        let err = chain.clone().push(resign(DIFF_NO_TURN, &in_turn_key), NOW).unwrap_err();
        assert_eq!(err, CliqueError::Difficulty { expected: DIFF_IN_TURN, got: DIFF_NO_TURN });
        let err = chain.clone().push(resign(DIFF_IN_TURN, &out_of_turn), NOW).unwrap_err();
        assert_eq!(err, CliqueError::Difficulty { expected: DIFF_NO_TURN, got: DIFF_IN_TURN });
        let err = chain.clone().push(resign(U256::from(3), &in_turn_key), NOW).unwrap_err();
        assert!(matches!(err, CliqueError::Difficulty { .. }), "{err}");
        assert!(chain.clone().push(resign(DIFF_IN_TURN, &in_turn_key), NOW).is_ok());
        assert!(chain.clone().push(resign(DIFF_NO_TURN, &out_of_turn), NOW).is_ok());
    }

    #[test]
    fn recent_signers_wait_just_under_at_and_over_the_limit() {
        // Three signers: a signer must stay out of floor(3/2)+1 = 2 consecutive blocks, i.e. may
        // sign block n and then block n + 2 at the earliest.
        let (keys, chain) = chain_of(2);
        let last = keys[2].clone(); // signed block 2
        let t = chain.tip().timestamp + PERIOD;
        let err = chain.clone().push(child(&chain, &last, t), NOW).unwrap_err();
        assert_eq!(err, CliqueError::RecentlySigned(last.address()), "block n + 1");
        let before = keys[1].clone(); // signed block 1: block 3 is n + 2 for it
        let mut c = chain.clone();
        c.push(child(&chain, &before, t), NOW).expect("block n + 2 is allowed");
        // And block 4 by the signer of block 2 is n + 2 for it.
        let next = child(&c, &last, t + PERIOD);
        assert!(c.push(next, NOW).is_ok());
    }
}
