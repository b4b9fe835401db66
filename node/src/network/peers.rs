//! Peer reputation: misbehaving peers lose score and are disconnected and banned; scores decay
//! back toward zero, so an old minor offence never adds up to a ban.
//!
//! The score is held as a real number and decays exponentially with a half-life of
//! [`SCORE_HALF_LIFE`] (as gossipsub's peer scores and Lighthouse's decay toward zero): a peer
//! that once relayed an invalid transaction (−5) is back above −1 after about 25 minutes, while a
//! burst of offences (three invalid blocks, −180) bans at once. Bans are enforced by the swarm's
//! block list (`allow_block_list`), which refuses the peer's connections before any protocol runs.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Score at or below which a peer is banned.
pub const BAN_THRESHOLD: i32 = -100;
/// How long a ban lasts.
pub const BAN_DURATION: Duration = Duration::from_secs(600);
/// Time for a score to decay halfway back to zero.
pub const SCORE_HALF_LIFE: Duration = Duration::from_secs(600);

/// What a peer did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// A block that broke a consensus or execution rule.
    InvalidBlock,
    /// Bytes that do not decode.
    Garbage,
    /// An invalid transaction.
    InvalidTx,
    /// A peer of another chain.
    WrongChain,
    /// Requests far beyond the per-peer rate limit (see [`super::ratelimit`]); requests merely
    /// over the limit are refused without an offence.
    RequestFlood,
    /// A sync answer whose headers do not link up (numbers or parent hashes), do not decode, or
    /// break a Clique rule, or a block that does not match its verified header. An honest node
    /// never serves one (it serves what it verified), so one is enough for a ban.
    BadBranch,
    /// A status the peer's own answers contradict: its headers end below the head it claimed, or
    /// reach it with another hash or total difficulty, or the total difficulty claimed is more
    /// than the blocks claimed could carry. (An honest peer may reorganise between its status and
    /// our requests, so it takes two, within about 3 minutes of each other as scores decay.)
    FalseHead,
    /// A better chain that does not meet ours within the reorg window, so none of it can be
    /// verified (a liar's, or an honest peer's on a fork too deep to take; it takes two, as for
    /// [`Offence::FalseHead`]).
    Unverifiable,
}

impl Offence {
    /// Points the offence costs.
    pub fn penalty(self) -> i32 {
        match self {
            Offence::InvalidBlock => 60,
            Offence::Garbage => 40,
            Offence::InvalidTx => 5,
            Offence::WrongChain => 200,
            Offence::RequestFlood => 25,
            // Just over half the threshold: two ban while the first has not decayed below 45
            // (within log2(55/45) half-lives, about 170 s); exactly half would never ban twice
            // once any time passed between them.
            Offence::BadBranch => 100,
            Offence::FalseHead => 55,
            Offence::Unverifiable => 55,
        }
    }
}

/// A score and when it was last brought up to date.
#[derive(Debug, Clone, Copy)]
struct Score {
    value: f64,
    at: Instant,
}

impl Score {
    fn decayed(self, now: Instant) -> f64 {
        let halves = now.saturating_duration_since(self.at).as_secs_f64() / SCORE_HALF_LIFE.as_secs_f64();
        self.value * 0.5f64.powf(halves)
    }
}

