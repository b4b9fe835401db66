//! The keeper's second duty (`--keeper-settle`): clearing every slot after its gate closure and
//! settling it once its settlement opens, so that a network without any other settler (a lab
//! network without the simulator) still settles every position and every metered account, and
//! no position runs into the market's settlement window (after 4,096 slots an unsettled position
//! expires and its escrow is forfeited).
//!
//! - **Clear.** Each slot whose gate has closed is cleared (`clear(slot)`, anyone may), after the
//!   call succeeded against the head state in the next block's environment. A slot never opened
//!   (`NothingToClear`) or already cleared (`AlreadyCleared`) is passed over.
//! - **Settle.** From `settlementOpensAt(slot)`, the slot is settled for every account that ever
//!   had a meter (the registry's `meteredAccounts`: grid-only settlement of those without orders)
//!   and every account with an order in the slot (the market's `OrderPlaced` logs, read
//!   incrementally from the node's log index), in parts of [`SETTLE_PART`] accounts so each
//!   transaction's gas stays bounded. Accounts already settled, by anyone, are skipped by the
//!   market at a small cost, so a second settler does no harm. A slot is settled once its clearing
//!   is in; a slot not cleared yet is cleared first; a slot never opened has nothing to settle.
//!
//! A keeper that starts (or restarts) looks back [`LOOKBACK_SLOTS`] slots, the market's window
//! for grid-only settlement. Transactions are sent through the node's own pool as `openSlot` is
//! ([`super::Keeper::submit`]); one left out of the pool is sent again on a later tick.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{Address, U256};
use alloy_sol_types::{SolCall, SolEvent, SolInterface};
use p2pe_bindings::energy_market::EnergyMarket;
use p2pe_bindings::registry::Registry;

use super::{Job, Keeper, KeeperError, Simulated};
use crate::storage::{BlockQuery, LogFilterQuery};

/// Accounts per `settle` transaction: at most about 72,000 gas each (the dearest settlement path),
/// so a part stays far below the 16,777,216-gas transaction cap.
pub const SETTLE_PART: usize = 150;

/// Slots a starting keeper looks back for slots to clear and settle: the market's grid-only
/// settlement window (`POSITION_RING`).
pub const LOOKBACK_SLOTS: u64 = 64;

/// Blocks of `OrderPlaced` logs read per tick at most (a starting keeper catches up over ticks).
const SCAN_BLOCKS: u64 = 5_000;

/// Slots settled per tick at most, so that a tick stays short after a long pause.
const SLOTS_PER_TICK: usize = 8;

/// What the settler remembers between ticks.
#[derive(Debug, Default)]
pub(crate) struct Settler {
    /// The next slot to try to clear.
    next_clear: Option<u64>,
    /// The next slot to settle.
    next_settle: Option<u64>,
    /// The last block whose `OrderPlaced` logs were read.
    scanned_to: Option<u64>,
    /// Accounts with orders, per slot not yet settled.
    orders: BTreeMap<u64, BTreeSet<Address>>,
}

impl Keeper {
    /// Clears the slots whose gate has closed and settles those whose settlement has opened, for
    /// a block at `next_ts`. Returns the transactions sent.
    pub(super) fn clear_and_settle(&mut self, next_ts: u64) -> Result<Vec<Job>, KeeperError> {
        let current = self.market.slot_at(next_ts).unwrap_or(0);
        let first = current.saturating_sub(LOOKBACK_SLOTS);
        let settler = self.settler.get_or_insert_with(Settler::default);
        settler.next_clear.get_or_insert(first);
        settler.next_settle.get_or_insert(first);
        self.scan_orders()?;
        let mut sent = self.clear_closed(next_ts)?;
        sent.extend(self.settle_open(next_ts)?);
        Ok(sent)
    }

    /// Reads the market's new `OrderPlaced` logs (slot, account) from the node's log index.
    fn scan_orders(&mut self) -> Result<(), KeeperError> {
        let head = self.chain.head_number();
        let period = self.chain.spec().clique.period.max(1);
        let settler = self.settler.as_mut().expect("settling");
        let from = match settler.scanned_to {
            Some(done) => done + 1,
            None => {
                // Orders for the oldest slot looked at were placed at most the order horizon
                // before it started.
                let back = LOOKBACK_SLOTS * self.market.slot_length as u64 + self.market.order_horizon as u64;
                head.saturating_sub(back / period + 1).max(1)
            }
        };
        if from > head {
            return Ok(());
        }
        let to = head.min(from + SCAN_BLOCKS - 1);
        let query = LogFilterQuery {
            from,
            to,
            addresses: vec![self.market.market],
            topics: [vec![EnergyMarket::OrderPlaced::SIGNATURE_HASH], vec![], vec![], vec![]],
        };
        let logs = self.chain.reads().logs(&query, usize::MAX).map_err(|e| KeeperError::Simulation {
            what: "reading OrderPlaced logs".into(),
            reason: e.to_string(),
        })?;
        let oldest = settler.next_settle.unwrap_or(0);
        for l in logs {
            let topics = l.log.topics();
            let (Some(slot), Some(account)) = (topics.get(1), topics.get(2)) else { continue };
            let slot = U256::from_be_bytes(slot.0);
            let Ok(slot) = u64::try_from(slot) else { continue };
            if slot >= oldest {
                settler.orders.entry(slot).or_default().insert(Address::from_word(*account));
            }
        }
        settler.scanned_to = Some(to);
        Ok(())
    }

