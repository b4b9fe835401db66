//! The market keeper: opens upcoming market slots ahead of their orders and, with
//! `--keeper-settle`, clears and settles every slot ([`settle`]).
//!
//! `EnergyMarket.openSlot(slot)` snapshots a slot's grid prices and creates its price-level
//! words, so that no order in the slot has to create storage (an order costs about 47k gas).
//! It is the only way a slot opens: an order for a slot that is not open reverts with
//! `SlotNotOpen` (issue 14; orders used to open slots, which let any account freeze the prices
//! of future slots), so without a keeper nobody trades. `openSlot` is operator-only and must
//! come before the slot's gate closure, on a slot not yet open.
//!
//! The keeper is a task inside the node. Every tick (one second, or the block period if longer)
//! it looks at the next [`DEFAULT_HORIZON`] slots whose gate closes far enough in the future for
//! a transaction sent now to be sealed in time (the schedule comes from the chain's
//! [`MarketDeployment`]: start time, slot length, gate closure). For each one it first runs
//! `openSlot(slot)` from the keeper's address against the head state, as `eth_call` would, at
//! the timestamp the next block can have; only when that call succeeds does it sign an `openSlot`
//! transaction (EIP-1559, zero fees, gas limit from the simulated gas with headroom, within the
//! EIP-7825 cap and the block gas limit) and add it to the node's own pool, the path
//! `eth_sendRawTransaction` takes, from where it is sealed or relayed to peers like any other.
//! A slot another operator already opened is skipped, so the keeper does not
//! produce reverting transactions; a slot whose transaction is still waiting in the pool is not
//! sent again; a transaction that left the pool without being included is sent again.
//!
//! While the head lags the clock by more than three block periods and 10 s (a node still
//! syncing, a stalled network) the keeper waits. Errors (a key that is not an operator, a refused
//! transaction, a state read failure) are logged and retried on the next tick; the keeper never stops the node. The key is never
//! logged, only its address.
//!
//! `p2pe-node dev` runs a keeper by default with the key at mnemonic index [`DEV_KEEPER_INDEX`]
//! (an operator in the dev genesis), `--no-keeper` turns it off; `p2pe-node run` runs one when
//! given `--keeper-keystore`, with a key that must be a registry operator. Run one keeper per
//! network: two keepers race and one of them produces reverting `openSlot` transactions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, B256};
use alloy_sol_types::{SolCall, SolInterface};
use p2pe_bindings::energy_market::EnergyMarket;
use p2pe_bindings::registry::Registry;
use revm::context::TxEnv;
use revm::context_interface::result::ExecutionResult;
use revm::ExecuteEvm;

use crate::blockchain::{block_input_for_signer, unix_now, Blockchain};
use crate::chain::{MarketDeployment, TX_GAS_LIMIT_CAP};
use crate::crypto::SigningKey;
use crate::execution::{block_env, EvmConfig, EvmMode};
use crate::state::StateOverlay;
use crate::txpool::validate_tx;

pub mod settle;

/// How many upcoming slots (whose gate is still open) the keeper keeps opened.
pub const DEFAULT_HORIZON: u64 = 4;

/// With short slots the keeper opens more than [`DEFAULT_HORIZON`] slots: every slot that starts
/// within this many seconds (twice the dApp's 45-second margin for a wallet prompt, with room).
pub const MIN_LEAD_SECS: u64 = 120;

/// The market's `SLOT_RING`: slot `k + SLOT_RING` reuses the order-book words of slot `k`, so
/// `openSlot` refuses it (`LevelWordsInUse`) while slot `k` still takes orders. The keeper keeps
/// fewer slots than that opened, whatever the slot length.
pub const SLOT_RING: u64 = 128;
const _: () = assert!(DEFAULT_HORIZON < SLOT_RING && MIN_LEAD_SECS < SLOT_RING);

/// Mnemonic index of the dev chain's keeper key (`m/44'/60'/0'/0/97`).
pub const DEV_KEEPER_INDEX: u32 = 97;

/// Why a keeper step failed.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// The keeper's address is not a registry operator.
    #[error("the keeper {0} is not a registry operator: openSlot would revert with NotOperator")]
    NotOperator(Address),
    /// Running a call against the head state failed.
    #[error("simulating {what}: {reason}")]
    Simulation {
        /// The call.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// The pool refused the transaction.
    #[error("submitting {job}: {reason}")]
    Submit {
        /// What the transaction does.
        job: Job,
        /// The refusal.
        reason: String,
    },
}

