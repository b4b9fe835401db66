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

    /// Whether a vote would change the signer set: adding a non-signer or dropping a signer.
    pub fn valid_vote(&self, address: &Address, authorize: bool) -> bool {
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

/// EIP-225's "Test Cases" voting table (geth's `TestClique`), plus geth's case of a batch
/// boundary right after a checkpoint. Headers are really signed by labelled test keys and run
/// through [`Snapshot::apply`]; a batch boundary round-trips the snapshot through the JSON the
/// store keeps, as a restart or a later import would.
#[cfg(test)]
mod eip225 {
    use super::*;
    use crate::chain::{EXTRA_SEAL, EXTRA_VANITY};
    use crate::consensus::clique::sign_header;
    use crate::crypto::SigningKey;
    use alloy_primitives::{keccak256, B64};

    /// One block: its signer, an optional vote, the checkpoint signer list, a new import batch.
    #[derive(Clone, Copy, Default)]
    struct B {
        signer: &'static str,
        voted: &'static str,
        auth: bool,
        checkpoint: Option<&'static [&'static str]>,
        new_batch: bool,
    }

    fn b(signer: &'static str) -> B {
        B { signer, ..Default::default() }
    }

    fn vote(signer: &'static str, voted: &'static str, auth: bool) -> B {
        B { signer, voted, auth, ..Default::default() }
    }

    fn checkpoint(signer: &'static str, signers: &'static [&'static str]) -> B {
        B { signer, checkpoint: Some(signers), ..Default::default() }
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Failure {
        Unauthorized,
        RecentlySigned,
    }

    struct Case {
        name: &'static str,
        epoch: u64,
        signers: &'static [&'static str],
        blocks: Vec<B>,
        outcome: Result<&'static [&'static str], Failure>,
    }

    fn key(label: &str) -> SigningKey {
        SigningKey::from_bytes(&keccak256(format!("p2pe clique test key {label}"))).expect("valid key")
    }

    fn address(label: &str) -> Address {
        if label.is_empty() {
            Address::ZERO
        } else {
            key(label).address()
        }
    }

    fn cases() -> Vec<Case> {
        let ok = |s: &'static [&'static str]| Ok(s);
        let case = |name, signers, blocks, outcome| Case { name, epoch: 30_000, signers, blocks, outcome };
        vec![
            case("single signer, no votes cast", &["A"], vec![b("A")], ok(&["A"])),
            case(
                "single signer, voting to add two others (only accept first, second needs 2 votes)",
                &["A"],
                vec![vote("A", "B", true), b("B"), vote("A", "C", true)],
                ok(&["A", "B"]),
            ),
            case(
                "two signers, voting to add three others (only accept first two, third needs 3 votes)",
                &["A", "B"],
                vec![
                    vote("A", "C", true),
                    vote("B", "C", true),
                    vote("A", "D", true),
                    vote("B", "D", true),
                    b("C"),
                    vote("A", "E", true),
                    vote("B", "E", true),
                ],
                ok(&["A", "B", "C", "D"]),
            ),
            case(
                "single signer, dropping itself",
                &["A"],
                vec![vote("A", "A", false)],
                ok(&[]),
            ),
            case(
                "two signers, mutual consent needed to drop either (not fulfilled)",
                &["A", "B"],
                vec![vote("A", "B", false)],
                ok(&["A", "B"]),
            ),
            case(
                "two signers, mutual consent needed to drop either (fulfilled)",
                &["A", "B"],
                vec![vote("A", "B", false), vote("B", "B", false)],
                ok(&["A"]),
            ),
            case(
                "three signers, two of them deciding to drop the third",
                &["A", "B", "C"],
                vec![vote("A", "C", false), vote("B", "C", false)],
                ok(&["A", "B"]),
            ),
            case(
                "four signers, consensus of two not being enough to drop anyone",
                &["A", "B", "C", "D"],
                vec![vote("A", "C", false), vote("B", "C", false)],
                ok(&["A", "B", "C", "D"]),
            ),
            case(
                "four signers, consensus of three already being enough to drop someone",
                &["A", "B", "C", "D"],
                vec![vote("A", "D", false), vote("B", "D", false), vote("C", "D", false)],
                ok(&["A", "B", "C"]),
            ),
            case(
                "authorizations are counted once per signer per target",
                &["A", "B"],
                vec![vote("A", "C", true), b("B"), vote("A", "C", true), b("B"), vote("A", "C", true)],
                ok(&["A", "B"]),
            ),
            case(
                "authorizing multiple accounts concurrently is permitted",
                &["A", "B"],
                vec![
                    vote("A", "C", true),
                    b("B"),
                    vote("A", "D", true),
                    b("B"),
                    b("A"),
                    vote("B", "D", true),
                    b("A"),
                    vote("B", "C", true),
                ],
                ok(&["A", "B", "C", "D"]),
            ),
            case(
                "deauthorizations are counted once per signer per target",
                &["A", "B"],
                vec![vote("A", "B", false), b("B"), vote("A", "B", false), b("B"), vote("A", "B", false)],
                ok(&["A", "B"]),
            ),
            case(
                "deauthorizing multiple accounts concurrently is permitted",
                &["A", "B", "C", "D"],
                vec![
                    vote("A", "C", false),
                    b("B"),
                    b("C"),
                    vote("A", "D", false),
                    b("B"),
                    b("C"),
                    b("A"),
                    vote("B", "D", false),
                    vote("C", "D", false),
                    b("A"),
                    vote("B", "C", false),
                ],
                ok(&["A", "B"]),
            ),
            case(
                "votes from deauthorized signers are discarded immediately (deauth votes)",
                &["A", "B", "C"],
                vec![vote("C", "B", false), vote("A", "C", false), vote("B", "C", false), vote("A", "B", false)],
                ok(&["A", "B"]),
            ),
            case(
                "votes from deauthorized signers are discarded immediately (auth votes)",
                &["A", "B", "C"],
                vec![vote("C", "D", true), vote("A", "C", false), vote("B", "C", false), vote("A", "D", true)],
                ok(&["A", "B"]),
            ),
            case(
                "cascading changes are not allowed, only the account being voted on may change",
                &["A", "B", "C", "D"],
                vec![
                    vote("A", "C", false),
                    b("B"),
                    b("C"),
                    vote("A", "D", false),
                    vote("B", "C", false),
                    b("C"),
                    b("A"),
                    vote("B", "D", false),
                    vote("C", "D", false),
                ],
                ok(&["A", "B", "C"]),
            ),
            case(
                "changes reaching consensus out of bounds (via a deauth) execute on touch",
                &["A", "B", "C", "D"],
                vec![
                    vote("A", "C", false),
                    b("B"),
                    b("C"),
                    vote("A", "D", false),
                    vote("B", "C", false),
                    b("C"),
                    b("A"),
                    vote("B", "D", false),
                    vote("C", "D", false),
                    b("A"),
                    vote("C", "C", true),
                ],
                ok(&["A", "B"]),
            ),
            case(
                "changes reaching consensus out of bounds (via a deauth) may go out of consensus on first touch",
                &["A", "B", "C", "D"],
                vec![
                    vote("A", "C", false),
                    b("B"),
                    b("C"),
                    vote("A", "D", false),
                    vote("B", "C", false),
                    b("C"),
                    b("A"),
                    vote("B", "D", false),
                    vote("C", "D", false),
                    b("A"),
                    vote("B", "C", true),
                ],
                ok(&["A", "B", "C"]),
            ),
            case(
                "pending votes don't survive authorization status changes",
                &["A", "B", "C", "D", "E"],
                vec![
                    vote("A", "F", true), // Authorize F, 3 votes needed
                    vote("B", "F", true),
                    vote("C", "F", true),
                    vote("D", "F", false), // Deauthorize F, 4 votes needed (leave A's vote)
                    vote("E", "F", false),
                    vote("B", "F", false),
                    vote("C", "F", false),
                    vote("D", "F", true), // Almost authorize F, 2/3 votes needed
                    vote("E", "F", true),
                    vote("B", "A", false), // Deauthorize A, 3 votes needed
                    vote("C", "A", false),
                    vote("D", "A", false),
                    vote("B", "F", true), // Finish authorizing F, 3/3 votes needed
                ],
                ok(&["B", "C", "D", "E", "F"]),
            ),
            Case {
                name: "epoch transitions reset all votes to allow chain checkpointing",
                epoch: 3,
                signers: &["A", "B"],
                blocks: vec![vote("A", "C", true), b("B"), checkpoint("A", &["A", "B"]), vote("B", "C", true)],
                outcome: ok(&["A", "B"]),
            },
            case(
                "an unauthorized signer should not be able to sign blocks",
                &["A"],
                vec![b("B")],
                Err(Failure::Unauthorized),
            ),
            case(
                "an authorized signer that signed recently should not be able to sign again",
                &["A", "B"],
                vec![b("A"), b("A")],
                Err(Failure::RecentlySigned),
            ),
            Case {
                name: "recent signatures should not reset on checkpoint blocks imported in a batch",
                epoch: 3,
                signers: &["A", "B", "C"],
                blocks: vec![b("A"), b("B"), checkpoint("A", &["A", "B", "C"]), b("A")],
                outcome: Err(Failure::RecentlySigned),
            },
            // geth's extra case (go-ethereum #17593, the Rinkeby split): the same across a new
            // import batch.
            Case {
                name: "recent signatures should not reset on checkpoint blocks imported in a new batch",
                epoch: 3,
                signers: &["A", "B", "C"],
                blocks: vec![
                    b("A"),
                    b("B"),
                    checkpoint("A", &["A", "B", "C"]),
                    B { new_batch: true, ..b("A") },
                ],
                outcome: Err(Failure::RecentlySigned),
            },
        ]
    }

    fn header(number: u64, parent: B256, blk: &B) -> Header {
        let mut extra = vec![0u8; EXTRA_VANITY];
        if let Some(list) = blk.checkpoint {
            let mut addrs: Vec<Address> = list.iter().map(|l| address(l)).collect();
            addrs.sort();
            for a in addrs {
                extra.extend_from_slice(a.as_slice());
            }
        }
        extra.extend_from_slice(&[0u8; EXTRA_SEAL]);
        let mut h = Header {
            parent_hash: parent,
            number,
            timestamp: number,
            beneficiary: address(blk.voted),
            nonce: if blk.auth { NONCE_AUTH } else { B64::ZERO },
            difficulty: super::super::DIFF_IN_TURN,
            extra_data: extra.into(),
            ..Default::default()
        };
        sign_header(&mut h, &key(blk.signer)).expect("sign");
        h
    }

    fn run(case: &Case) -> Result<Snapshot, (usize, CliqueError)> {
        let genesis = B256::repeat_byte(0x99);
        let mut snap = Snapshot::new(case.epoch, 0, genesis, case.signers.iter().map(|s| address(s)));
        let mut parent = genesis;
        for (i, blk) in case.blocks.iter().enumerate() {
            if blk.new_batch {
                let stored = serde_json::to_string(&snap).expect("serialize");
                snap = serde_json::from_str(&stored).expect("deserialize");
            }
            let h = header(i as u64 + 1, parent, blk);
            let hash = h.hash_slow();
            let signer = snap.apply(&h, hash).map_err(|e| (i, e))?;
            assert_eq!(signer, address(blk.signer), "{}: block {} signer", case.name, i + 1);
            parent = hash;
        }
        Ok(snap)
    }

    #[test]
    fn eip225_voting_table() {
        let cases = cases();
        assert_eq!(cases.len(), 24, "EIP-225's 23 cases and geth's batch case");
        for case in &cases {
            let outcome = run(case);
            match (&case.outcome, outcome) {
                (Ok(expected), Ok(snap)) => {
                    let mut want: Vec<Address> = expected.iter().map(|l| address(l)).collect();
                    want.sort();
                    assert_eq!(snap.signers_sorted(), want, "{}", case.name);
                    assert_eq!(snap.number, case.blocks.len() as u64, "{}", case.name);
                }
                (Err(want), Err((i, e))) => {
                    let got = match e {
                        CliqueError::Unauthorized(_) => Failure::Unauthorized,
                        CliqueError::RecentlySigned(_) => Failure::RecentlySigned,
                        other => panic!("{}: unexpected error at block {}: {other}", case.name, i + 1),
                    };
                    assert_eq!(got, *want, "{}", case.name);
                    assert_eq!(i, case.blocks.len() - 1, "{}: only the last block fails", case.name);
                }
                (want, got) => panic!("{}: expected {want:?}, got {:?}", case.name, got.map(|s| s.signers)),
            }
        }
    }

    /// The tally and votes along the way, checked on one case in detail.
    #[test]
    fn tally_and_votes_follow_each_header() {
        let case = &cases()[2];
        let genesis = B256::repeat_byte(0x99);
        let mut snap = Snapshot::new(case.epoch, 0, genesis, case.signers.iter().map(|s| address(s)));
        let h1 = header(1, genesis, &case.blocks[0]);
        snap.apply(&h1, h1.hash_slow()).unwrap();
        assert_eq!(snap.tally.get(&address("C")), Some(&Tally { authorize: true, votes: 1 }));
        assert_eq!(
            snap.votes,
            vec![Vote { signer: address("A"), block: 1, address: address("C"), authorize: true }]
        );
        assert_eq!(snap.recents.get(&1), Some(&address("A")));
        let h2 = header(2, h1.hash_slow(), &case.blocks[1]);
        snap.apply(&h2, h2.hash_slow()).unwrap();
        // Passed: C is a signer, its votes and tally are gone.
        assert!(snap.signers.contains(&address("C")));
        assert!(snap.tally.is_empty() && snap.votes.is_empty());
        // A vote nonce other than the two magic values is refused.
        let mut bad = header(3, h2.hash_slow(), &vote("A", "D", true));
        bad.nonce = B64::new([1; 8]);
        sign_header(&mut bad, &key("A")).unwrap();
        assert_eq!(snap.clone().apply(&bad, bad.hash_slow()), Err(CliqueError::InvalidVote));
    }
}
