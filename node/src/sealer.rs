//! The block-production loop of a signer.
//!
//! With a period P, the in-turn signer seals at parent time + P; an out-of-turn signer waits a
//! further P and a random "wiggle" of up to (N/2 + 1) × 500 ms ([`out_of_turn_delay_ms`]) so
//! the in-turn block usually wins, and abandons its block if the in-turn one arrives meanwhile. With
//! P = 0, blocks are sealed as soon as transactions wait (never empty ones).
//!
//! Each block carries one vote picked at random from the node's [`Proposals`] that would still
//! change the signer set (none on checkpoint blocks), as geth's Clique sealer did.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::blockchain::{unix_now, Blockchain};
use crate::consensus::clique::Proposals;
use crate::crypto::SigningKey;

/// Runs until `shutdown` fires.
pub async fn run(
    chain: Arc<Blockchain>,
    key: SigningKey,
    proposals: Proposals,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let period = chain.spec().clique.period;
    let signer = key.address();
    let mut new_blocks = chain.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let head = chain.head();
        let number = head.header.number + 1;
        if !head.snapshot.signers.contains(&signer) || head.snapshot.signed_recently(number, &signer) {
            // Not our turn to seal at all: wait for the next block from someone else.
            tokio::select! {
                _ = new_blocks.recv() => continue,
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(period.max(1))) => continue,
            }
        }
        if period == 0 {
            if chain.pool().is_empty() {
                tokio::select! {
                    _ = chain.pool().added.notified() => {},
                    _ = new_blocks.recv() => continue,
                    _ = shutdown.changed() => return,
                }
            }
        } else {
            let target_ms = (head.header.timestamp + period) * 1000;
            let mut delay_ms = target_ms.saturating_sub(unix_now_ms());
            if !head.snapshot.in_turn(number, &signer) {
                delay_ms +=
                    out_of_turn_delay_ms(period, head.snapshot.signers.len() as u64, &mut rand::thread_rng());
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {},
                _ = new_blocks.recv() => continue,
                _ = shutdown.changed() => return,
            }
            if chain.head().hash != head.hash {
                continue;
            }
        }
        let c = chain.clone();
        let k = key.clone();
        let p = proposals.clone();
        let parent = head.hash;
        let result = tokio::task::spawn_blocking(move || {
            let vote = p.pick(&head.snapshot, head.header.number + 1, &mut rand::thread_rng());
            c.seal_on(Some(parent), &k, unix_now(), vote)
        })
        .await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "sealing failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "sealing task failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        // Drain notifications for blocks we just produced.
        while new_blocks.try_recv().is_ok() {}
    }
}

/// How much later than the in-turn signer an out-of-turn signer of `signers` starts to seal, in
/// ms: one period, plus geth's random wiggle of up to (N/2 + 1) × 500 ms.
///
/// geth has no fixed part: its out-of-turn signers start anywhere from 0 ms late, so under load,
/// when the in-turn block takes longer to build and to reach them than their wiggle (its build
/// alone may take [`crate::blockchain::build_budget`], 400 ms at 1 s), they sealed competing blocks
/// and the network reorganised (seen under a 20,000-transaction burst; half a period still let an
/// in-turn block arrive while an out-of-turn one was being written). A period covers the build
/// budget and the in-turn block's root, commit and gossip; an out-of-turn signer that is still
/// building when the block arrives abandons its own (see [`Blockchain::seal_on`]). The cost is
/// that a block whose in-turn signer is down comes a period later.
pub fn out_of_turn_delay_ms(period_secs: u64, signers: u64, rng: &mut impl Rng) -> u64 {
    period_secs * 1000 + rng.gen_range(0..=(signers / 2 + 1) * 500)
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_turn_signers_start_a_period_late_plus_geths_wiggle() {
        let mut rng = rand::thread_rng();
        for (period, signers) in [(1, 3), (1, 1), (5, 7)] {
            let wiggle = (signers / 2 + 1) * 500;
            let draws: Vec<u64> =
                (0..2_000).map(|_| out_of_turn_delay_ms(period, signers, &mut rng)).collect();
            let (min, max) = (*draws.iter().min().unwrap(), *draws.iter().max().unwrap());
            assert!(min >= period * 1000, "never before a period: {min}");
            assert!(max <= period * 1000 + wiggle, "never after the wiggle: {max}");
            assert!(max - min > wiggle / 2, "the wiggle is random: {min}..{max}");
        }
    }
}
