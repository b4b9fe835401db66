//! The block-production loop of a signer.
//!
//! With a period P, the in-turn signer seals at parent time + P; an out-of-turn signer waits a
//! further random "wiggle" of up to (N/2 + 1) × 500 ms so the in-turn block usually wins. With
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
                let n = head.snapshot.signers.len() as u64;
                delay_ms += rand::thread_rng().gen_range(0..=(n / 2 + 1) * 500);
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
        let result = tokio::task::spawn_blocking(move || {
            let head = c.head();
            let vote = p.pick(&head.snapshot, head.header.number + 1, &mut rand::thread_rng());
            c.seal_next(&k, unix_now(), vote)
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

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