/// The outcome of running a call against the head state.
enum Simulated {
    /// Succeeded, with its output and gas used.
    Success { output: Bytes, gas_used: u64 },
    /// Reverted with this output.
    Revert(Bytes),
    /// Halted (out of gas, invalid opcode…).
    Halt(String),
}

/// What a keeper transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Job {
    /// `openSlot(slot)`.
    Open(u64),
    /// `clear(slot)`.
    Clear(u64),
    /// `settle(slot, part)`: part `part` of the slot's participant list.
    Settle(u64, usize),
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Open(slot) => write!(f, "openSlot({slot})"),
            Job::Clear(slot) => write!(f, "clear({slot})"),
            Job::Settle(slot, part) => write!(f, "settle({slot}, part {part})"),
        }
    }
}

/// A keeper transaction waiting in the pool.
#[derive(Debug, Clone, Copy)]
struct Pending {
    hash: B256,
    nonce: u64,
}

/// The keeper's state: its chain, schedule, key and the transactions it sent.
pub struct Keeper {
    chain: Arc<Blockchain>,
    market: MarketDeployment,
    key: SigningKey,
    horizon: u64,
    pending: BTreeMap<Job, Pending>,
    /// Clearing and settling ([`Keeper::settling`]), when on.
    settler: Option<settle::Settler>,
}

impl Keeper {
    /// A keeper for `market` on `chain`, signing with `key`, keeping `horizon` slots opened.
    pub fn new(chain: Arc<Blockchain>, market: MarketDeployment, key: SigningKey, horizon: u64) -> Self {
        Self { chain, market, key, horizon: horizon.max(1), pending: BTreeMap::new(), settler: None }
    }

    /// Also clears every slot after its gate closure and settles it once its settlement opens
    /// (see [`settle`]); off by default.
    pub fn settling(mut self, on: bool) -> Self {
        self.settler = on.then(settle::Settler::default);
        self
    }

    /// Whether the keeper also clears and settles slots.
    pub fn is_settling(&self) -> bool {
        self.settler.is_some()
    }

    /// The keeper's address.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// Whether the keeper's address is a registry operator in the head state.
    pub fn is_operator(&self) -> Result<bool, KeeperError> {
        let call = Registry::isOperatorCall { account: self.address() };
        self.view_registry(call, self.chain.head().header.timestamp)
    }

    /// Runs the view `call` of `to` on the head state in a block at `timestamp` and decodes it.
    fn view_at<C: SolCall>(&self, to: Address, call: C, timestamp: u64) -> Result<C::Return, KeeperError> {
        let what = || C::SIGNATURE.to_string();
        match self.simulate(to, call.abi_encode(), timestamp)? {
            Simulated::Success { output, .. } => C::abi_decode_returns(&output)
                .map_err(|e| KeeperError::Simulation { what: what(), reason: e.to_string() }),
            Simulated::Revert(out) => {
                Err(KeeperError::Simulation { what: what(), reason: format!("reverted: {out}") })
            }
            Simulated::Halt(reason) => Err(KeeperError::Simulation { what: what(), reason }),
        }
    }

    /// [`Self::view_at`] of the market.
    fn view<C: SolCall>(&self, call: C, timestamp: u64) -> Result<C::Return, KeeperError> {
        self.view_at(self.market.market, call, timestamp)
    }

    /// [`Self::view_at`] of the registry.
    fn view_registry<C: SolCall>(&self, call: C, timestamp: u64) -> Result<C::Return, KeeperError> {
        self.view_at(self.market.registry, call, timestamp)
    }

    /// Unix time of `slot`'s gate closure.
    fn gate_closure_time(&self, slot: u64) -> u64 {
        let start = self.market.start_time + slot * self.market.slot_length as u64;
        start.saturating_sub(self.market.gate_closure as u64)
    }

    /// The slots to keep opened when the next block can be sealed at `next_ts`: those whose gate
    /// closes after `next_ts + margin`, the first [`Self::horizon`] of them, or more with short
    /// slots, so that every slot starting within [`MIN_LEAD_SECS`] is open. A trader must be able
    /// to pick a slot whose gate is further away than a wallet prompt takes (the dApp's default
    /// needs 45 s), which four 10-second slots are not.
    fn upcoming(&self, next_ts: u64, margin: u64) -> std::ops::Range<u64> {
        let len = (self.market.slot_length as u64).max(1);
        let count = self.horizon.max(MIN_LEAD_SECS.div_ceil(len));
        // gate(s) > t  ⇔  start + s·len > t + gate  ⇔  s > (t + gate − start) / len.
        let x = next_ts + margin + self.market.gate_closure as u64;
        let first = if x < self.market.start_time { 0 } else { (x - self.market.start_time) / len + 1 };
        debug_assert!(self.gate_closure_time(first) > next_ts + margin);
        first..first + count
    }

