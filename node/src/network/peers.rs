//! Peer reputation: misbehaving peers lose score and are disconnected and banned.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Score below which a peer is banned.
pub const BAN_THRESHOLD: i32 = -100;
/// How long a ban lasts.
pub const BAN_DURATION: Duration = Duration::from_secs(600);

/// What a peer did wrong.
#[derive(Debug, Clone, Copy)]
pub enum Offence {
    /// A block that broke a consensus or execution rule.
    InvalidBlock,
    /// Bytes that do not decode.
    Garbage,
    /// An invalid transaction.
    InvalidTx,
    /// A peer of another chain.
    WrongChain,
    /// A sync answer whose headers do not link up (numbers or parent hashes), do not decode, or
    /// break a Clique rule, or a block that does not match its verified header. An honest node
    /// never serves one (it serves what it verified), so one is enough for a ban.
    BadBranch,
    /// A status the peer's own answers contradict: its headers end below the head it claimed, or
    /// reach it with another hash or total difficulty, or the total difficulty claimed is more
    /// than the blocks claimed could carry. (An honest peer may reorganise between its status and
    /// our requests, so it takes two.)
    FalseHead,
    /// A better chain that does not meet ours within the reorg window, so none of it can be
    /// verified (a liar's, or an honest peer's on a fork too deep to take; it takes two).
    Unverifiable,
}

impl Offence {
    fn penalty(self) -> i32 {
        match self {
            Offence::InvalidBlock => 60,
            Offence::Garbage => 40,
            Offence::InvalidTx => 5,
            Offence::WrongChain => 200,
            Offence::BadBranch => 100,
            Offence::FalseHead => 50,
            Offence::Unverifiable => 50,
        }
    }
}

/// Scores and bans.
#[derive(Debug, Default)]
pub struct PeerBook {
    scores: HashMap<PeerId, i32>,
    banned: HashMap<PeerId, Instant>,
    blocked: HashSet<PeerId>,
    /// If set, only these peers may connect.
    pub allow: Option<HashSet<PeerId>>,
}

impl PeerBook {
    /// A book with an optional allowlist.
    pub fn new(allow: Option<HashSet<PeerId>>) -> Self {
        Self { allow, ..Default::default() }
    }

    /// Records an offence; returns `true` if the peer must now be banned.
    pub fn punish(&mut self, peer: PeerId, offence: Offence) -> bool {
        let score = self.scores.entry(peer).or_insert(0);
        *score -= offence.penalty();
        tracing::warn!(%peer, ?offence, score = *score, "peer misbehaved");
        if *score <= BAN_THRESHOLD {
            self.banned.insert(peer, Instant::now());
            return true;
        }
        false
    }

    /// Refuses a peer until [`PeerBook::unblock`] (admin; e.g. to partition a test network).
    pub fn block(&mut self, peer: PeerId) {
        self.blocked.insert(peer);
    }

    /// Accepts an admin-blocked peer again.
    pub fn unblock(&mut self, peer: &PeerId) {
        self.blocked.remove(peer);
    }

    /// A peer's score (0 when unknown).
    pub fn score(&self, peer: &PeerId) -> i32 {
        self.scores.get(peer).copied().unwrap_or(0)
    }

    /// Whether a peer may stay connected.
    pub fn admits(&mut self, peer: &PeerId) -> bool {
        if self.blocked.contains(peer) {
            return false;
        }
        if let Some(allow) = &self.allow {
            if !allow.contains(peer) {
                return false;
            }
        }
        match self.banned.get(peer) {
            Some(t) if t.elapsed() < BAN_DURATION => false,
            Some(_) => {
                self.banned.remove(peer);
                self.scores.remove(peer);
                true
            }
            None => true,
        }
    }
}
