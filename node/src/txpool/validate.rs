//! Stateless checks on a raw transaction: decoding, type, chain id, signature, size and gas.

use alloy_consensus::{transaction::Recovered, Transaction, TxEnvelope};
use alloy_eips::{eip2718::Decodable2718, Typed2718};
use alloy_primitives::Address;
use revm::context_interface::cfg::gas::calculate_initial_tx_gas_for_tx;
use revm::primitives::hardfork::SpecId;

use crate::chain::TX_GAS_LIMIT_CAP;
use crate::crypto::recover_signer;
use crate::execution::tx_env;
use crate::primitives::RecoveredTx;

/// What validation needs to know about the chain.
#[derive(Debug, Clone)]
pub struct ValidationContext<'a> {
    /// Our chain id.
    pub chain_id: u64,
    /// Current block gas limit.
    pub block_gas_limit: u64,
    /// Largest accepted encoding.
    pub max_tx_bytes: usize,
    /// Senders allowed to transact, if restricted.
    pub allowlist: Option<&'a std::collections::BTreeSet<Address>>,
}

/// Why a transaction is refused before it reaches the pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxValidationError {
    /// Not a valid EIP-2718 / RLP transaction.
    #[error("invalid transaction encoding: {0}")]
    Decode(String),
    /// Too large.
    #[error("oversized transaction: {size} bytes, the limit is {limit}")]
    Oversized {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Blob transactions are not supported on this chain.
    #[error("blob transactions (type 3) are not supported on this chain")]
    BlobNotSupported,
    /// Pre-EIP-155 legacy transaction, replayable across chains.
    #[error("only replay-protected (EIP-155) transactions are accepted")]
    NotReplayProtected,
    /// Wrong chain id.
    #[error("invalid chain id {got}: this chain is {expected}")]
    WrongChainId {
        /// Our chain id.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// The signature is invalid.
    #[error("invalid signature: {0}")]
    BadSignature(String),
    /// Gas limit below intrinsic gas.
    #[error("intrinsic gas too low: gas limit {gas_limit}, need at least {intrinsic}")]
    IntrinsicGas {
        /// Signed gas limit.
        gas_limit: u64,
        /// Needed.
        intrinsic: u64,
    },
    /// Gas limit above the cap.
    #[error("exceeds block gas limit / EIP-7825 transaction gas cap: gas limit {gas_limit}, cap {cap}")]
    GasLimitTooHigh {
        /// Signed gas limit.
        gas_limit: u64,
        /// The cap.
        cap: u64,
    },
    /// Sender not on the allowlist.
    #[error("sender {0} is not on this chain's allowlist")]
    NotAllowed(Address),
    /// EIP-7702 transaction without authorizations.
    #[error("EIP-7702 transaction with an empty authorization list")]
    EmptyAuthorizationList,
}

/// Decodes and checks a raw transaction, recovering its sender.
pub fn validate_tx(raw: &[u8], ctx: &ValidationContext<'_>) -> Result<RecoveredTx, TxValidationError> {
    if raw.len() > ctx.max_tx_bytes {
        return Err(TxValidationError::Oversized { size: raw.len(), limit: ctx.max_tx_bytes });
    }
    let mut buf = raw;
    let tx = TxEnvelope::decode_2718(&mut buf).map_err(|e| TxValidationError::Decode(e.to_string()))?;
    if !buf.is_empty() {
        return Err(TxValidationError::Decode(format!("{} trailing bytes after the transaction", buf.len())));
    }
    validate_envelope(tx, ctx)
}

/// Checks a decoded transaction and recovers its sender.
pub fn validate_envelope(
    tx: TxEnvelope,
    ctx: &ValidationContext<'_>,
) -> Result<RecoveredTx, TxValidationError> {
    validate_with_sender(tx, None, ctx)
}

/// [`validate_envelope`] for a transaction whose sender is already known (recovered from this
/// very encoding before, e.g. when it entered the pool): every check but the signature recovery.
/// `None` recovers the sender.
pub fn validate_with_sender(
    tx: TxEnvelope,
    sender: Option<Address>,
    ctx: &ValidationContext<'_>,
) -> Result<RecoveredTx, TxValidationError> {
    if tx.is_eip4844() {
        return Err(TxValidationError::BlobNotSupported);
    }
    match tx.chain_id() {
        None => return Err(TxValidationError::NotReplayProtected),
        Some(id) if id != ctx.chain_id => {
            return Err(TxValidationError::WrongChainId { expected: ctx.chain_id, got: id })
        }
        _ => {}
    }
    if tx.ty() == 4 && tx.authorization_list().is_none_or(|l| l.is_empty()) {
        return Err(TxValidationError::EmptyAuthorizationList);
    }
    let cap = ctx.block_gas_limit.min(TX_GAS_LIMIT_CAP);
    if tx.gas_limit() > cap {
        return Err(TxValidationError::GasLimitTooHigh { gas_limit: tx.gas_limit(), cap });
    }
    let sender = match sender {
        Some(sender) => sender,
        None => recover_signer(tx.signature(), &tx.signature_hash())
            .map_err(|e| TxValidationError::BadSignature(e.to_string()))?,
    };
    if let Some(list) = ctx.allowlist {
        if !list.contains(&sender) {
            return Err(TxValidationError::NotAllowed(sender));
        }
    }
    let recovered = Recovered::new_unchecked(tx, sender);
    let gas = calculate_initial_tx_gas_for_tx(tx_env(&recovered), SpecId::OSAKA, None);
    let intrinsic = (gas.initial_regular_gas + gas.initial_state_gas).max(gas.floor_gas);
    if recovered.inner().gas_limit() < intrinsic {
        return Err(TxValidationError::IntrinsicGas { gas_limit: recovered.inner().gas_limit(), intrinsic });
    }
    Ok(recovered)
}
