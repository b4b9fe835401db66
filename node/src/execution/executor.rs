//! The block executor.

use alloy_consensus::{transaction::Recovered, ReceiptEnvelope, Transaction, TxEnvelope};
use alloy_primitives::{Address, Bytes, TxHash};
use alloy_rlp::Encodable;
use revm::context_interface::result::{EVMError, ExecutionResult, InvalidTransaction};
use revm::{ExecuteCommitEvm, ExecuteEvm};

use super::{block_env, build_receipt, tx_env, BlockInput, EvmConfig, EvmMode};
use crate::state::{BlockHashes, StateChanges, StateError, StateOverlay, StateReader};

/// What to do with a transaction that cannot be executed (bad nonce, over the gas left...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidTxPolicy {
    /// Leave it out of the block (block building). A transaction whose encoding would take the
    /// block's transactions over `tx_bytes` bytes is left out too, to wait for a later block (the
    /// chain's block byte limit, see [`crate::chain::ChainSpec::max_block_bytes`]).
    Skip {
        /// Bytes left for the block's transactions (their RLP encodings, as in the block body).
        tx_bytes: usize,
        /// No transaction starts after this instant: the rest wait for a later block (the
        /// builder's time budget, see [`crate::blockchain::build_budget`]).
        deadline: Option<std::time::Instant>,
    },
    /// Fail the whole block (block import).
    Reject,
}

/// Why a block could not be executed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A transaction in an imported block is invalid.
    #[error("transaction {index} ({hash}) is invalid: {reason}")]
    InvalidTransaction {
        /// Position in the block.
        index: usize,
        /// Transaction hash.
        hash: TxHash,
        /// What is wrong.
        reason: String,
    },
    /// Reading state failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// A transaction left out by the builder, and why.
#[derive(Debug, Clone)]
pub struct SkippedTx {
    /// The transaction.
    pub tx: Recovered<TxEnvelope>,
    /// Why it could not run.
    pub reason: String,
    /// Whether it may become valid later (e.g. a nonce gap, not enough gas left in this block).
    pub retry: bool,
}

/// Per-transaction results beyond the receipt.
#[derive(Debug, Clone)]
pub struct TxOutcome {
    /// Gas used by this transaction alone.
    pub gas_used: u64,
    /// Address of a contract the transaction created.
    pub contract_address: Option<Address>,
    /// Return or revert data.
    pub output: Bytes,
    /// Every account the execution loaded, sorted: the sender, the recipient, every account called
    /// (any kind of call, internal ones too), created or read (`BALANCE`, `EXTCODE*`); not the
    /// block's beneficiary, which every transaction loads to pay it. The explorer's address index
    /// ([`crate::storage::ExplorerQuery`]) is written from it.
    pub accounts: Vec<Address>,
    /// The contracts the transaction created, sorted: by a creation transaction or by `CREATE` /
    /// `CREATE2` inside it (the explorer's `ots_getContractCreator`).
    pub created: Vec<Address>,
}

/// Everything a block's execution produced.
#[derive(Debug, Default)]
pub struct BlockOutcome {
    /// The transactions that ran, in order.
    pub txs: Vec<Recovered<TxEnvelope>>,
    /// Their receipts.
    pub receipts: Vec<ReceiptEnvelope>,
    /// Per-transaction details.
    pub tx_outcomes: Vec<TxOutcome>,
    /// Total gas used.
    pub gas_used: u64,
    /// The state changes.
    pub changes: StateChanges,
    /// Transactions the builder left out.
    pub skipped: Vec<SkippedTx>,
}

