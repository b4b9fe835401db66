//! Building and sealing this signer's next block from the pool, then committing it through the
//! same road as an imported block.

use std::sync::Arc;

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
    /// Returns `None` when it is not this signer's time (signed too recently) or the chain is
    /// closed ([`Blockchain::close`]).
    pub fn seal_next(
        &self,
        key: &SigningKey,
        timestamp: u64,
        vote: Option<Proposal>,
    ) -> Result<Option<SealedBlock>, ImportError> {
        self.seal_on(None, key, timestamp, vote)
    }

    /// [`Blockchain::seal_next`] for the block-production loop, which decided to seal on the head
    /// `parent`. Returns `None`, sealing nothing, when:
    ///
    /// - the head is no longer `parent` once the import lock is held (a block arrived while the
    ///   sealer waited for the lock: the sealer must decide again when it seals on the new head);
    /// - the block would be out of turn and a block at its height, sealed by a signer on the same
    ///   parent, arrived by gossip while it was built ([`Blockchain::import_gossiped`] announces it): that block
    ///   is imported instead of forking the chain. An in-turn block is kept (it outweighs an
    ///   out-of-turn one under fork choice);
    /// - the chain is closed ([`Blockchain::close`]: the node is stopping).
    pub fn seal_on(
        &self,
        parent: Option<B256>,
        key: &SigningKey,
        timestamp: u64,
        vote: Option<Proposal>,
    ) -> Result<Option<SealedBlock>, ImportError> {
        let _guard = match self.lock_for_writing() {
            Ok(guard) => guard,
            Err(ImportError::Closed) => return Ok(None),
            Err(e) => return Err(e),
        };
        let _timer = crate::metrics::Timer::start(crate::metrics::names::BLOCK_SEAL);
        let head = self.tip();
        let signer = key.address();
        let number = head.header.number + 1;
        if parent.is_some_and(|p| p != head.hash) {
            return Ok(None);
        }
        if !head.snapshot.signers.contains(&signer) || head.snapshot.signed_recently(number, &signer) {
            return Ok(None);
        }
        let gas_limit = next_gas_limit(head.header.gas_limit, self.seal_limits.gas_target(&self.spec));
        let intent = clique::SealIntent { signer: &signer, timestamp, gas_limit, vote };
        let header =
            clique::prepare_header(&self.spec.clique, &head.header, head.hash, &head.snapshot, intent);
        let yields = !head.snapshot.in_turn(number, &signer);
        let abandon = || {
            let arrived = yields && self.is_arriving(number);
            if arrived {
                tracing::info!(
                    number,
                    "out-of-turn block abandoned: a signer's block at this height arrived"
                );
            }
            arrived
        };
        let outcome = self.execute_from_pool(&header, signer, head.snapshot.signers.len())?;
        if abandon() {
            return Ok(None);
        }
        let (block, hash, snapshot, applied) = self.seal_executed(header, &outcome, key, &head)?;
        if abandon() {
            return Ok(None);
        }
        let senders = outcome.txs.iter().map(|t| t.signer()).collect();
        let sealed = SealedBlock { hash, block, senders };
        // Peers get the block now and import it while it is written here (the commit of a block of
        // 10,000 transfers takes 100-300 ms on a loaded machine). Should this node crash before the
        // commit ends, it restarts at the parent and may seal another block at this height: a fork
        // Clique's fork choice settles, as when a geth signer loses its unsynced last blocks.
        if self.sealed_events.receiver_count() > 0 {
            let early = Arc::new(sealed.clone());
            *self.committing.lock() = Some(early.clone());
            let _ = self.sealed_events.send(early);
        }
        let committed = self.commit_executed(sealed.clone(), outcome, snapshot, &head, Some(applied));
        *self.committing.lock() = None;
        committed?;
        Ok(Some(sealed))
    }

    /// Runs the pool's best transactions on the head state in the block `header` prepares (the
    /// invalid ones skipped, the ones that can never run dropped from the pool).
    fn execute_from_pool(
        &self,
        header: &Header,
        signer: Address,
        signers: usize,
    ) -> Result<BlockOutcome, ImportError> {
        let input = block_input_for_signer(header, signer);
        let max_txs = (header.gas_limit / 21_000) as usize;
        let tx_bytes = self.tx_byte_budget(header);
        let hashes = self.tip.read().hashes.clone();
        let executed = {
            let _timer = crate::metrics::Timer::start(crate::metrics::names::BLOCK_EXECUTE);
            self.with_writer_state(|state| {
                let nonce = |a: &Address| state.account(a).ok().flatten().map(|i| i.nonce).unwrap_or(0);
                let candidates = self.pool.best(nonce, max_txs);
                let budget = build_budget(self.spec.clique.period, signers);
                let deadline = Some(std::time::Instant::now() + budget);
                let policy = InvalidTxPolicy::Skip { tx_bytes, deadline };
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

/// How long a signer spends running transactions into one block, at most, on a chain of
/// `signers` signers: two fifths of the period (400 ms at 1 s, and when blocks are sealed on
/// demand, period 0). The rest of the period is for the state root and the commit, and for the
/// peers to receive and import the block before the next one is due. Without it a burst made
/// blocks of 30,000–40,000 transfers that took 2–4 s to build and as long to import, so
/// out-of-turn signers sealed competing blocks before the in-turn block reached them. A lone
/// signer races nobody: it takes four fifths (800 ms at 1 s), and keeps a fifth for the root and
/// the commit (two fifths cost a single node 9 % of its throughput under a burst). The
/// transactions left over wait for the next block.
pub fn build_budget(period_secs: u64, signers: usize) -> std::time::Duration {
    let fifths = if signers <= 1 { 4 } else { 2 };
    std::time::Duration::from_millis(period_secs.max(1).saturating_mul(200 * fifths))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{Address, TxKind, B256, U256};

    use crate::blockchain::{Blockchain, ChainOptions, ImportError};
    use crate::chain::{build_genesis, ChainSpec, GenesisParams};
    use crate::crypto::SigningKey;
    use crate::storage::Store;
    use crate::txpool::{validate_tx, PoolConfig, TxPool};

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&B256::repeat_byte(b)).unwrap()
    }

    /// A 2-signer chain (keys 0xa1 and 0xb2) whose sender 0x51 is funded, in `dir/name`.
    fn open(dir: &std::path::Path, name: &str, t0: u64) -> Blockchain {
        open_keeping(dir, name, t0, 128)
    }

    /// [`open`] keeping the state history of `history` blocks.
    fn open_keeping(dir: &std::path::Path, name: &str, t0: u64, history: u64) -> Blockchain {
        open_with_history(dir, name, t0, Some(history))
    }

    /// [`open`] keeping `history` blocks of state history (`None`: archive).
    fn open_with_history(dir: &std::path::Path, name: &str, t0: u64, history: Option<u64>) -> Blockchain {
        let params = GenesisParams {
            chain_id: 58,
            signers: vec![key(0xa1).address(), key(0xb2).address()],
            funded: vec![(key(0x51).address(), U256::from(10u64).pow(U256::from(20)))],
            timestamp: t0,
            ..Default::default()
        };
        let json = serde_json::to_string(&build_genesis(&params)).unwrap();
        let spec = ChainSpec::from_json(&json).unwrap();
        let mut store = Store::open(&dir.join(name), history).unwrap();
        store.init_genesis(&spec, &json).unwrap();
        let opts = ChainOptions { read_connections: 1, ..Default::default() };
        Blockchain::open(spec, store, Arc::new(TxPool::new(PoolConfig::default())), &opts).unwrap()
    }

    fn add_transfers(chain: &Blockchain, n: u64) {
        for nonce in 0..n {
            add_transfer(chain, nonce);
        }
    }

    /// Pools sender 0x51's transfer of 1 wei to 0x0909…09 with `nonce`.
    fn add_transfer(chain: &Blockchain, nonce: u64) {
        add_tx(chain, nonce, TxKind::Call(Address::repeat_byte(9)), &[]);
    }

    /// Pools sender 0x51's transaction of 1 wei to `to` with `input`.
    fn add_tx(chain: &Blockchain, nonce: u64, to: TxKind, input: &[u8]) {
        let tx = TxEip1559 {
            chain_id: 58,
            nonce,
            gas_limit: if input.is_empty() { 21_000 } else { 200_000 },
            to,
            value: U256::from(1),
            input: input.to_vec().into(),
            ..Default::default()
        };
        let sig = key(0x51).sign_hash(&tx.signature_hash());
        let raw = TxEnvelope::from(tx.into_signed(sig)).encoded_2718();
        chain.pool().add(validate_tx(&raw, &chain.validation_context()).unwrap(), 0).unwrap();
    }

    /// Block 1's in-turn and out-of-turn signers.
    fn turns(chain: &Blockchain) -> (SigningKey, SigningKey) {
        let (a, b) = (key(0xa1), key(0xb2));
        if chain.head().snapshot.in_turn(1, &a.address()) {
            (a, b)
        } else {
            (b, a)
        }
    }

    /// Three fresh chains of the same genesis in `dir` (a sealer and two importers), the sealer's
    /// block-1 in-turn key, and the genesis time.
    fn sealer_and_two_importers(dir: &std::path::Path) -> ([Blockchain; 3], SigningKey, u64) {
        let t0 = crate::blockchain::unix_now() - 100;
        let chains = [open(dir, "x", t0), open(dir, "y", t0), open(dir, "z", t0)];
        let (in_turn, _) = turns(&chains[0]);
        (chains, in_turn, t0)
    }

    /// The state history window: with a window of 4 (pruned every 4 blocks), the state after
    /// block `head - 4` is always readable and equals that block's root (at the limit), and so is
    /// `head - 3` (under); the oldest state kept is the prune's floor, the one below it is
    /// refused (over); the undo rows of the blocks above the floor, and only those, are kept.
    #[test]
    fn the_state_history_keeps_its_window_and_refuses_what_is_below_the_floor() {
        use crate::state::StateError;
        let dir = tempfile::tempdir().unwrap();
        let t0 = crate::blockchain::unix_now() - 100;
        let chain = open_keeping(dir.path(), "x", t0, 4);
        let db = rusqlite::Connection::open(dir.path().join("x").join("chain.sqlite")).unwrap();
        let mut roots = vec![chain.head().header.state_root];
        let signers = [key(0xa1), key(0xb2)];
        for n in 1..=13u64 {
            add_transfer(&chain, n - 1);
            let block = chain.seal_next(&signers[n as usize % 2], t0 + n, None).unwrap().unwrap();
            assert_eq!(block.block.header.number, n);
            roots.push(block.block.header.state_root);
            // Pruned at multiples of 4 past the window: the floor is 4 below the last of them.
            let floor = match n - n % 4 {
                m if m > 4 => m - 4,
                _ => 0,
            };
            let oldest: Option<i64> =
                db.query_row("SELECT MIN(block) FROM account_history", [], |r| r.get(0)).unwrap();
            assert_eq!(oldest, Some(floor as i64 + 1), "after block {n}");
            let snapshots = |sql: &str| -> i64 { db.query_row(sql, [floor as i64], |r| r.get(0)).unwrap() };
            assert_eq!(snapshots("SELECT COUNT(*) FROM snapshots WHERE number > 0 AND number < ?1"), 0);
            assert_eq!(
                snapshots("SELECT COUNT(*) FROM snapshots WHERE number >= MAX(?1, 1)"),
                (n - floor.max(1) + 1) as i64,
                "after block {n}"
            );
            for at in [n.saturating_sub(3), n.saturating_sub(4), floor] {
                let mut state = chain.state_at(at).unwrap();
                assert_eq!(state.state_root(), roots[at as usize], "state after {at}, head {n}");
            }
            if let Some(below) = floor.checked_sub(1) {
                assert!(
                    matches!(chain.state_at(below), Err(StateError::Pruned(b)) if b == below),
                    "head {n}"
                );
            }
        }
    }

    /// The history is indexed by key only when the store keeps more than
    /// `INDEX_HISTORY_ABOVE` blocks of it or all of it (under and at the bound: not indexed; over
    /// and archive: indexed), and the index follows the option when a directory is reopened: an
    /// archive directory reopened with a window drops it, and reopened as archive again builds it
    /// over the rows already there.
    #[test]
    fn the_history_is_indexed_by_key_only_over_the_bound_and_on_archive_nodes() {
        use crate::storage::{history_indexed, INDEX_HISTORY_ABOVE};
        let dir = tempfile::tempdir().unwrap();
        let t0 = crate::blockchain::unix_now() - 100;
        let cases = [
            (Some(INDEX_HISTORY_ABOVE - 1), false),
            (Some(INDEX_HISTORY_ABOVE), false),
            (Some(INDEX_HISTORY_ABOVE + 1), true),
            (None, true),
        ];
        for (i, (history, indexed)) in cases.into_iter().enumerate() {
            let chain = open_with_history(dir.path(), &format!("c{i}"), t0, history);
            drop(chain);
            let db =
                rusqlite::Connection::open(dir.path().join(format!("c{i}")).join("chain.sqlite")).unwrap();
            assert_eq!(history_indexed(&db).unwrap(), indexed, "history {history:?}");
        }
        let signers = [key(0xa1), key(0xb2)];
        let chain = open_with_history(dir.path(), "r", t0, None);
        for n in 1..=3u64 {
            add_transfer(&chain, n - 1);
            chain.seal_next(&signers[n as usize % 2], t0 + n, None).unwrap().unwrap();
        }
        drop(chain);
        let indexed = || {
            let db = rusqlite::Connection::open(dir.path().join("r").join("chain.sqlite")).unwrap();
            history_indexed(&db).unwrap()
        };
        assert!(indexed());
        drop(open_with_history(dir.path(), "r", t0, Some(128)));
        assert!(!indexed(), "reopened with a 128-block window");
        let chain = open_with_history(dir.path(), "r", t0, None);
        assert!(indexed(), "reopened as archive");
        let state = crate::storage::HistoricalState::open(chain.reads(), 0).unwrap();
        use crate::state::StateReader;
        assert_eq!(state.account(&Address::repeat_byte(9)).unwrap(), None, "before block 1");
        assert_eq!(state.lookups(), 1, "one index seek over the 3 blocks of rows built on reopen");
    }

    /// An archive node keeps the Clique snapshots of its last `SNAPSHOT_WINDOW` blocks (and every
    /// 1024th), not one per block for ever, and an older snapshot is rebuilt equal to the one
    /// sealing made; a directory whose snapshots were all kept is pruned when opened as archive.
    #[test]
    fn an_archive_node_keeps_the_snapshots_of_a_window_and_rebuilds_older_ones() {
        use crate::storage::SNAPSHOT_WINDOW;
        let dir = tempfile::tempdir().unwrap();
        let t0 = crate::blockchain::unix_now() - 1_000;
        let signers = [key(0xa1), key(0xb2)];
        let count = |name: &str, sql: &str| -> i64 {
            let db = rusqlite::Connection::open(dir.path().join(name).join("chain.sqlite")).unwrap();
            db.query_row(sql, [], |r| r.get(0)).unwrap()
        };
        let head = SNAPSHOT_WINDOW + 72;
        let archive = open_with_history(dir.path(), "a", t0, None);
        let mut sealed = Vec::new();
        for n in 1..=head {
            archive.seal_next(&signers[n as usize % 2], t0 + n, None).unwrap().unwrap();
            sealed.push((archive.head().hash, archive.head().snapshot.clone()));
        }
        // Pruned at the last multiple of 32 past the window: the floor is the window below it.
        let floor = (head - head % 32 - SNAPSHOT_WINDOW) as i64;
        assert_eq!(
            count("a", &format!("SELECT COUNT(*) FROM snapshots WHERE number > 0 AND number < {floor}")),
            0
        );
        assert_eq!(count("a", "SELECT COUNT(*) FROM snapshots WHERE number = 0"), 1, "the 1024th kept");
        assert_eq!(
            count("a", &format!("SELECT COUNT(*) FROM snapshots WHERE number >= {floor}")),
            head as i64 - floor + 1
        );
        for (hash, snapshot) in [&sealed[0], &sealed[floor as usize - 2], &sealed[floor as usize - 1]] {
            let rebuilt = crate::consensus::clique::snapshot_after(archive.reads(), *hash).unwrap();
            assert_eq!(&rebuilt, snapshot, "block {}", snapshot.number);
        }
        drop(archive);
        // A directory that kept every snapshot (a window longer than the chain), opened as archive.
        let window = open_keeping(dir.path(), "w", t0, 1_000);
        for n in 1..=head {
            window.seal_next(&signers[n as usize % 2], t0 + n, None).unwrap().unwrap();
        }
        drop(window);
        assert_eq!(count("w", "SELECT COUNT(*) FROM snapshots"), head as i64 + 1);
        // Pruned in batches, one transaction each: 72 blocks below the window, 30 per batch.
        let mut db = rusqlite::Connection::open(dir.path().join("w").join("chain.sqlite")).unwrap();
        let commits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = commits.clone();
        db.commit_hook(Some(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            false
        }))
        .unwrap();
        crate::storage::prune_archive_snapshots(&db, 30).unwrap();
        assert_eq!(commits.load(std::sync::atomic::Ordering::Relaxed), 3, "0..30, 30..60, 60..72");
        crate::storage::prune_archive_snapshots(&db, 30).unwrap();
        assert_eq!(commits.load(std::sync::atomic::Ordering::Relaxed), 3, "a no-op once pruned");
        drop(db);
        drop(open_with_history(dir.path(), "w", t0, None));
        let kept_from = (head - SNAPSHOT_WINDOW) as i64;
        assert_eq!(
            count("w", &format!("SELECT COUNT(*) FROM snapshots WHERE number > 0 AND number < {kept_from}")),
            0
        );
        assert_eq!(count("w", "SELECT COUNT(*) FROM snapshots"), head as i64 - kept_from + 2);
    }

    /// A read at an older block on an archive node (history indexed by key) costs one lookup per
    /// account or slot however far back it is, against one per later block on a node keeping a
    /// window; both read the same values at every block, for accounts and a slot changed in
    /// every block, changed once, and never.
    #[test]
    fn an_archive_read_at_an_old_block_is_one_lookup_per_key_and_reads_what_the_window_reads() {
        use crate::state::StateReader;
        use crate::storage::HistoricalState;
        let dir = tempfile::tempdir().unwrap();
        let t0 = crate::blockchain::unix_now() - 100;
        let signers = [key(0xa1), key(0xb2)];
        let archive = open_with_history(dir.path(), "a", t0, None);
        let window = open_with_history(dir.path(), "w", t0, Some(128));
        // Block 1 creates a contract whose every call stores the block number in slot 0; it is
        // called in blocks 2 to 5, then transfers follow to block 24.
        let contract = key(0x51).address().create(0);
        let head = 24u64;
        for n in 1..=head {
            let (to, input) = match n {
                1 => (TxKind::Create, alloy_primitives::hex!("6443600055006000526005601bf3").to_vec()),
                2..=5 => (TxKind::Call(contract), vec![1]),
                _ => (TxKind::Call(Address::repeat_byte(9)), vec![]),
            };
            add_tx(&archive, n - 1, to, &input);
            let block = archive.seal_next(&signers[n as usize % 2], t0 + n, None).unwrap().unwrap();
            window.import(block.block.clone(), None).unwrap();
        }
        let sender = key(0x51).address();
        let untouched = Address::repeat_byte(0x77);
        for n in 0..=head {
            let read = |chain: &Blockchain| {
                let state = HistoricalState::open(chain.reads(), n).unwrap();
                let values = (
                    state.account(&sender).unwrap(),
                    state.account(&contract).unwrap(),
                    state.account(&untouched).unwrap(),
                    state.storage(&contract, &U256::ZERO).unwrap(),
                );
                (values, state.lookups())
            };
            let ((a, c, u, slot), archive_lookups) = read(&archive);
            let (window_values, window_lookups) = read(&window);
            assert_eq!((a, c, u, slot), window_values, "state after block {n}");
            assert_eq!(a.map_or(0, |a| a.nonce), n, "sender nonce after block {n}");
            assert_eq!(u, None);
            assert_eq!(
                slot,
                U256::from(if (2..=5).contains(&n) {
                    n
                } else if n > 5 {
                    5
                } else {
                    0
                }),
                "{n}"
            );
            let back = head - n;
            // Four keys: one seek each when indexed, none at the head.
            assert_eq!(archive_lookups, if back == 0 { 0 } else { 4 }, "archive at block {n}");
            // Unindexed: the untouched account and, after block 5, the slot and the contract look
            // through every later block; the sender changed in the very next block.
            assert!(window_lookups >= back, "window at block {n}: {window_lookups}");
            assert!(window_lookups <= 4 * back, "window at block {n}: {window_lookups}");
        }
    }

    /// A data directory of schema version 7 (undo rows keyed by address and slot first, with an
    /// index by block) is migrated on open to rows keyed by block; every older state reads the
    /// same as before, account by account, slot by slot and whole.
    #[test]
    fn a_version_7_state_history_is_migrated_on_open_and_reads_the_same() {
        use crate::state::StateReader;
        use crate::storage::HistoricalState;
        let dir = tempfile::tempdir().unwrap();
        let t0 = crate::blockchain::unix_now() - 100;
        let signers = [key(0xa1), key(0xb2)];
        // Block 1 creates a contract whose every call stores the block number in slot 0
        // (runtime NUMBER PUSH1 0 SSTORE STOP); blocks 2 to 6 call it.
        let contract = key(0x51).address().create(0);
        let chain = open_keeping(dir.path(), "x", t0, 128);
        for n in 1..=6u64 {
            let (to, input) = match n {
                1 => (TxKind::Create, alloy_primitives::hex!("6443600055006000526005601bf3").to_vec()),
                _ => (TxKind::Call(contract), vec![1]),
            };
            add_tx(&chain, n - 1, to, &input);
            chain.seal_next(&signers[n as usize % 2], t0 + n, None).unwrap().unwrap();
        }
        let read = |chain: &Blockchain| -> Vec<(u64, U256, U256, B256)> {
            (0..=6u64)
                .map(|n| {
                    let state = HistoricalState::open(chain.reads(), n).unwrap();
                    let nonce = state.account(&key(0x51).address()).unwrap().map_or(0, |a| a.nonce);
                    let balance = state.account(&contract).unwrap().map_or(U256::ZERO, |a| a.balance);
                    drop(state);
                    let slot = HistoricalState::open(chain.reads(), n)
                        .unwrap()
                        .storage(&contract, &U256::ZERO)
                        .unwrap();
                    let root = chain.state_at(n).unwrap().state_root();
                    assert_eq!(nonce, n, "sender nonce after block {n}");
                    assert_eq!(slot, U256::from(if n >= 2 { n } else { 0 }), "slot 0 after block {n}");
                    (nonce, balance, slot, root)
                })
                .collect()
        };
        let before = read(&chain);
        drop(chain);
        let db = rusqlite::Connection::open(dir.path().join("x").join("chain.sqlite")).unwrap();
        db.execute_batch(
            "CREATE TABLE ah (address BLOB NOT NULL, block INTEGER NOT NULL, nonce INTEGER, balance BLOB, code_hash BLOB, PRIMARY KEY (address, block)) WITHOUT ROWID;
             INSERT INTO ah SELECT address, block, nonce, balance, code_hash FROM account_history;
             DROP TABLE account_history; ALTER TABLE ah RENAME TO account_history;
             CREATE INDEX account_history_block ON account_history(block);
             CREATE TABLE sh (address BLOB NOT NULL, slot BLOB NOT NULL, block INTEGER NOT NULL, value BLOB NOT NULL, PRIMARY KEY (address, slot, block)) WITHOUT ROWID;
             INSERT INTO sh SELECT address, slot, block, value FROM storage_history;
             DROP TABLE storage_history; ALTER TABLE sh RENAME TO storage_history;
             CREATE INDEX storage_history_block ON storage_history(block);
             UPDATE meta SET value = 7 WHERE key = 'schema_version';",
        )
        .unwrap();
        drop(db);
        let chain = open_keeping(dir.path(), "x", t0, 128);
        assert_eq!(read(&chain), before);
        let db = rusqlite::Connection::open(dir.path().join("x").join("chain.sqlite")).unwrap();
        let version: i64 =
            db.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 8);
        let layout: String = db
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'storage_history'", [], |r| r.get(0))
            .unwrap();
        assert!(layout.contains("PRIMARY KEY (block, address, slot)"), "{layout}");
        let indexes: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name LIKE '%history_block'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0, "the by-block indexes went with the old tables");
        let rows: i64 = db.query_row("SELECT COUNT(*) FROM storage_history", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 5, "one undo row per call of blocks 2 to 6");
    }

    #[test]
    fn the_build_budget_leaves_a_signer_network_three_fifths_of_the_period_and_a_lone_signer_one() {
        use std::time::Duration;
        assert_eq!(super::build_budget(1, 3), Duration::from_millis(400));
        assert_eq!(super::build_budget(1, 2), Duration::from_millis(400));
        assert_eq!(super::build_budget(5, 7), Duration::from_millis(2_000));
        assert_eq!(super::build_budget(1, 1), Duration::from_millis(800));
        assert_eq!(super::build_budget(0, 1), Duration::from_millis(800), "on demand: as at 1 s");
        assert_eq!(super::build_budget(0, 3), Duration::from_millis(400));
    }

    /// A block this node seals goes to the network's subscription before its commit ends: while
    /// another connection holds the database's write lock, the commit waits, the block is not
    /// readable yet, a peer fetching its body gets it from memory and imports it; once the lock
    /// goes, the commit ends and the block is read from the database.
    #[test]
    fn a_sealed_block_is_gossiped_before_its_commit_ends_and_served_meanwhile() {
        use crate::network::protocol::{SyncRequest, SyncResponse};
        use crate::storage::BlockQuery;
        use alloy_rlp::Decodable;
        let dir = tempfile::tempdir().unwrap();
        let ([x, peer, _], in_turn, t0) = sealer_and_two_importers(dir.path());
        add_transfers(&x, 4);
        let x = Arc::new(x);
        let mut sealed = x.subscribe_sealed();
        let blocker = rusqlite::Connection::open(dir.path().join("x").join("chain.sqlite")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let sealer = {
            let x = x.clone();
            std::thread::spawn(move || x.seal_next(&in_turn, t0 + 1, None))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let early = loop {
            match sealed.try_recv() {
                Ok(b) => break b,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("the sealed block was not sent while its commit waited: {e}"),
            }
        };
        assert_eq!(early.block.body.transactions.len(), 4);
        assert!(x.reads().block_by_hash(&early.hash).unwrap().is_none(), "not committed yet");
        assert_eq!(x.head().header.number, 0);
        let SyncResponse::Blocks(served) =
            crate::network::serve::serve(&x, SyncRequest::BlockByHash { hash: early.hash.0 })
        else {
            panic!("no blocks answer")
        };
        assert_eq!(served.len(), 1, "served from memory while the commit waits");
        let block = crate::primitives::Block::decode(&mut served[0].as_slice()).unwrap();
        assert_eq!(peer.import(block, None).unwrap(), early.hash, "a peer imports it meanwhile");
        blocker.execute_batch("ROLLBACK").unwrap();
        let committed = sealer.join().unwrap().unwrap().unwrap();
        assert_eq!(committed.hash, early.hash);
        assert!(x.committing(&early.hash).is_none());
        assert!(x.reads().block_by_hash(&early.hash).unwrap().is_some());
        assert_eq!(x.head().hash, peer.head().hash);
        // Without a subscriber (a node without the network) nothing is kept aside.
        let ([lone, _, _], key, t1) = sealer_and_two_importers(&dir.path().join("lone"));
        add_transfers(&lone, 1);
        let b = lone.seal_next(&key, t1 + 1, None).unwrap().unwrap();
        assert!(lone.committing(&b.hash).is_none());
    }

    #[test]
    fn a_block_imports_alike_whether_its_transactions_wait_in_the_pool_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let ([x, pooled, bare], in_turn, t0) = sealer_and_two_importers(dir.path());
        add_transfers(&x, 4);
        add_transfers(&pooled, 4);
        let block = x.seal_next(&in_turn, t0 + 1, None).unwrap().unwrap();
        assert_eq!(
            pooled
                .pool()
                .get_many(block.block.body.transactions.iter().map(|t| t.tx_hash()))
                .iter()
                .flatten()
                .count(),
            4
        );
        assert_eq!(bare.pool().len(), 0);
        for chain in [&pooled, &bare] {
            assert_eq!(chain.import(block.block.clone(), None).unwrap(), block.hash);
            assert_eq!(chain.head().header.state_root, block.block.header.state_root);
        }
        assert_eq!(pooled.pool().len(), 0, "mined transactions leave the pool");
    }

    #[test]
    fn an_import_recovers_signatures_on_every_core_from_a_threshold() {
        use crate::blockchain::import::{recovery_threads, PARALLEL_RECOVERY_MIN};
        assert_eq!(recovery_threads(PARALLEL_RECOVERY_MIN - 1, 2), 1, "just under: one thread");
        assert_eq!(recovery_threads(PARALLEL_RECOVERY_MIN, 2), 2, "at: every core");
        assert_eq!(recovery_threads(PARALLEL_RECOVERY_MIN + 1, 1), 1, "one core: one thread");
        assert_eq!(recovery_threads(100_000, 64), 8, "at most eight");
    }

    /// A block of 600 transactions none of which the importer's pool holds: the senders are
    /// recovered in parallel chunks and the result is the sealer's; of two bad signatures in
    /// different chunks, the first is named.
    #[test]
    fn a_large_block_of_unpooled_transactions_imports_and_the_first_bad_signature_is_named() {
        use alloy_consensus::Signed;
        use alloy_primitives::Signature;
        let dir = tempfile::tempdir().unwrap();
        let ([x, bare, bad_chain], in_turn, t0) = sealer_and_two_importers(dir.path());
        add_transfers(&x, 600);
        let block = x.seal_next(&in_turn, t0 + 1, None).unwrap().unwrap();
        assert_eq!(block.block.body.transactions.len(), 600);
        assert_eq!(bare.pool().len(), 0);
        let mut bad = block.block.clone();
        // Two bad signatures, one in each half (the chunks of a 2-core machine): the first is named.
        for i in [500, 100] {
            let TxEnvelope::Eip1559(signed) = &bad.body.transactions[i] else { panic!("a 1559 transfer") };
            let broken = Signature::new(U256::ZERO, U256::from(1), false);
            bad.body.transactions[i] = TxEnvelope::Eip1559(Signed::new_unhashed(signed.tx().clone(), broken));
        }
        bad.header.transactions_root =
            alloy_consensus::proofs::calculate_transaction_root(&bad.body.transactions);
        crate::consensus::clique::sign_header(&mut bad.header, &in_turn).unwrap();
        let err = bad_chain.import(bad, None).unwrap_err().to_string();
        assert!(err.contains("transaction 100 ("), "{err}");
        assert_eq!(bad_chain.head().header.number, 0, "nothing imported");
        assert_eq!(bare.import(block.block.clone(), None).unwrap(), block.hash);
        assert_eq!(bare.head().header.state_root, block.block.header.state_root);
    }

    /// `close` is the node's last step: after it no import, reorg or seal writes a block, so the
    /// emptied write-ahead log stays empty and `chain.sqlite` alone holds the head.
    #[test]
    fn a_closed_chain_writes_no_block_and_leaves_the_log_empty() {
        let dir = tempfile::tempdir().unwrap();
        let ([x, y, _], in_turn, t0) = sealer_and_two_importers(dir.path());
        add_transfers(&x, 2);
        let first = x.seal_next(&in_turn, t0 + 1, None).unwrap().unwrap();
        assert_eq!(y.import(first.block.clone(), None).unwrap(), first.hash);
        let (_, out_of_turn) = turns(&x);
        let second = x.seal_next(&out_of_turn, t0 + 2, None).unwrap().unwrap();
        y.close().unwrap();
        y.close().unwrap();
        let wal = dir.path().join("y").join("chain.sqlite-wal");
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0, "the log is emptied");
        assert!(matches!(y.import(second.block.clone(), None), Err(ImportError::Closed)));
        assert!(matches!(y.reorg_to(vec![second.block.clone()], None), Err(ImportError::Closed)));
        add_transfer(&y, 2);
        assert!(y.seal_next(&out_of_turn, t0 + 2, None).unwrap().is_none(), "a closed chain seals nothing");
        assert_eq!(y.head().hash, first.hash);
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0, "and nothing reached the log");
        let db = rusqlite::Connection::open(dir.path().join("y").join("chain.sqlite")).unwrap();
        let head: i64 = db.query_row("SELECT MAX(number) FROM canonical", [], |r| r.get(0)).unwrap();
        assert_eq!(head, 1, "the file alone holds the head");
    }

    /// A look-up by transaction hash reads the index, then the canonical block at that height,
    /// then the row at that index; a reorganisation between them can leave the index pointing at
    /// another transaction's place. Simulated with a stale index row: the answer is "not found",
    /// never the other transaction.
    #[test]
    fn a_lookup_by_hash_never_answers_with_another_transaction_at_the_indexed_place() {
        use crate::storage::BlockQuery;
        let dir = tempfile::tempdir().unwrap();
        let ([x, _, _], in_turn, t0) = sealer_and_two_importers(dir.path());
        add_transfers(&x, 2);
        let block = x.seal_next(&in_turn, t0 + 1, None).unwrap().unwrap();
        let [first, second] = [0, 1].map(|i| *block.block.body.transactions[i].tx_hash());
        let reads = x.reads();
        assert_eq!(reads.canonical_tx(&first).unwrap().map(|t| t.index), Some(0));
        assert_eq!(reads.block_of_tx(&first).unwrap().map(|(_, i)| i), Some(0));
        let db = rusqlite::Connection::open(dir.path().join("x").join("chain.sqlite")).unwrap();
        db.execute("UPDATE tx_index SET idx = 1 WHERE hash = ?1", [first.as_slice()]).unwrap();
        assert!(reads.canonical_tx(&first).unwrap().is_none(), "not the transaction at index 1");
        assert!(reads.block_of_tx(&first).unwrap().is_none(), "nor its block and index");
        assert_eq!(reads.canonical_tx(&second).unwrap().map(|t| *t.tx.tx_hash()), Some(second));
    }

    #[test]
    fn a_sealer_that_waited_for_the_lock_seals_nothing_on_a_parent_that_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = crate::blockchain::unix_now() - 100;
        let chain = open(dir.path(), "x", t0);
        add_transfers(&chain, 3);
        let (in_turn, _) = turns(&chain);
        let genesis = chain.head().hash;
        assert!(chain.seal_on(Some(B256::repeat_byte(7)), &in_turn, t0 + 1, None).unwrap().is_none());
        assert_eq!(chain.head().hash, genesis, "nothing sealed");
        assert_eq!(chain.pool().len(), 3, "the pool is untouched");
        let block = chain.seal_on(Some(genesis), &in_turn, t0 + 1, None).unwrap().expect("on its parent");
        assert_eq!(block.block.body.transactions.len(), 3);
    }

    fn sealer(block: &crate::primitives::Block) -> Address {
        crate::consensus::clique::recover_sealer(&block.header).unwrap_or(Address::ZERO)
    }

    #[test]
    fn an_out_of_turn_seal_yields_to_an_arriving_block_and_an_in_turn_seal_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = crate::blockchain::unix_now() - 100;
        let (x, y, z) = (open(dir.path(), "x", t0), open(dir.path(), "y", t0), open(dir.path(), "z", t0));
        let (in_turn, out_of_turn) = turns(&x);
        add_transfers(&x, 2);
        let arriving = x.seal_next(&in_turn, t0 + 1, None).unwrap().unwrap().block;
        for chain in [&y, &z] {
            add_transfers(chain, 2);
        }
        let genesis = y.head().hash;
        // While the in-turn block arrives (announced before its import takes the lock), the
        // out-of-turn signer's block at its height is abandoned: nothing committed, pool kept.
        {
            let _marked =
                y.announce_arriving(&arriving, sealer(&arriving)).expect("a signer's block on our head");
            assert!(y.seal_on(Some(genesis), &out_of_turn, t0 + 2, None).unwrap().is_none());
            assert_eq!(y.head().hash, genesis);
            assert_eq!(y.pool().len(), 2);
            // The in-turn signer keeps its block (it outweighs the arriving one, whoever sealed it).
            assert!(y.seal_on(Some(genesis), &in_turn, t0 + 1, None).unwrap().is_some());
        }
        assert!(!y.is_arriving(1), "the mark goes with the import");
        // Without an arriving block, the out-of-turn signer seals.
        assert!(z.seal_on(Some(genesis), &out_of_turn, t0 + 2, None).unwrap().is_some());
        // Blocks that are not a signer's on our head are not announced: one on another parent, a
        // forged seal.
        assert!(z.announce_arriving(&arriving, sealer(&arriving)).is_none(), "z's head moved on");
        let fresh = open(dir.path(), "w", t0);
        assert!(
            fresh.announce_arriving(&arriving, sealer(&arriving)).is_some(),
            "the control: the true block is announced"
        );
        let mut forged = arriving.clone();
        let mut extra = forged.header.extra_data.to_vec();
        let at = extra.len() - 33; // a byte of the seal's s
        extra[at] ^= 1;
        forged.header.extra_data = extra.into();
        assert!(fresh.announce_arriving(&forged, sealer(&forged)).is_none(), "a seal that is no signer's");
        assert!(
            fresh.announce_arriving(&arriving, Address::repeat_byte(9)).is_none(),
            "a sealer that is not a signer"
        );
        // A signer's valid seal on invalid contents (a transaction left out of the body): the
        // import fails and the mark goes with it, so the block stops no sealer beyond its import.
        let mut bad = arriving.clone();
        bad.body.transactions.pop();
        let err = fresh.import_gossiped(bad, None, sealer(&arriving)).unwrap_err();
        assert!(matches!(err, crate::blockchain::ImportError::Invalid { .. }), "{err}");
        assert!(!fresh.is_arriving(1), "the mark ends with a failed import");
        assert!(fresh.seal_on(None, &out_of_turn, t0 + 2, None).unwrap().is_some(), "and the height is open");
    }
}
