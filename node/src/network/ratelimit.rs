//! Per-peer rate limits on what a peer may ask of us (token buckets, in requests and in bytes).
//!
//! A request over the limit is refused with an answer that names the rule, and costs the peer
//! nothing more: an honest peer that asks a little too fast only waits. A peer whose refused
//! requests within one second outnumber what the limit allows in a second (it sends more than
//! twice its allowance) commits [`Offence::RequestFlood`](super::peers::Offence::RequestFlood),
//! at most once per second.
//!
//! The byte bucket is charged after a request is served (the size of an answer is only known
//! then) and may go into debt: the peer is refused until the debt is repaid.
//!
//! Limits are per peer id. A peer with many identities gets one allowance each, so the total
//! is bounded by the connection limit (`--max-peers`) times the allowance, and by the serving
//! queue, which is shared ([`super::serve::SERVE_QUEUE`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// A rate limit.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Requests allowed per second, on average.
    pub requests_per_sec: f64,
    /// Requests allowed at once (the bucket's size).
    pub request_burst: f64,
    /// Bytes served per second, on average.
    pub bytes_per_sec: f64,
    /// Bytes served at once.
    pub byte_burst: f64,
}

/// Sync requests (status and block ranges). Our own sync sends one request at a time and waits
/// for its answer and the import, so an honest peer stays far below 20 requests a second; a full
/// 16 MiB answer per second is as fast as a chain of the largest blocks can be imported here.
pub const SYNC_LIMIT: RateLimit = RateLimit {
    requests_per_sec: 20.0,
    request_burst: 40.0,
    bytes_per_sec: 16.0 * 1024.0 * 1024.0,
    byte_burst: 48.0 * 1024.0 * 1024.0,
};

/// Pool announcements (batches of up to 512 KiB of transactions): a new peer may send its whole
/// pool at once (the pool holds at most 128 MiB, 256 batches), then a batch every few seconds.
pub const POOL_LIMIT: RateLimit = RateLimit {
    requests_per_sec: 4.0,
    request_burst: 300.0,
    bytes_per_sec: 2.0 * 1024.0 * 1024.0,
    byte_burst: 160.0 * 1024.0 * 1024.0,
};

/// What a status request costs, in requests: it reads only the head, so our own sync, which asks
/// a peer for its status at every hint that the peer may be ahead (a burst of gossiped blocks),
/// never comes near the limit with it.
pub const STATUS_COST: f64 = 0.1;

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve it.
    Serve,
    /// Refuse it (over the limit).
    Refuse,
    /// Refuse it, and the peer floods: punish it.
    RefuseGross,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    requests: f64,
    bytes: f64,
    at: Instant,
    window: Instant,
    refused: u32,
    flagged: bool,
}

/// Token buckets per peer.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    peers: HashMap<PeerId, Bucket>,
}

