//! What `safe` and `finalized` mean on a Clique chain.
//!
//! Clique has no finality gadget: a heavier branch can replace any block. What it does have is
//! the recent-signer rule: of any ⌊N/2⌋ + 1 consecutive blocks, no two are sealed by the same
//! signer (N authorised signers). So a block with ⌊N/2⌋ blocks on top of it has been built on by a
//! majority of the signers, its own sealer included; replacing it would need that majority to
//! seal a competing, heavier branch. The node names such blocks by confirmation depth:
//!
//! - `safe`: the newest block with ⌊N/2⌋ blocks on top (a majority of distinct signers sealed it
//!   or built on it);
//! - `finalized`: the newest block with 2·⌊N/2⌋ blocks on top (two such majorities in a row, so
//!   at least one signer of every majority built on it twice).
//!
//! With one signer (the dev chain) no competing branch can exist, and both are the head.

/// How many blocks must stand on top of a block for the `safe` tag, with `signers` signers.
pub fn safe_depth(signers: usize) -> u64 {
    (signers / 2) as u64
}

/// How many blocks must stand on top of a block for the `finalized` tag, with `signers` signers.
pub fn finalized_depth(signers: usize) -> u64 {
    2 * safe_depth(signers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths_grow_with_the_signer_majority() {
        assert_eq!((safe_depth(1), finalized_depth(1)), (0, 0), "one signer: no competing branch");
        assert_eq!((safe_depth(2), finalized_depth(2)), (1, 2));
        assert_eq!((safe_depth(3), finalized_depth(3)), (1, 2));
        assert_eq!((safe_depth(4), finalized_depth(4)), (2, 4));
        assert_eq!((safe_depth(7), finalized_depth(7)), (3, 6));
    }
}
