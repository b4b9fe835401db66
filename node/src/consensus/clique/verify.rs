//! Header verification and header preparation under Clique.

use alloy_consensus::{constants::EMPTY_OMMER_ROOT_HASH, Header, EMPTY_ROOT_HASH};
use alloy_eips::eip7685::EMPTY_REQUESTS_HASH;
use alloy_primitives::{Address, Bytes, B256, B64, U256};

use super::{Snapshot, DIFF_IN_TURN, DIFF_NO_TURN, NONCE_AUTH, NONCE_DROP};
use crate::chain::{
    CliqueConfig, EXTRA_SEAL, EXTRA_VANITY, GAS_LIMIT_BOUND_DIVISOR, MAX_GAS_LIMIT, MIN_GAS_LIMIT,
};

/// A Clique rule a header broke. The messages name the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliqueError {
    /// extraData is too short to hold vanity and seal.
    #[error("extraData is shorter than 32 bytes of vanity plus the 65-byte seal")]
    MissingSeal,
    /// The seal does not recover to an address.
    #[error("invalid seal: the signature does not recover")]
    InvalidSeal,
    /// The seal's `s` is in the upper half of the curve order: the malleated twin of a seal.
    #[error(
        "invalid seal: its s value is in the upper half of the secp256k1 order (seals must be low-s, \
         as EIP-2 requires of transactions; a high-s seal is the malleated twin of a valid one)"
    )]
    HighSSeal,
    /// The signer is not in the authorised set.
    #[error("unauthorized signer {0}")]
    Unauthorized(Address),
    /// The signer signed one of the last floor(N/2)+1 blocks.
    #[error("signer {0} signed recently and must wait for others")]
    RecentlySigned(Address),
    /// The nonce is neither the add nor the drop vote.
    #[error("invalid vote nonce: must be 0x0000000000000000 or 0xffffffffffffffff")]
    InvalidVote,
    /// A checkpoint carries a vote.
    #[error("checkpoint block {0} must not vote (coinbase and nonce must be zero)")]
    CheckpointVote(u64),
    /// Signer bytes on a non-checkpoint block.
    #[error("extraData of non-checkpoint block {0} must not list signers")]
    ExtraSigners(u64),
    /// Checkpoint signer list is malformed or differs from the snapshot.
    #[error("checkpoint block {0} lists the wrong signers")]
    CheckpointSigners(u64),
    /// mixDigest must be zero.
    #[error("mixDigest must be zero")]
    MixDigest,
    /// ommersHash must be the hash of the empty list.
    #[error("ommersHash must be the hash of an empty list")]
    Ommers,
    /// Difficulty must be 2 in turn, 1 out of turn.
    #[error("wrong difficulty {got}: expected {expected} for this signer's turn")]
    Difficulty {
        /// Expected difficulty.
        expected: U256,
        /// Found difficulty.
        got: U256,
    },
    /// Timestamp too soon after the parent.
    #[error("timestamp {got} is earlier than parent timestamp + period ({min})")]
    TimestampTooEarly {
        /// Earliest allowed.
        min: u64,
        /// Found.
        got: u64,
    },
    /// Timestamp in the future.
    #[error("timestamp {0} is in the future")]
    FutureBlock(u64),
    /// The gas limit is below the chain's minimum.
    #[error("gas limit rule: gas limit {got} is below the minimum block gas limit {min}")]
    GasLimitBelowMinimum {
        /// Found.
        got: u64,
        /// [`MIN_GAS_LIMIT`].
        min: u64,
    },
    /// The gas limit moved too far from the parent's.
    #[error(
        "gas limit rule: gas limit {got} differs from the parent's {parent} by {diff}; a block may \
         change it by less than parent/1024 ({bound})"
    )]
    GasLimitStep {
        /// The parent's gas limit.
        parent: u64,
        /// Found.
        got: u64,
        /// |got − parent|.
        diff: u64,
        /// parent / 1024.
        bound: u64,
    },
    /// The gas limit is over 2^63 − 1.
    #[error("gas limit rule: gas limit {0} is over 2^63-1")]
    GasLimitTooHigh(u64),
    /// More gas used than the limit.
    #[error("gas used {used} is over the block's gas limit {limit}")]
    GasUsedOverLimit {
        /// Gas used.
        used: u64,
        /// Gas limit.
        limit: u64,
    },
    /// A post-London field has the wrong value.
    #[error("header field {0} has the wrong value for this chain")]
    Field(&'static str),
    /// Parent linkage.
    #[error("block {got} is not the next block (expected {expected})")]
    NonContiguous {
        /// The number expected.
        expected: u64,
        /// The number found.
        got: u64,
    },
    /// Parent hash mismatch.
    #[error("parentHash does not match the parent block")]
    ParentHash,
    /// The parent (or an ancestor) is unknown.
    #[error("unknown parent {0}")]
    UnknownParent(B256),
}