    /// Runs `data` against `to` from the keeper's address on the head state, in a block at
    /// `timestamp`, without committing anything (an `eth_call`).
    fn simulate(&self, to: Address, data: Vec<u8>, timestamp: u64) -> Result<Simulated, KeeperError> {
        let head = self.chain.head();
        let mut input = block_input_for_signer(&head.header, Address::ZERO);
        input.number += 1;
        input.timestamp = timestamp;
        let gas = head.header.gas_limit.min(TX_GAS_LIMIT_CAP);
        let tx = TxEnv {
            tx_type: 2,
            caller: self.address(),
            gas_limit: gas,
            gas_price: 0,
            gas_priority_fee: Some(0),
            kind: TxKind::Call(to),
            data: data.into(),
            nonce: 0,
            chain_id: Some(self.chain.spec().chain_id),
            ..Default::default()
        };
        let hashes = self.chain.block_hashes();
        let simulation = |reason: String| KeeperError::Simulation { what: format!("call to {to}"), reason };
        let result = self
            .chain
            .with_head_state(|state| {
                let overlay = StateOverlay::new(state, &hashes);
                let config = EvmConfig::new(self.chain.spec().chain_id);
                let mut evm = config.evm(overlay, block_env(&input), EvmMode::Call);
                evm.transact(tx).map(|r| r.result).map_err(|e| e.to_string())
            })
            .map_err(|e| simulation(e.to_string()))?
            .map_err(simulation)?;
        let gas_used = result.tx_gas_used();
        Ok(match result {
            ExecutionResult::Success { output, .. } => {
                Simulated::Success { output: output.into_data(), gas_used }
            }
            ExecutionResult::Revert { output, .. } => Simulated::Revert(output),
            ExecutionResult::Halt { reason, .. } => Simulated::Halt(format!("{reason:?}")),
        })
    }

    /// One round: opens every upcoming slot that is not open and has no `openSlot` waiting, then
    /// (when settling) clears and settles the slots that are due. Returns the transactions sent.
    pub fn tick(&mut self) -> Result<Vec<Job>, KeeperError> {
        let head = self.chain.head();
        let period = self.chain.spec().clique.period;
        let now = unix_now();
        // A head far behind the clock (a node still syncing, or a stalled network) does not say
        // which slots are open: wait for the chain to catch up rather than send openSlot
        // transactions that blocks not imported yet may already have made revert.
        let age = now.saturating_sub(head.header.timestamp);
        if period > 0 && age > 3 * period + 10 {
            tracing::debug!(head = head.header.number, age, "keeper: the head is behind the clock; waiting");
            return Ok(Vec::new());
        }
        let next_ts = now.max(head.header.timestamp + period);
        self.forget_done();
        let mut sent = self.open_upcoming(next_ts, period)?;
        if self.settler.is_some() {
            sent.extend(self.clear_and_settle(next_ts)?);
        }
        Ok(sent)
    }

    /// Forgets transactions that were included (the state now tells what they did) or that left
    /// the pool without being included (their job is done again).
    fn forget_done(&mut self) {
        let account_nonce = self.chain.account_nonce(&self.address());
        let pool = self.chain.pool().clone();
        self.pending.retain(|job, p| {
            if p.nonce < account_nonce {
                return false;
            }
            let waiting = pool.get(&p.hash).is_some();
            if !waiting {
                tracing::debug!(%job, tx = %p.hash, "keeper: a transaction left the pool without being included; doing it again");
            }
            waiting
        });
    }