impl RateLimiter {
    /// A limiter that gives every peer `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, peers: HashMap::new() }
    }

    fn bucket(&mut self, peer: PeerId, now: Instant) -> &mut Bucket {
        let l = self.limit;
        let b = self.peers.entry(peer).or_insert(Bucket {
            requests: l.request_burst,
            bytes: l.byte_burst,
            at: now,
            window: now,
            refused: 0,
            flagged: false,
        });
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.requests = (b.requests + dt * l.requests_per_sec).min(l.request_burst);
        b.bytes = (b.bytes + dt * l.bytes_per_sec).min(l.byte_burst);
        b.at = now;
        if now.saturating_duration_since(b.window) >= Duration::from_secs(1) {
            b.window = now;
            b.refused = 0;
            b.flagged = false;
        }
        b
    }

    /// Takes a request of `cost` (1 for a full request, less for a cheap one) from `peer`'s
    /// allowance at `now`.
    pub fn check(&mut self, peer: PeerId, cost: f64, now: Instant) -> Decision {
        let gross = self.limit.requests_per_sec.ceil() as u32;
        let b = self.bucket(peer, now);
        // (The epsilon forgives the rounding of many fractional costs.)
        if b.requests + 1e-9 >= cost && b.bytes > 0.0 {
            b.requests -= cost;
            return Decision::Serve;
        }
        b.refused += 1;
        if b.refused > gross && !b.flagged {
            b.flagged = true;
            return Decision::RefuseGross;
        }
        Decision::Refuse
    }

    /// Charges `bytes` served to `peer` at `now` (the bucket may go into debt, down to minus its
    /// size).
    pub fn charge(&mut self, peer: PeerId, bytes: usize, now: Instant) {
        let floor = -self.limit.byte_burst;
        let b = self.bucket(peer, now);
        b.bytes = (b.bytes - bytes as f64).max(floor);
    }

    /// Forgets peers whose buckets are full again (nothing to remember about them).
    pub fn forget_idle(&mut self, now: Instant) {
        let l = self.limit;
        self.peers.retain(|_, b| {
            let dt = now.saturating_duration_since(b.at).as_secs_f64();
            b.requests + dt * l.requests_per_sec < l.request_burst
                || b.bytes + dt * l.bytes_per_sec < l.byte_burst
        });
    }

    /// Number of peers remembered.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is remembered.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit =
        RateLimit { requests_per_sec: 10.0, request_burst: 20.0, bytes_per_sec: 1000.0, byte_burst: 3000.0 };

    #[test]
    fn requests_under_at_and_over_the_burst() {
        let mut l = RateLimiter::new(LIMIT);
        let (peer, t0) = (PeerId::random(), Instant::now());
        // Just under and at the burst: served.
        for _ in 0..20 {
            assert_eq!(l.check(peer, 1.0, t0), Decision::Serve);
        }
        // Over: refused, without an offence.
        assert_eq!(l.check(peer, 1.0, t0), Decision::Refuse);
        // A tenth of a second later one more request is allowed (10 per second).
        assert_eq!(l.check(peer, 1.0, t0 + Duration::from_millis(100)), Decision::Serve);
        assert_eq!(l.check(peer, 1.0, t0 + Duration::from_millis(100)), Decision::Refuse);
        // Another peer has its own allowance.
        assert_eq!(l.check(PeerId::random(), 1.0, t0), Decision::Serve);
    }

    #[test]
    fn cheap_requests_cost_a_fraction() {
        let mut l = RateLimiter::new(LIMIT);
        let (peer, t0) = (PeerId::random(), Instant::now());
        // 200 status requests at a tenth each: the burst of 20, just used up.
        for _ in 0..200 {
            assert_eq!(l.check(peer, STATUS_COST, t0), Decision::Serve);
        }
        assert_eq!(l.check(peer, STATUS_COST, t0), Decision::Refuse);
    }

    #[test]
    fn a_steady_peer_at_the_rate_is_always_served() {
        let mut l = RateLimiter::new(LIMIT);
        let (peer, t0) = (PeerId::random(), Instant::now());
        for i in 0..1000u32 {
            assert_eq!(l.check(peer, 1.0, t0 + Duration::from_millis(100) * i), Decision::Serve);
        }
    }

    #[test]
    fn only_a_gross_excess_is_an_offence_once_per_second() {
        let mut l = RateLimiter::new(LIMIT);
        let (peer, t0) = (PeerId::random(), Instant::now());
        for _ in 0..20 {
            l.check(peer, 1.0, t0);
        }
        // Up to 10 refusals in the second (twice the rate in all): no offence.
        for _ in 0..10 {
            assert_eq!(l.check(peer, 1.0, t0), Decision::Refuse);
        }
        // The 11th is gross, once; the next ones are refused plainly.
        assert_eq!(l.check(peer, 1.0, t0), Decision::RefuseGross);
        assert_eq!(l.check(peer, 1.0, t0), Decision::Refuse);
        // A new second, a new count.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..10 {
            l.check(peer, 1.0, t1);
        }
        let refused: Vec<Decision> = (0..12).map(|_| l.check(peer, 1.0, t1)).collect();
        assert_eq!(refused.iter().filter(|d| **d == Decision::RefuseGross).count(), 1);
    }

    #[test]
    fn bytes_served_are_charged_and_debt_refuses() {
        let mut l = RateLimiter::new(LIMIT);
        let (peer, t0) = (PeerId::random(), Instant::now());
        assert_eq!(l.check(peer, 1.0, t0), Decision::Serve);
        // Just under the byte burst: still served.
        l.charge(peer, 2999, t0);
        assert_eq!(l.check(peer, 1.0, t0), Decision::Serve);
        // At it: the bucket is empty, refused.
        l.charge(peer, 1, t0);
        assert_eq!(l.check(peer, 1.0, t0), Decision::Refuse);
        // Over it: in debt until repaid (1000 bytes per second).
        l.charge(peer, 1500, t0);
        assert_eq!(l.check(peer, 1.0, t0 + Duration::from_millis(1500)), Decision::Refuse);
        assert_eq!(l.check(peer, 1.0, t0 + Duration::from_millis(1501)), Decision::Serve);
    }

    #[test]
    fn idle_peers_are_forgotten() {
        let mut l = RateLimiter::new(LIMIT);
        let (peer, t0) = (PeerId::random(), Instant::now());
        l.check(peer, 1.0, t0);
        l.forget_idle(t0);
        assert_eq!(l.len(), 1);
        l.forget_idle(t0 + Duration::from_secs(1));
        assert!(l.is_empty());
    }
}