/// Checks every Clique and chain rule on `header` given its parent and the parent's snapshot.
///
/// `now` is the local time for the future-block check (`None` skips it, e.g. when re-verifying
/// stored blocks). The returned snapshot is the one after `header`, with its signer.
pub fn verify_header(
    config: &CliqueConfig,
    header: &Header,
    parent: &Header,
    parent_hash: B256,
    parent_snapshot: &Snapshot,
    now: Option<u64>,
) -> Result<(Snapshot, Address), CliqueError> {
    let number = header.number;
    if number != parent.number + 1 {
        return Err(CliqueError::NonContiguous { expected: parent.number + 1, got: number });
    }
    if header.parent_hash != parent_hash {
        return Err(CliqueError::ParentHash);
    }
    if let Some(now) = now {
        if header.timestamp > now + 1 {
            return Err(CliqueError::FutureBlock(header.timestamp));
        }
    }
    let checkpoint = number.is_multiple_of(config.epoch);
    if checkpoint && (header.beneficiary != Address::ZERO || header.nonce != NONCE_DROP) {
        return Err(CliqueError::CheckpointVote(number));
    }
    if header.nonce != NONCE_AUTH && header.nonce != NONCE_DROP {
        return Err(CliqueError::InvalidVote);
    }
    let extra = &header.extra_data;
    if extra.len() < EXTRA_VANITY + EXTRA_SEAL {
        return Err(CliqueError::MissingSeal);
    }
    let signer_bytes = &extra[EXTRA_VANITY..extra.len() - EXTRA_SEAL];
    if !checkpoint && !signer_bytes.is_empty() {
        return Err(CliqueError::ExtraSigners(number));
    }
    if checkpoint && !signer_bytes.len().is_multiple_of(20) {
        return Err(CliqueError::CheckpointSigners(number));
    }
    if header.mix_hash != B256::ZERO {
        return Err(CliqueError::MixDigest);
    }
    if header.ommers_hash != EMPTY_OMMER_ROOT_HASH {
        return Err(CliqueError::Ommers);
    }
    if header.difficulty != DIFF_IN_TURN && header.difficulty != DIFF_NO_TURN {
        return Err(CliqueError::Difficulty { expected: DIFF_IN_TURN, got: header.difficulty });
    }
    verify_gas(header.gas_limit, header.gas_used, parent.gas_limit)?;
    if header.base_fee_per_gas != Some(0) {
        return Err(CliqueError::Field("baseFeePerGas (must be 0)"));
    }
    if header.withdrawals_root != Some(EMPTY_ROOT_HASH) {
        return Err(CliqueError::Field("withdrawalsRoot (must be the empty root)"));
    }
    if header.blob_gas_used != Some(0) || header.excess_blob_gas != Some(0) {
        return Err(CliqueError::Field("blobGasUsed/excessBlobGas (must be 0)"));
    }
    if header.parent_beacon_block_root != Some(B256::ZERO) {
        return Err(CliqueError::Field("parentBeaconBlockRoot (must be zero)"));
    }
    if header.requests_hash != Some(EMPTY_REQUESTS_HASH) {
        return Err(CliqueError::Field("requestsHash (must be the empty requests hash)"));
    }
    let min = parent.timestamp + config.period;
    if header.timestamp < min {
        return Err(CliqueError::TimestampTooEarly { min, got: header.timestamp });
    }
    if checkpoint {
        let listed: Vec<Address> = signer_bytes.chunks(20).map(Address::from_slice).collect();
        if listed != parent_snapshot.signers_sorted() {
            return Err(CliqueError::CheckpointSigners(number));
        }
    }
    let mut snapshot = parent_snapshot.clone();
    let signer = snapshot.apply(header, header.hash_slow())?;
    let expected = if parent_snapshot.in_turn(number, &signer) { DIFF_IN_TURN } else { DIFF_NO_TURN };
    if header.difficulty != expected {
        return Err(CliqueError::Difficulty { expected, got: header.difficulty });
    }
    Ok((snapshot, signer))
}

