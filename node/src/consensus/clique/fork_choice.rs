//! Fork choice between two chain tips with equal standing in Clique: EIP-3436.
//!
//! 1. the higher total difficulty wins;
//! 2. on a tie, the lower block number (the shorter chain) wins;
//! 3. on a tie, the tip whose signer was in turn least recently wins;
//! 4. on a tie, EIP-3436 picks the lower block hash; this node instead keeps the tip it saw
//!    first ([`prefers`] is false on a full tie).
//!
//! Rule 4 only decides between two blocks at the same height signed by the same signer (the
//! signer equivocated, or someone malleated a seal, which `seal.rs` refuses). Switching to the
//! lower hash there lets whoever can produce such a twin make every node drop the block it has
//! and re-execute another, as often as they like; keeping the first one costs nothing, and the
//! next block, which extends one of them with more difficulty, settles it for everyone.

use std::cmp::Ordering;

use alloy_primitives::{Address, B256, U256};

/// What fork choice needs to know about a chain tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    /// Total difficulty of the chain ending at this block.
    pub total_difficulty: U256,
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// The block's signer.
    pub signer: Address,
}

/// The most recent block number `<= number` at which `signer` was in turn, given the sorted
/// signer list; `None` if it is not a signer or was never in turn yet.
pub fn last_in_turn(number: u64, signer: &Address, signers: &[Address]) -> Option<u64> {
    let n = signers.len() as u64;
    let idx = signers.iter().position(|s| s == signer)? as u64;
    if n == 0 {
        return None;
    }
    let base = number - number % n;
    let m = base + idx;
    if m <= number {
        Some(m)
    } else {
        base.checked_sub(n).map(|b| b + idx)
    }
}

/// Compares two tips under EIP-3436's rules 1–3; `Ordering::Greater` means `a` is preferred,
/// `Ordering::Equal` is a full tie. `signers` is the signer list (sorted) that applies at the tips.
pub fn compare(a: &Tip, b: &Tip, signers: &[Address]) -> Ordering {
    a.total_difficulty.cmp(&b.total_difficulty).then_with(|| b.number.cmp(&a.number)).then_with(|| {
        // Least recently in turn is preferred: a smaller "last in turn" wins.
        let la = last_in_turn(a.number, &a.signer, signers);
        let lb = last_in_turn(b.number, &b.signer, signers);
        lb.cmp(&la)
    })
}

/// Whether `candidate` should replace `current` as the head: strictly better under
/// [`compare`]. On a full tie the current head, the tip seen first, stays.
pub fn prefers(candidate: &Tip, current: &Tip, signers: &[Address]) -> bool {
    candidate.hash != current.hash && compare(candidate, current, signers) == Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tip(td: u64, number: u64, hash: u8, signer: u8) -> Tip {
        Tip {
            total_difficulty: U256::from(td),
            number,
            hash: B256::repeat_byte(hash),
            signer: Address::repeat_byte(signer),
        }
    }

    #[test]
    fn eip3436_rules_in_order() {
        let signers = [Address::repeat_byte(1), Address::repeat_byte(2), Address::repeat_byte(3)];
        // 1. total difficulty
        assert_eq!(compare(&tip(10, 9, 9, 1), &tip(9, 5, 1, 2), &signers), Ordering::Greater);
        // 2. shorter chain on equal difficulty
        assert_eq!(compare(&tip(10, 5, 9, 1), &tip(10, 6, 1, 2), &signers), Ordering::Greater);
        // 3. least recently in turn: at block 7 with 3 signers, signer 1 (index 0) was in turn
        //    at 6, signer 2 (index 1) at 7: signer 1's block wins.
        assert_eq!(last_in_turn(7, &signers[0], &signers), Some(6));
        assert_eq!(last_in_turn(7, &signers[1], &signers), Some(7));
        assert_eq!(last_in_turn(7, &signers[2], &signers), Some(5));
        assert_eq!(compare(&tip(10, 7, 9, 1), &tip(10, 7, 1, 2), &signers), Ordering::Greater);
        // 4. a full tie (same signer, same height): the tip seen first stays, whatever the hashes.
        assert_eq!(compare(&tip(10, 7, 1, 1), &tip(10, 7, 2, 1), &signers), Ordering::Equal);
        assert!(!prefers(&tip(10, 7, 1, 1), &tip(10, 7, 2, 1), &signers));
        assert!(!prefers(&tip(10, 7, 2, 1), &tip(10, 7, 1, 1), &signers));
        assert!(prefers(&tip(11, 7, 2, 1), &tip(10, 7, 1, 1), &signers));
        assert_eq!(last_in_turn(1, &signers[2], &signers), None);
    }
}