    /// Opens the upcoming slots that are not open and have no `openSlot` waiting.
    fn open_upcoming(&mut self, next_ts: u64, period: u64) -> Result<Vec<Job>, KeeperError> {
        // Room for the transaction to wait for a block (and a slow block) before the gate.
        let margin = 2 * period.max(1) + 1;
        let slots = self.upcoming(next_ts, margin);
        let me = self.address();
        self.pending.retain(|job, _| !matches!(job, Job::Open(slot) if *slot < slots.start));
        let mut sent = Vec::new();
        for slot in slots {
            if self.pending.contains_key(&Job::Open(slot)) {
                continue;
            }
            let call = EnergyMarket::openSlotCall { slot };
            let gas_used = match self.simulate(self.market.market, call.abi_encode(), next_ts)? {
                Simulated::Success { gas_used, .. } => gas_used,
                Simulated::Revert(out) => {
                    match EnergyMarket::EnergyMarketErrors::abi_decode(&out) {
                        Ok(EnergyMarket::EnergyMarketErrors::SlotAlreadyOpen(_)) => {}
                        Ok(EnergyMarket::EnergyMarketErrors::GateClosed(_)) => {}
                        Ok(EnergyMarket::EnergyMarketErrors::NotOperator(_)) => {
                            return Err(KeeperError::NotOperator(me))
                        }
                        Ok(other) => {
                            tracing::warn!(slot, error = ?other, "keeper: openSlot would revert; not sent")
                        }
                        Err(_) => {
                            tracing::warn!(slot, output = %out, "keeper: openSlot would revert; not sent")
                        }
                    }
                    continue;
                }
                Simulated::Halt(reason) => {
                    tracing::warn!(slot, %reason, "keeper: openSlot would halt; not sent");
                    continue;
                }
            };
            self.submit(Job::Open(slot), call.abi_encode(), gas_used)?;
            sent.push(Job::Open(slot));
        }
        Ok(sent)
    }

    /// Signs a call of the market for `job` and adds it to the pool as `eth_sendRawTransaction`
    /// does; remembers it as pending.
    fn submit(&mut self, job: Job, data: Vec<u8>, gas_used: u64) -> Result<(), KeeperError> {
        let fail = |reason: String| KeeperError::Submit { job, reason };
        let me = self.address();
        let block_gas_limit = self.chain.head().header.gas_limit;
        let gas_limit = (gas_used + gas_used / 4 + 50_000).min(TX_GAS_LIMIT_CAP).min(block_gas_limit);
        let account_nonce = self.chain.account_nonce(&me);
        let nonce = self.chain.pool().pending_nonce(&me, account_nonce);
        let tx = TxEip1559 {
            chain_id: self.chain.spec().chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas: 0,
            max_priority_fee_per_gas: 0,
            to: TxKind::Call(self.market.market),
            value: Default::default(),
            access_list: Default::default(),
            input: data.into(),
        };
        let sig = self.key.sign_hash(&tx.signature_hash());
        let raw = TxEnvelope::from(tx.into_signed(sig)).encoded_2718();
        let recovered =
            validate_tx(&raw, &self.chain.validation_context()).map_err(|e| fail(e.to_string()))?;
        let hash = self.chain.pool().add(recovered, account_nonce).map_err(|e| fail(e.to_string()))?;
        tracing::info!(%job, tx = %hash, nonce, gas_limit, "keeper: transaction sent");
        self.pending.insert(job, Pending { hash, nonce });
        Ok(())
    }
}

/// Runs the keeper until `shutdown` fires. Never returns an error: failures are logged and the
/// next tick tries again.
pub async fn run(mut keeper: Keeper, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let period = keeper.chain.spec().clique.period;
    let tick = Duration::from_secs(period.max(1));
    let address = keeper.address();
    tracing::info!(keeper = %address, horizon = keeper.horizon, settles = keeper.is_settling(), "market keeper started");
    let mut last_error: Option<String> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        // The simulation executes a few million gas: off the async threads.
        let chain = keeper.chain.clone();
        let market = keeper.market.clone();
        let key = keeper.key.clone();
        let horizon = keeper.horizon;
        let settling = keeper.is_settling();
        let outcome = tokio::task::spawn_blocking(move || {
            let r = keeper.tick();
            (keeper, r)
        })
        .await;
        match outcome {
            Ok((k, result)) => {
                keeper = k;
                match result {
                    Ok(_) => last_error = None,
                    Err(e) => {
                        // Log a repeated error once, at warn, then at debug until it changes.
                        let msg = e.to_string();
                        if last_error.as_deref() == Some(msg.as_str()) {
                            tracing::debug!(error = %msg, "keeper: retrying next tick");
                        } else {
                            tracing::warn!(error = %msg, "keeper: retrying next tick");
                        }
                        last_error = Some(msg);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "keeper: tick failed; starting over");
                keeper = Keeper::new(chain, market, key, horizon).settling(settling);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {},
            _ = shutdown.changed() => return,
        }
    }
}
