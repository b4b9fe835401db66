//! Building and sealing this signer's next block from the pool, then committing it through the
//! same road as an imported block.

use alloy_consensus::{proofs, Header};
use alloy_primitives::{Address, B256};

use crate::chain::next_gas_limit;
use crate::consensus::clique::{self, Proposal, Snapshot};
use crate::crypto::SigningKey;
use crate::execution::{execute_block, receipts_bloom, BlockInput, BlockOutcome, ExecError, InvalidTxPolicy};
use crate::primitives::{Block, SealedBlock};

use super::import::Applied;
use super::{Blockchain, Head, ImportError};

impl Blockchain {
    /// Builds, seals and commits a block on the head with transactions from the pool.
    ///
    /// Returns `None` when it is not this signer's time (signed too recently).
    pub fn seal_next(
        &self,
        key: &SigningKey,
        timestamp: u64,
        vote: Option<Proposal>,
    ) -> Result<Option<SealedBlock>, ImportError> {
        let _guard = self.import_lock.lock();
        let _timer = crate::metrics::Timer::start(crate::metrics::names::BLOCK_SEAL);
        let head = self.tip();
        let signer = key.address();
        let number = head.header.number + 1;
        if !head.snapshot.signers.contains(&signer) || head.snapshot.signed_recently(number, &signer) {
            return Ok(None);
        }
        let gas_limit = next_gas_limit(head.header.gas_limit, self.seal_limits.gas_target(&self.spec));
        let intent = clique::SealIntent { signer: &signer, timestamp, gas_limit, vote };
        let header =
            clique::prepare_header(&self.spec.clique, &head.header, head.hash, &head.snapshot, intent);
        let outcome = self.execute_from_pool(&header, signer)?;
        let (block, hash, snapshot, applied) = self.seal_executed(header, &outcome, key, &head)?;
        let senders = outcome.txs.iter().map(|t| t.signer()).collect();
        let sealed = SealedBlock { hash, block, senders };
        self.commit_executed(sealed.clone(), outcome, snapshot, &head, Some(applied))?;
        Ok(Some(sealed))
    }

    /// Runs the pool's best transactions on the head state in the block `header` prepares (the
    /// invalid ones skipped, the ones that can never run dropped from the pool).
    fn execute_from_pool(&self, header: &Header, signer: Address) -> Result<BlockOutcome, ImportError> {
        let input = block_input_for_signer(header, signer);
        let max_txs = (header.gas_limit / 21_000) as usize;
        let tx_bytes = self.tx_byte_budget(header);
        let hashes = self.tip.read().hashes.clone();
        let executed = {
            let _timer = crate::metrics::Timer::start(crate::metrics::names::BLOCK_EXECUTE);
            self.with_writer_state(|state| {
                let nonce = |a: &Address| state.account(a).ok().flatten().map(|i| i.nonce).unwrap_or(0);
                let candidates = self.pool.best(nonce, max_txs);
                let policy = InvalidTxPolicy::Skip { tx_bytes };
                execute_block(self.spec.chain_id, state, &hashes, &input, candidates, policy)
            })
        };
        let outcome = executed.map_err(|e| match e {
            ExecError::State(s) => ImportError::State(s),
            other => {
                ImportError::Invalid { number: header.number, hash: B256::ZERO, reason: other.to_string() }
            }
        })?;
        for skipped in &outcome.skipped {
            if !skipped.retry {
                tracing::debug!(tx = %skipped.tx.inner().tx_hash(), reason = %skipped.reason, "dropping invalid transaction");
                self.pool.remove(skipped.tx.inner().tx_hash());
            }
        }
        Ok(outcome)
    }

    /// Fills in what execution decided, then the state root, signs the header and checks the
    /// result against the chain's rules and this sealer's byte limit.
    fn seal_executed(
        &self,
        mut header: Header,
        outcome: &BlockOutcome,
        key: &SigningKey,
        head: &Head,
    ) -> Result<(Block, B256, Snapshot, Applied), ImportError> {
        let number = header.number;
        header.gas_used = outcome.gas_used;
        header.receipts_root = proofs::calculate_receipt_root(&outcome.receipts);
        header.logs_bloom = receipts_bloom(&outcome.receipts);
        let txs: Vec<_> = outcome.txs.iter().map(|t| t.inner().clone()).collect();
        header.transactions_root = proofs::calculate_transaction_root(&txs);
        // The state root and undo record are computed once, here, and handed to the shared commit.
        let applied = self.apply_outcome(outcome)?;
        header.state_root = applied.root;
        let sealed_ok = clique::sign_header(&mut header, key).map_err(|source| ImportError::Consensus {
            number,
            hash: B256::ZERO,
            source,
        });
        let hash = header.hash_slow();
        let verified = sealed_ok.and_then(|_| {
            clique::verify_header(&self.spec.clique, &header, &head.header, head.hash, &head.snapshot, None)
                .map_err(|source| ImportError::Consensus { number, hash, source })
        });
        let (snapshot, _) = verified?;
        let block = Block {
            header,
            body: alloy_consensus::BlockBody {
                transactions: txs,
                ommers: vec![],
                withdrawals: Some(Default::default()),
            },
        };
        let size = alloy_rlp::Encodable::length(&block) as u64;
        if size > self.seal_limits.block_bytes(&self.spec) {
            return Err(ImportError::Invalid {
                number,
                hash,
                reason: format!("the sealed block is {size} bytes, over the byte limit it was built for"),
            });
        }
        Ok((block, hash, snapshot, applied))
    }

    /// Bytes left for transactions in a block built on `header` (prepared, not yet filled): the
    /// sealer's byte limit less the block without transactions, less what filling in the gas used
    /// and the longer list headers can add.
    fn tx_byte_budget(&self, header: &Header) -> usize {
        const FILL_SLACK: u64 = 32;
        let empty = Block {
            header: header.clone(),
            body: alloy_consensus::BlockBody {
                transactions: vec![],
                ommers: vec![],
                withdrawals: Some(Default::default()),
            },
        };
        let fixed = alloy_rlp::Encodable::length(&empty) as u64 + FILL_SLACK;
        usize::try_from(self.seal_limits.block_bytes(&self.spec).saturating_sub(fixed)).unwrap_or(usize::MAX)
    }
}

/// The execution inputs of a header.
///
/// COINBASE is the block's signer, as under geth's Clique (`Author`): the header's `coinbase`
/// field only carries votes. For a header not sealed yet, see [`block_input_for_signer`].
pub fn block_input(header: &Header) -> BlockInput {
    block_input_for_signer(header, clique::recover_sealer(header).unwrap_or_default())
}

/// The execution inputs of a header sealed (or about to be sealed) by `signer`.
pub fn block_input_for_signer(header: &Header, signer: Address) -> BlockInput {
    BlockInput {
        number: header.number,
        timestamp: header.timestamp,
        beneficiary: signer,
        gas_limit: header.gas_limit,
        difficulty: header.difficulty.to::<u64>(),
        prevrandao: header.mix_hash,
    }
}