    /// Sends `clear` for every slot whose gate has closed by `next_ts` and that the market can
    /// clear.
    fn clear_closed(&mut self, next_ts: u64) -> Result<Vec<Job>, KeeperError> {
        let mut sent = Vec::new();
        let mut slot = self.settler.as_ref().and_then(|s| s.next_clear).unwrap_or(0);
        while self.market.gate_closes_at(slot) <= next_ts {
            if !self.pending.contains_key(&Job::Clear(slot)) && self.try_clear(slot, next_ts)? {
                sent.push(Job::Clear(slot));
            }
            slot += 1;
        }
        if let Some(s) = self.settler.as_mut() {
            s.next_clear = Some(slot);
        }
        Ok(sent)
    }

    /// Sends `clear(slot)` if it succeeds against the head state; returns whether it was sent.
    fn try_clear(&mut self, slot: u64, next_ts: u64) -> Result<bool, KeeperError> {
        let call = EnergyMarket::clearCall { slot };
        match self.simulate(self.market.market, call.abi_encode(), next_ts)? {
            Simulated::Success { gas_used, .. } => {
                self.submit(Job::Clear(slot), call.abi_encode(), gas_used)?;
                Ok(true)
            }
            Simulated::Revert(out) => {
                use EnergyMarket::EnergyMarketErrors as E;
                match E::abi_decode(&out) {
                    Ok(E::NothingToClear(_) | E::AlreadyCleared(_) | E::GateOpen(_)) => {}
                    Ok(other) => tracing::warn!(slot, error = ?other, "keeper: clear would revert; not sent"),
                    Err(_) => tracing::warn!(slot, output = %out, "keeper: clear would revert; not sent"),
                }
                Ok(false)
            }
            Simulated::Halt(reason) => {
                tracing::warn!(slot, %reason, "keeper: clear would halt; not sent");
                Ok(false)
            }
        }
    }

    /// Settles the slots whose settlement has opened by `next_ts`, in order; stops at a slot whose
    /// clearing or settlement transactions are still waiting.
    fn settle_open(&mut self, next_ts: u64) -> Result<Vec<Job>, KeeperError> {
        let mut sent = Vec::new();
        let mut slot = self.settler.as_ref().and_then(|s| s.next_settle).unwrap_or(0);
        for _ in 0..SLOTS_PER_TICK {
            if self.market.settlement_opens_at(slot) > next_ts || self.waiting_on(slot) {
                break;
            }
            let info = self.view(EnergyMarket::slotInfoCall { slot }, next_ts)?;
            match info.status {
                // Never opened: no orders, and no grid-only settlement without a clearing.
                0 => {}
                // Open past its gate: clear it first, settle on a later tick.
                1 => {
                    if self.try_clear(slot, next_ts)? {
                        sent.push(Job::Clear(slot));
                    }
                    break;
                }
                _ => sent.extend(self.settle_slot(slot, next_ts)?),
            }
            slot += 1;
        }
        if let Some(s) = self.settler.as_mut() {
            s.next_settle = Some(slot);
            s.orders.retain(|k, _| *k >= slot);
        }
        Ok(sent)
    }

    /// Whether a `clear` or `settle` of `slot` is still waiting in the pool.
    fn waiting_on(&self, slot: u64) -> bool {
        self.pending.range(Job::Clear(slot)..=Job::Clear(slot)).next().is_some()
            || self.pending.range(Job::Settle(slot, 0)..=Job::Settle(slot, usize::MAX)).next().is_some()
    }

    /// Sends `settle(slot, part)` for each part of the slot's participants (metered accounts and
    /// accounts with orders in it).
    fn settle_slot(&mut self, slot: u64, next_ts: u64) -> Result<Vec<Job>, KeeperError> {
        let mut accounts = self.metered_accounts(next_ts)?;
        if let Some(s) = self.settler.as_ref() {
            accounts.extend(s.orders.get(&slot).into_iter().flatten().copied());
        }
        let accounts: Vec<Address> = accounts.into_iter().collect();
        let mut sent = Vec::new();
        for (part, chunk) in accounts.chunks(SETTLE_PART).enumerate() {
            let call = EnergyMarket::settleCall { slot, participants: chunk.to_vec() };
            match self.simulate(self.market.market, call.abi_encode(), next_ts)? {
                Simulated::Success { gas_used, .. } => {
                    self.submit(Job::Settle(slot, part), call.abi_encode(), gas_used)?;
                    sent.push(Job::Settle(slot, part));
                }
                Simulated::Revert(out) => {
                    let error = EnergyMarket::EnergyMarketErrors::abi_decode(&out).map(|e| format!("{e:?}"));
                    let error = error.unwrap_or_else(|_| out.to_string());
                    tracing::warn!(slot, part, %error, "keeper: settle would revert; not sent");
                }
                Simulated::Halt(reason) => {
                    tracing::warn!(slot, part, %reason, "keeper: settle would halt; not sent")
                }
            }
        }
        if !accounts.is_empty() {
            tracing::debug!(slot, accounts = accounts.len(), parts = sent.len(), "keeper: settling");
        }
        Ok(sent)
    }

    /// Every account that ever had a meter (the registry's list, read in pages).
    fn metered_accounts(&self, next_ts: u64) -> Result<BTreeSet<Address>, KeeperError> {
        let count = self.view_registry(Registry::meteredAccountCountCall {}, next_ts)?;
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        let mut out = BTreeSet::new();
        let mut offset = 0u64;
        while offset < count {
            let call = Registry::meteredAccountsCall { offset: U256::from(offset), limit: U256::from(500) };
            let page = self.view_registry(call, next_ts)?;
            if page.is_empty() {
                break;
            }
            offset += page.len() as u64;
            out.extend(page);
        }
        Ok(out)
    }
}