/// The gas rules of a header (geth's `verifyCascadingFields` for Clique, with our minimum): the
/// limit is within [[`MIN_GAS_LIMIT`], 2^63 − 1], differs from the parent's by less than
/// parent / 1024, and the gas used is within it.
pub fn verify_gas(gas_limit: u64, gas_used: u64, parent_gas_limit: u64) -> Result<(), CliqueError> {
    if gas_limit > MAX_GAS_LIMIT {
        return Err(CliqueError::GasLimitTooHigh(gas_limit));
    }
    let diff = gas_limit.abs_diff(parent_gas_limit);
    let bound = parent_gas_limit / GAS_LIMIT_BOUND_DIVISOR;
    if diff != 0 && diff >= bound {
        return Err(CliqueError::GasLimitStep { parent: parent_gas_limit, got: gas_limit, diff, bound });
    }
    if gas_limit < MIN_GAS_LIMIT {
        return Err(CliqueError::GasLimitBelowMinimum { got: gas_limit, min: MIN_GAS_LIMIT });
    }
    if gas_used > gas_limit {
        return Err(CliqueError::GasUsedOverLimit { used: gas_used, limit: gas_limit });
    }
    Ok(())
}

/// A proposal this signer will vote for in blocks it seals.
#[derive(Debug, Clone, Copy)]
pub struct Proposal {
    /// The account.
    pub address: Address,
    /// Add (`true`) or remove.
    pub authorize: bool,
}

/// What the sealer decides about the next block before execution.
#[derive(Debug, Clone, Copy)]
pub struct SealIntent<'a> {
    /// The sealing address.
    pub signer: &'a Address,
    /// Wall-clock time; raised to parent time + period if earlier.
    pub timestamp: u64,
    /// Gas limit of the new block.
    pub gas_limit: u64,
    /// A vote to cast in the header.
    pub vote: Option<Proposal>,
}

/// Builds an unsealed header for the child of `parent`, to be filled by execution.
pub fn prepare_header(
    config: &CliqueConfig,
    parent: &Header,
    parent_hash: B256,
    snapshot: &Snapshot,
    intent: SealIntent<'_>,
) -> Header {
    let SealIntent { signer, timestamp, gas_limit, vote } = intent;
    let number = parent.number + 1;
    let checkpoint = number.is_multiple_of(config.epoch);
    let mut extra = vec![0u8; EXTRA_VANITY];
    if checkpoint {
        for s in snapshot.signers_sorted() {
            extra.extend_from_slice(s.as_slice());
        }
    }
    extra.extend_from_slice(&[0u8; EXTRA_SEAL]);
    let (beneficiary, nonce) = match vote {
        Some(p) if !checkpoint => (p.address, if p.authorize { NONCE_AUTH } else { NONCE_DROP }),
        _ => (Address::ZERO, B64::ZERO),
    };
    Header {
        parent_hash,
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary,
        difficulty: if snapshot.in_turn(number, signer) { DIFF_IN_TURN } else { DIFF_NO_TURN },
        number,
        gas_limit,
        timestamp: timestamp.max(parent.timestamp + config.period),
        extra_data: Bytes::from(extra),
        mix_hash: B256::ZERO,
        nonce,
        ..crate::primitives::fixed_fields_header()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_limit_rules_just_inside_and_just_outside() {
        let parent = 100_000_000u64;
        let bound = parent / 1024;
        assert_eq!(verify_gas(parent, 0, parent), Ok(()));
        assert_eq!(verify_gas(parent + bound - 1, 0, parent), Ok(()));
        assert_eq!(verify_gas(parent - (bound - 1), 0, parent), Ok(()));
        for got in [parent + bound, parent - bound, 1, u64::MAX / 4] {
            let err = verify_gas(got, 0, parent).unwrap_err();
            assert!(matches!(err, CliqueError::GasLimitStep { .. }), "{got}: {err}");
            assert!(err.to_string().contains("parent/1024"), "{err}");
        }
        // The minimum holds even where the step would allow going lower.
        let low = MIN_GAS_LIMIT + 100;
        assert_eq!(verify_gas(MIN_GAS_LIMIT, 0, low), Ok(()));
        let err = verify_gas(MIN_GAS_LIMIT - 1, 0, low).unwrap_err();
        assert!(matches!(err, CliqueError::GasLimitBelowMinimum { .. }), "{err}");
        assert!(err.to_string().contains("minimum block gas limit"), "{err}");
        assert!(matches!(verify_gas(u64::MAX, 0, u64::MAX), Err(CliqueError::GasLimitTooHigh(_))));
        assert!(matches!(verify_gas(parent, parent + 1, parent), Err(CliqueError::GasUsedOverLimit { .. })));
    }
}
