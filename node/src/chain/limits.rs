//! The sealer's own block limits, within the chain's rules, and the gas limit steering.
//!
//! The chain's rules (every node checks them on every block): a block is at most
//! [`ChainSpec::max_block_bytes`] bytes; its gas limit is at least [`MIN_GAS_LIMIT`] and differs
//! from its parent's by less than parent / [`GAS_LIMIT_BOUND_DIVISOR`]. Within them, a sealer
//! steers the gas limit toward its target one bounded step per block (geth's miner `--miner.gaslimit`)
//! and may build smaller blocks than the chain allows.

use super::{
    ChainSpec, BLOCK_OVERHEAD_BYTES, GAS_LIMIT_BOUND_DIVISOR, MAX_GAS_LIMIT, MIN_BLOCK_BYTES, MIN_GAS_LIMIT,
};

/// What this node's sealer builds, within the chain's rules (`run --gas-limit-target`,
/// `run --max-block-bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealLimits {
    /// The gas limit the sealer steers toward, one bounded step per block; `None` steers toward the
    /// genesis gas limit.
    pub gas_limit_target: Option<u64>,
    /// Largest block this sealer builds, in bytes of RLP; `None` is the chain's limit. It may only
    /// be lower than the chain's limit.
    pub max_block_bytes: Option<u64>,
}

/// Why the sealer's limits do not fit the chain. The messages name the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealLimitsError {
    /// The gas limit target is below the chain's minimum.
    #[error("--gas-limit-target {target} is below the minimum block gas limit {min}")]
    TargetBelowMinimum {
        /// The target.
        target: u64,
        /// [`MIN_GAS_LIMIT`].
        min: u64,
    },
    /// The gas limit target is over 2^63 − 1.
    #[error("--gas-limit-target {0} is over the maximum block gas limit 2^63-1")]
    TargetTooHigh(u64),
    /// The sealer's byte limit is over the chain's.
    #[error(
        "--max-block-bytes {flag} is over this chain's block byte limit {chain} (config.p2pe.maxBlockBytes \
         in the genesis); the flag may only lower what this node seals"
    )]
    BytesOverChain {
        /// The flag's value.
        flag: u64,
        /// The chain's limit.
        chain: u64,
    },
    /// The sealer's byte limit is too small for a block.
    #[error("--max-block-bytes {flag} is below the minimum {min}")]
    BytesBelowMinimum {
        /// The flag's value.
        flag: u64,
        /// [`MIN_BLOCK_BYTES`].
        min: u64,
    },
}

impl SealLimits {
    /// Checks the limits against `spec`.
    pub fn check(&self, spec: &ChainSpec) -> Result<(), SealLimitsError> {
        if let Some(target) = self.gas_limit_target {
            if target < MIN_GAS_LIMIT {
                return Err(SealLimitsError::TargetBelowMinimum { target, min: MIN_GAS_LIMIT });
            }
            if target > MAX_GAS_LIMIT {
                return Err(SealLimitsError::TargetTooHigh(target));
            }
        }
        if let Some(flag) = self.max_block_bytes {
            if flag > spec.max_block_bytes() {
                return Err(SealLimitsError::BytesOverChain { flag, chain: spec.max_block_bytes() });
            }
            if flag < MIN_BLOCK_BYTES {
                return Err(SealLimitsError::BytesBelowMinimum { flag, min: MIN_BLOCK_BYTES });
            }
        }
        Ok(())
    }

    /// The gas limit target in effect on `spec`.
    pub fn gas_target(&self, spec: &ChainSpec) -> u64 {
        self.gas_limit_target.unwrap_or(spec.genesis_header.gas_limit)
    }

    /// The largest block this sealer builds on `spec`, in bytes.
    pub fn block_bytes(&self, spec: &ChainSpec) -> u64 {
        self.max_block_bytes.map_or(spec.max_block_bytes(), |b| b.min(spec.max_block_bytes()))
    }

    /// The largest transaction that can fit in a block this node seals (or, for a follower, in any
    /// block of the chain), in bytes.
    pub fn largest_tx(&self, spec: &ChainSpec) -> u64 {
        self.block_bytes(spec).saturating_sub(BLOCK_OVERHEAD_BYTES)
    }
}

/// The gas limit of the child of a block whose gas limit is `parent`, moved toward `target` by
/// the largest step the bound allows (geth's `core.CalcGasLimit`), and never below
/// [`MIN_GAS_LIMIT`].
pub fn next_gas_limit(parent: u64, target: u64) -> u64 {
    let step = (parent / GAS_LIMIT_BOUND_DIVISOR).saturating_sub(1);
    let target = target.clamp(MIN_GAS_LIMIT, MAX_GAS_LIMIT);
    if parent < target {
        parent.saturating_add(step).min(target)
    } else {
        parent.saturating_sub(step).max(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steering_moves_one_bounded_step_toward_the_target() {
        let p = 100_000_000u64;
        let step = p / 1024 - 1;
        assert_eq!(next_gas_limit(p, 200_000_000), p + step);
        assert_eq!(next_gas_limit(p, 50_000_000), p - step);
        assert_eq!(next_gas_limit(p, p), p);
        // The last step lands on the target, not past it.
        assert_eq!(next_gas_limit(p, p + 10), p + 10);
        assert_eq!(next_gas_limit(p, p - 10), p - 10);
        // A target under the minimum steers to the minimum and stops there.
        assert_eq!(next_gas_limit(MIN_GAS_LIMIT + 5, 0), MIN_GAS_LIMIT);
        assert_eq!(next_gas_limit(MIN_GAS_LIMIT, 0), MIN_GAS_LIMIT);
        // Every step is strictly inside the bound that import checks.
        for (parent, target) in [(MIN_GAS_LIMIT, u64::MAX), (p, 0), (3_000_000_000, 1)] {
            let child = next_gas_limit(parent, target);
            assert!(child.abs_diff(parent) < parent / GAS_LIMIT_BOUND_DIVISOR, "{parent} -> {child}");
        }
    }
}