/// Scores and bans.
#[derive(Debug, Default)]
pub struct PeerBook {
    scores: HashMap<PeerId, Score>,
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
        self.punish_at(peer, offence, Instant::now())
    }

    /// [`PeerBook::punish`] at time `now`.
    pub fn punish_at(&mut self, peer: PeerId, offence: Offence, now: Instant) -> bool {
        let old = self.scores.get(&peer).map_or(0.0, |s| s.decayed(now));
        let value = old - f64::from(offence.penalty());
        self.scores.insert(peer, Score { value, at: now });
        tracing::warn!(%peer, ?offence, score = value.round(), "peer misbehaved");
        if value <= f64::from(BAN_THRESHOLD) {
            self.banned.insert(peer, now);
            return true;
        }
        false
    }

    /// Refuses a peer until [`PeerBook::unblock`] (admin; e.g. to partition a test network).
    pub fn block(&mut self, peer: PeerId) {
        self.blocked.insert(peer);
    }

    /// Accepts an admin-blocked peer again; returns whether it may connect now (it may still be
    /// banned).
    pub fn unblock(&mut self, peer: &PeerId) -> bool {
        self.blocked.remove(peer);
        !self.banned.contains_key(peer)
    }

    /// A peer's score now, rounded toward zero (0 when unknown).
    pub fn score(&self, peer: &PeerId) -> i32 {
        self.score_at(peer, Instant::now())
    }

    /// [`PeerBook::score`] at time `now`.
    pub fn score_at(&self, peer: &PeerId, now: Instant) -> i32 {
        self.scores.get(peer).map_or(0, |s| s.decayed(now) as i32)
    }

    /// Ends the bans older than [`BAN_DURATION`] at `now` (the peer starts again from a score of
    /// zero) and forgets scores that have decayed to nothing; returns the peers whose ban ended
    /// and that are not admin-blocked (they may connect again).
    pub fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        let ended: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= BAN_DURATION)
            .map(|(p, _)| *p)
            .collect();
        for p in &ended {
            self.banned.remove(p);
            self.scores.remove(p);
        }
        self.scores.retain(|_, s| s.decayed(now) <= -0.5);
        ended.into_iter().filter(|p| !self.blocked.contains(p)).collect()
    }

    /// Whether a peer may connect and be served: on the allowlist (if any), not admin-blocked and
    /// not banned.
    pub fn admits(&self, peer: &PeerId) -> bool {
        !self.blocked.contains(peer)
            && self.allow.as_ref().is_none_or(|a| a.contains(peer))
            && !self.banned.contains_key(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_decay_so_old_minor_offences_never_add_up_to_a_ban() {
        let mut book = PeerBook::new(None);
        let peer = PeerId::random();
        let t0 = Instant::now();
        // An invalid transaction every 10 minutes, for a day: never banned.
        let mut t = t0;
        for _ in 0..144 {
            assert!(!book.punish_at(peer, Offence::InvalidTx, t));
            t += Duration::from_secs(600);
        }
        // The score settles where decay balances the offences: −5 / (1 − 1/2) = −10.
        assert_eq!(book.score_at(&peer, t - Duration::from_secs(600)), -10);
        // Without decay the same offences would be −720: a ban after 20 of them.
        // Half-life: −60 becomes −30 after one, −15 after two.
        let other = PeerId::random();
        book.punish_at(other, Offence::InvalidBlock, t0);
        assert_eq!(book.score_at(&other, t0), -60);
        assert_eq!(book.score_at(&other, t0 + SCORE_HALF_LIFE), -30);
        assert_eq!(book.score_at(&other, t0 + 2 * SCORE_HALF_LIFE), -15);
        // Decayed scores are forgotten.
        book.expire(t0 + 20 * SCORE_HALF_LIFE);
        assert_eq!(book.score_at(&other, t0 + 20 * SCORE_HALF_LIFE), 0);
        assert!(!book.scores.contains_key(&other));
    }

    #[test]
    fn offences_in_a_burst_ban_just_at_the_threshold() {
        let mut book = PeerBook::new(None);
        let t0 = Instant::now();
        // Just under: −95.
        let under = PeerId::random();
        for _ in 0..3 {
            assert!(!book.punish_at(under, Offence::RequestFlood, t0));
        }
        for _ in 0..4 {
            assert!(!book.punish_at(under, Offence::InvalidTx, t0));
        }
        assert_eq!(book.score_at(&under, t0), -95);
        assert!(book.admits(&under));
        // At: −100 bans.
        let at = PeerId::random();
        for _ in 0..3 {
            assert!(!book.punish_at(at, Offence::RequestFlood, t0));
        }
        for _ in 0..4 {
            assert!(!book.punish_at(at, Offence::InvalidTx, t0));
        }
        assert!(book.punish_at(at, Offence::InvalidTx, t0));
        assert!(!book.admits(&at));
        // Over, and the same offences spread over time do not ban.
        let spread = PeerId::random();
        let mut banned = false;
        for i in 0..8u32 {
            banned |= book.punish_at(spread, Offence::RequestFlood, t0 + SCORE_HALF_LIFE * i);
        }
        assert!(!banned, "eight floods ten minutes apart never reach −100");
        // The ban ends after BAN_DURATION and the peer starts again from zero.
        assert!(book.expire(t0 + BAN_DURATION - Duration::from_secs(1)).is_empty());
        assert_eq!(book.expire(t0 + BAN_DURATION), vec![at]);
        assert!(book.admits(&at));
        assert_eq!(book.score_at(&at, t0 + BAN_DURATION), 0);
    }

    #[test]
    fn two_sync_contradictions_ban_despite_decay_unless_minutes_apart() {
        let mut book = PeerBook::new(None);
        let t0 = Instant::now();
        for offence in [Offence::FalseHead, Offence::Unverifiable] {
            // One is not enough; a second 10 s or 170 s later bans.
            for gap in [10, 170] {
                let peer = PeerId::random();
                assert!(!book.punish_at(peer, offence, t0));
                assert!(book.punish_at(peer, offence, t0 + Duration::from_secs(gap)), "{offence:?} {gap}");
            }
            // 180 s later the first has decayed below 45: no ban.
            let peer = PeerId::random();
            assert!(!book.punish_at(peer, offence, t0));
            assert!(!book.punish_at(peer, offence, t0 + Duration::from_secs(180)), "{offence:?}");
        }
        assert!(book.punish_at(PeerId::random(), Offence::BadBranch, t0));
    }

    #[test]
    fn the_allowlist_and_admin_blocks_are_checked() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut book = PeerBook::new(Some([a].into()));
        assert!(book.admits(&a));
        assert!(!book.admits(&b));
        book.block(a);
        assert!(!book.admits(&a));
        assert!(book.unblock(&a));
        assert!(book.admits(&a));
    }
}