/// Executes `txs` in order on top of `base`.
pub fn execute_block<R: StateReader + ?Sized>(
    chain_id: u64,
    base: &R,
    hashes: &BlockHashes,
    input: &BlockInput,
    txs: impl IntoIterator<Item = Recovered<TxEnvelope>>,
    policy: InvalidTxPolicy,
) -> Result<BlockOutcome, ExecError> {
    let overlay = StateOverlay::new(base, hashes);
    let mut evm = EvmConfig::new(chain_id).evm(overlay, block_env(input), EvmMode::Block);
    let mut out = BlockOutcome::default();
    let mut tx_bytes = 0usize;
    for (index, tx) in txs.into_iter().enumerate() {
        let size = tx.inner().length();
        if let InvalidTxPolicy::Skip { deadline: Some(deadline), .. } = policy {
            if std::time::Instant::now() >= deadline {
                break;
            }
        }
        if let InvalidTxPolicy::Skip { tx_bytes: budget, .. } = policy {
            if tx_bytes + size > budget {
                let reason = format!(
                    "its {size} bytes would take the block over its byte limit ({} of {budget} bytes used)",
                    tx_bytes
                );
                out.skipped.push(SkippedTx { tx, reason, retry: true });
                continue;
            }
        }
        let gas_left = input.gas_limit - out.gas_used;
        if tx.inner().gas_limit() > gas_left {
            let reason =
                format!("gas limit {} exceeds the {gas_left} gas left in the block", tx.inner().gas_limit());
            match policy {
                InvalidTxPolicy::Reject => {
                    return Err(ExecError::InvalidTransaction { index, hash: *tx.inner().tx_hash(), reason })
                }
                InvalidTxPolicy::Skip { .. } => {
                    out.skipped.push(SkippedTx { tx, reason, retry: true });
                    continue;
                }
            }
        }
        let executed = evm.transact_one(tx_env(&tx));
        let state = evm.finalize();
        match executed {
            Ok(result) => {
                let mut accounts: Vec<Address> =
                    state.keys().filter(|a| **a != input.beneficiary).copied().collect();
                accounts.sort_unstable();
                let created: Vec<Address> =
                    accounts.iter().filter(|a| state[*a].is_created()).copied().collect();
                evm.commit(state);
                let gas_used = result.tx_gas_used();
                out.gas_used += gas_used;
                let contract_address = result.created_address();
                let success = result.is_success();
                let (logs, output) = match result {
                    ExecutionResult::Success { logs, output, .. } => (logs, output.into_data()),
                    ExecutionResult::Revert { output, .. } => (Vec::new(), output),
                    ExecutionResult::Halt { .. } => (Vec::new(), Bytes::new()),
                };
                out.receipts.push(build_receipt(tx.inner().tx_type(), success, out.gas_used, logs));
                out.tx_outcomes.push(TxOutcome { gas_used, contract_address, output, accounts, created });
                out.txs.push(tx);
                tx_bytes += size;
            }
            Err(EVMError::Database(e)) => return Err(ExecError::State(e)),
            Err(err) => {
                let retry = matches!(
                    err,
                    EVMError::Transaction(InvalidTransaction::NonceTooHigh { .. })
                        | EVMError::Transaction(InvalidTransaction::CallerGasLimitMoreThanBlock)
                );
                let reason = match &err {
                    EVMError::Transaction(t) => t.to_string(),
                    other => other.to_string(),
                };
                match policy {
                    InvalidTxPolicy::Reject => {
                        return Err(ExecError::InvalidTransaction {
                            index,
                            hash: *tx.inner().tx_hash(),
                            reason,
                        })
                    }
                    InvalidTxPolicy::Skip { .. } => out.skipped.push(SkippedTx { tx, reason, retry }),
                }
            }
        }
    }
    out.changes = evm.ctx.journaled_state.database.into_changes();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SigningKey;
    use crate::state::{AccountInfo, WorldState};
    use alloy_consensus::{SignableTransaction, TxEip1559};
    use alloy_primitives::{TxKind, B256, U256};
    use std::time::{Duration, Instant};

    fn transfers(key: &SigningKey, n: u64) -> Vec<Recovered<TxEnvelope>> {
        (0..n)
            .map(|nonce| {
                let t = TxEip1559 {
                    chain_id: 7,
                    nonce,
                    gas_limit: 21_000,
                    to: TxKind::Call(Address::repeat_byte(9)),
                    value: U256::from(1),
                    ..Default::default()
                };
                let sig = key.sign_hash(&t.signature_hash());
                Recovered::new_unchecked(TxEnvelope::from(t.into_signed(sig)), key.address())
            })
            .collect()
    }

    fn run(deadline: Option<Instant>) -> BlockOutcome {
        let key = SigningKey::from_bytes(&B256::repeat_byte(3)).unwrap();
        let mut state = WorldState::default();
        let info = AccountInfo {
            nonce: 0,
            balance: U256::from(1_000_000u64),
            code_hash: revm::primitives::KECCAK_EMPTY,
        };
        state.insert_loaded(key.address(), info, Default::default());
        let input = BlockInput {
            number: 1,
            timestamp: 1,
            beneficiary: Address::ZERO,
            gas_limit: 30_000_000,
            difficulty: 2,
            prevrandao: B256::ZERO,
        };
        let policy = InvalidTxPolicy::Skip { tx_bytes: usize::MAX, deadline };
        execute_block(7, &state, &BlockHashes::default(), &input, transfers(&key, 50), policy).unwrap()
    }

    #[test]
    fn a_builder_starts_no_transaction_after_its_deadline() {
        assert_eq!(run(None).txs.len(), 50, "no deadline: every transaction runs");
        assert_eq!(run(Some(Instant::now() + Duration::from_secs(60))).txs.len(), 50, "a deadline far ahead");
        let past = run(Some(Instant::now()));
        assert_eq!(past.txs.len(), 0, "a deadline already passed: nothing starts");
        assert_eq!(past.skipped.len(), 0, "what did not start is not skipped: it waits in the pool");
        assert_eq!(past.gas_used, 0);
    }
}
