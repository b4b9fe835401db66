//! The market contracts through the bindings: prices and levels, the public book, events of a slot.

use std::sync::Arc;

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolEvent;
use p2pe_bindings::energy_market::EnergyMarket;
use p2pe_bindings::registry::{IRegistry, Registry};
use serde_json::json;

use crate::chain::{Log, Rpc, RpcError};
use crate::clearing::Side;
use crate::node::Contracts;

/// Converts a price or amount that fits in 128 bits.
pub fn u128_of(v: U256) -> u128 {
    u128::try_from(v).unwrap_or(u128::MAX)
}

/// A slot's grid prices and the price grid (credit base units per kWh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prices {
    /// Feed-in tariff (the grid buys).
    pub feed_in: u128,
    /// Retail price (the grid sells).
    pub retail: u128,
    /// Price tick.
    pub tick: u128,
    /// Short imbalance premium over retail (a seller short of what it sold pays retail + this).
    pub short_premium: u128,
    /// Long imbalance penalty (a buyer who used less than it bought gets feed-in less this).
    pub long_penalty: u128,
}

impl Prices {
    /// Highest price level (retail).
    pub fn max_level(&self) -> u32 {
        ((self.retail - self.feed_in) / self.tick) as u32
    }

    /// Price of `level`.
    pub fn price(&self, level: u32) -> u128 {
        self.feed_in + level as u128 * self.tick
    }

    /// Level of `price`, if it is on the grid.
    pub fn level(&self, price: u128) -> Option<u32> {
        if price < self.feed_in || price > self.retail || (price - self.feed_in) % self.tick != 0 {
            return None;
        }
        Some(((price - self.feed_in) / self.tick) as u32)
    }

    /// The first level at or above `price` (the highest level if it lies above retail).
    pub fn level_at_or_above(&self, price: u128) -> u32 {
        let above = price.saturating_sub(self.feed_in);
        (above.div_ceil(self.tick.max(1)).min(u128::from(u32::MAX)) as u32).min(self.max_level())
    }

    /// The level nearest to `alpha` of the way from feed-in to retail.
    pub fn level_for_alpha(&self, alpha: f64) -> u32 {
        (alpha.clamp(0.0, 1.0) * self.max_level() as f64).round() as u32
    }

    /// Where `price` lies between feed-in (0) and retail (1).
    pub fn alpha(&self, price: u128) -> f64 {
        if self.retail == self.feed_in {
            return 0.0;
        }
        (price.saturating_sub(self.feed_in)) as f64 / (self.retail - self.feed_in) as f64
    }

    /// Money (credit base units) of `wh` at `price` per kWh.
    pub fn cost(wh: u64, price: u128) -> u128 {
        wh as u128 * price / 1000
    }
}

/// Credits (1e18 base units) as a float, for reports.
pub fn credits(base_units: i128) -> f64 {
    base_units as f64 / 1e18
}

/// Price per kWh in credits.
pub fn credits_per_kwh(price: u128) -> f64 {
    price as f64 / 1e18
}

/// An order as read back from the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookOrder {
    /// Participant.
    pub account: Address,
    /// Side.
    pub side: Side,
    /// Limit price per kWh.
    pub price: u128,
    /// Energy, Wh.
    pub wh: u64,
}

/// A slot's clearing as emitted on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClearedEvent {
    /// Uniform price (0 when nothing cleared).
    pub price: u128,
    /// Volume, Wh.
    pub volume_wh: u64,
    /// Bid marginal price.
    pub bid_marginal: u128,
    /// Ask marginal price.
    pub ask_marginal: u128,
}

/// One participant's settlement as emitted on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettledEvent {
    /// Participant.
    pub account: Address,
    /// Bought, Wh.
    pub bought_wh: u64,
    /// Sold, Wh.
    pub sold_wh: u64,
    /// Metered import, Wh.
    pub import_wh: u64,
    /// Metered export, Wh.
    pub export_wh: u64,
    /// Credited.
    pub credited: u128,
    /// Debited.
    pub debited: u128,
}

/// Everything the market emitted about one slot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlotEvents {
    /// Orders placed (in chain order).
    pub placed: Vec<(BookOrder, u128)>,
    /// Orders cancelled: account, side, refund.
    pub cancelled: Vec<(Address, Side, u128)>,
    /// The clearing.
    pub cleared: Option<ClearedEvent>,
    /// Settlements.
    pub settled: Vec<SettledEvent>,
    /// Debts incurred during this slot's settlement transactions, by account.
    pub debts: Vec<(Address, u128)>,
    /// Places and cancels in chain order.
    pub ops: Vec<BookOp>,
}

/// A change of the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookOp {
    /// An order was placed.
    Place(BookOrder),
    /// An account's order on a side was cancelled.
    Cancel(Address, Side),
}

impl SlotEvents {
    /// The live book at gate closure: every place and cancel replayed in chain order (at most one
    /// order per account and side).
    pub fn book(&self) -> Vec<BookOrder> {
        let mut live: Vec<BookOrder> = Vec::new();
        for op in &self.ops {
            match op {
                BookOp::Place(o) => {
                    live.retain(|x| !(x.account == o.account && x.side == o.side));
                    live.push(o.clone());
                }
                BookOp::Cancel(a, side) => live.retain(|x| !(x.account == *a && x.side == *side)),
            }
        }
        live
    }
}

fn side_of(v: u8) -> Side {
    if v == 0 {
        Side::Bid
    } else {
        Side::Ask
    }
}

/// The market as the simulator uses it.
pub struct Market {
    /// JSON-RPC client.
    pub rpc: Arc<Rpc>,
    /// Addresses and schedule.
    pub c: Contracts,
}

impl Market {
    /// Grid prices of chain slot `slot` and the tick.
    pub async fn prices(&self, slot: u64) -> Result<Prices, RpcError> {
        let registry = Registry::new(self.c.registry, self.rpc.provider());
        let p = registry.pricesAt(slot).call().await?;
        let tick = registry.priceTick().call().await?;
        let imb = registry.imbalancePrices().call().await?;
        Ok(Prices {
            feed_in: u128_of(p.feedInPerKWh),
            retail: u128_of(p.retailPerKWh),
            tick: u128_of(tick),
            short_premium: u128_of(imb.shortPremiumPerKWh),
            long_penalty: u128_of(imb.longPenaltyPerKWh),
        })
    }

    /// The public book of `slot`: (bid Wh, ask Wh) per level 0..=max_level.
    pub async fn book_levels(&self, slot: u64, prices: &Prices) -> Result<Vec<(u64, u64)>, RpcError> {
        let info = EnergyMarket::new(self.c.market, self.rpc.provider()).slotInfo(slot).call().await?;
        let active = info.activeLevels;
        let levels: Vec<u32> = (0..=prices.max_level()).filter(|l| active.bit(*l as usize)).collect();
        let calls: Vec<(Address, EnergyMarket::levelVolumesCall)> = levels
            .iter()
            .map(|l| (self.c.market, EnergyMarket::levelVolumesCall { slot, level: *l as u8 }))
            .collect();
        let mut out = vec![(0u64, 0u64); prices.max_level() as usize + 1];
        for (l, r) in levels.iter().zip(self.rpc.views(&calls).await?) {
            let r = r?;
            out[*l as usize] = (r.bidWh, r.askWh);
        }
        Ok(out)
    }

    /// All market events about `slot` between blocks `from` and `to`.
    pub async fn slot_events(&self, slot: u64, from: u64, to: u64) -> Result<SlotEvents, RpcError> {
        let sigs = [
            EnergyMarket::OrderPlaced::SIGNATURE_HASH,
            EnergyMarket::OrderCancelled::SIGNATURE_HASH,
            EnergyMarket::SlotCleared::SIGNATURE_HASH,
            EnergyMarket::ParticipantSettled::SIGNATURE_HASH,
        ];
        let topic_slot = B256::from(U256::from(slot));
        let logs = self.rpc.logs(self.c.market, json!([sigs, topic_slot]), from, to).await?;
        let mut ev = parse_slot_events(&logs);
        // Debts carry no slot: take those emitted by the transactions that settled this slot.
        let settle_txs: Vec<B256> = logs
            .iter()
            .filter(|l| l.decode::<EnergyMarket::ParticipantSettled>().is_some())
            .map(|l| l.tx_hash)
            .collect();
        if !settle_txs.is_empty() {
            let debts = self
                .rpc
                .logs(self.c.market, json!([EnergyMarket::DebtIncurred::SIGNATURE_HASH]), from, to)
                .await?;
            for l in debts.iter().filter(|l| settle_txs.contains(&l.tx_hash)) {
                if let Some(d) = l.decode::<EnergyMarket::DebtIncurred>() {
                    ev.debts.push((d.account, u128_of(d.amount)));
                }
            }
        }
        Ok(ev)
    }
}

/// Decodes a slot's market logs (in chain order).
pub fn parse_slot_events(logs: &[Log]) -> SlotEvents {
    let mut logs: Vec<&Log> = logs.iter().collect();
    logs.sort_by_key(|l| (l.block_number, l.log_index));
    let mut ev = SlotEvents::default();
    for l in logs {
        if let Some(e) = l.decode::<EnergyMarket::OrderPlaced>() {
            let o = BookOrder {
                account: e.account,
                side: side_of(e.side),
                price: u128_of(e.pricePerKWh),
                wh: e.energyWh as u64,
            };
            ev.ops.push(BookOp::Place(o.clone()));
            ev.placed.push((o, u128_of(e.locked)));
        } else if let Some(e) = l.decode::<EnergyMarket::OrderCancelled>() {
            ev.ops.push(BookOp::Cancel(e.account, side_of(e.side)));
            ev.cancelled.push((e.account, side_of(e.side), u128_of(e.refunded)));
        } else if let Some(e) = l.decode::<EnergyMarket::SlotCleared>() {
            ev.cleared = Some(ClearedEvent {
                price: u128_of(e.clearingPricePerKWh),
                volume_wh: e.clearedWh,
                bid_marginal: u128_of(e.bidMarginalPricePerKWh),
                ask_marginal: u128_of(e.askMarginalPricePerKWh),
            });
        } else if let Some(e) = l.decode::<EnergyMarket::ParticipantSettled>() {
            ev.settled.push(SettledEvent {
                account: e.account,
                bought_wh: e.boughtWh,
                sold_wh: e.soldWh,
                import_wh: e.importWh,
                export_wh: e.exportWh,
                credited: u128_of(e.credited),
                debited: u128_of(e.debited),
            });
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Prices {
        let milli = 1_000_000_000_000_000u128;
        Prices {
            feed_in: 80 * milli,
            retail: 300 * milli,
            tick: milli,
            short_premium: 50 * milli,
            long_penalty: 50 * milli,
        }
    }

    #[test]
    fn levels_and_prices() {
        let p = p();
        assert_eq!(p.max_level(), 220);
        assert_eq!(p.price(0), p.feed_in);
        assert_eq!(p.price(220), p.retail);
        assert_eq!(p.level(p.price(37)), Some(37));
        assert_eq!(p.level(p.feed_in + 1), None);
        assert_eq!(p.level(p.retail + p.tick), None);
        assert_eq!(p.level_for_alpha(0.5), 110);
        assert!((p.alpha(p.price(55)) - 0.25).abs() < 1e-12);
        assert_eq!(Prices::cost(1500, p.retail), 450_000_000_000_000_000);
    }

    #[test]
    fn book_replays_cancels() {
        let a: Address = Address::repeat_byte(1);
        let b: Address = Address::repeat_byte(2);
        let o = |who, side, price, wh| BookOrder { account: who, side, price, wh };
        let ev = SlotEvents {
            ops: vec![
                BookOp::Place(o(a, Side::Bid, 10, 100)),
                BookOp::Place(o(b, Side::Ask, 5, 50)),
                BookOp::Cancel(a, Side::Bid),
                BookOp::Place(o(a, Side::Bid, 20, 100)),
                BookOp::Cancel(b, Side::Ask),
                BookOp::Place(o(b, Side::Bid, 7, 70)),
            ],
            ..Default::default()
        };
        assert_eq!(ev.book(), vec![o(a, Side::Bid, 20, 100), o(b, Side::Bid, 7, 70)]);
    }
}

/// A PCC limit meaning "none" in the registry (`Registry.NO_CONNECTION_LIMIT`; 0 W is a real limit).
pub const NO_CONNECTION_LIMIT: u32 = u32::MAX;

/// A PCC limit in kW as the registry's watts: none is [`NO_CONNECTION_LIMIT`], a limit is rounded to
/// the watt and kept below it (so that a huge limit never reads as none).
pub fn limit_w(kw: Option<f64>) -> u32 {
    kw.map_or(NO_CONNECTION_LIMIT, |kw| {
        (kw * 1000.0).round().clamp(0.0, (NO_CONNECTION_LIMIT - 1) as f64) as u32
    })
}

/// The microgrid's parameters in the registry (its PCC limits and islanded band).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MicrogridParams {
    /// Import limit at the PCC, W ([`NO_CONNECTION_LIMIT`]: none).
    pub import_limit_w: u32,
    /// Export limit at the PCC, W ([`NO_CONNECTION_LIMIT`]: none).
    pub export_limit_w: u32,
    /// Whether the community runs islanded.
    pub islanded: bool,
    /// Islanded: the lowest feed-in price, base units per kWh (0 otherwise).
    pub floor: u128,
    /// Islanded: the value of lost load, the highest retail price (0 otherwise).
    pub voll: u128,
}

impl From<crate::microgrid::SlotReport> for IRegistry::MicrogridReport {
    fn from(r: crate::microgrid::SlotReport) -> Self {
        Self {
            importWh: r.import_wh,
            exportWh: r.export_wh,
            peakImportW: r.peak_import_w,
            peakExportW: r.peak_export_w,
            curtailedWh: r.curtailed_wh,
            shedWh: r.shed_wh,
            storageWh: r.storage_wh,
            storageCapacityWh: r.storage_capacity_wh,
            generatorWh: r.generator_wh,
        }
    }
}

impl From<IRegistry::MicrogridReport> for crate::microgrid::SlotReport {
    fn from(r: IRegistry::MicrogridReport) -> Self {
        Self {
            import_wh: r.importWh,
            export_wh: r.exportWh,
            peak_import_w: r.peakImportW,
            peak_export_w: r.peakExportW,
            curtailed_wh: r.curtailedWh,
            shed_wh: r.shedWh,
            storage_wh: r.storageWh,
            storage_capacity_wh: r.storageCapacityWh,
            generator_wh: r.generatorWh,
        }
    }
}

impl Market {
    /// The registry's microgrid parameters now.
    pub async fn microgrid_params(&self) -> Result<MicrogridParams, RpcError> {
        let registry = Registry::new(self.c.registry, self.rpc.provider());
        Ok(MicrogridParams {
            import_limit_w: registry.pccImportLimitW().call().await?,
            export_limit_w: registry.pccExportLimitW().call().await?,
            islanded: registry.islanded().call().await?,
            floor: u128_of(registry.priceFloor().call().await?),
            voll: u128_of(registry.valueOfLostLoad().call().await?),
        })
    }

    /// The operator's microgrid reports between blocks `from` and `to`, by chain slot (a later
    /// report of a slot replaces an earlier one).
    pub async fn microgrid_reports(
        &self,
        from: u64,
        to: u64,
    ) -> Result<std::collections::BTreeMap<u64, crate::microgrid::SlotReport>, RpcError> {
        let sig = Registry::MicrogridReported::SIGNATURE_HASH;
        let logs = self.rpc.logs(self.c.registry, json!([sig]), from, to).await?;
        Ok(logs
            .iter()
            .filter_map(|l| l.decode::<Registry::MicrogridReported>())
            .map(|e| (e.slot, e.report.into()))
            .collect())
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    /// No limit, a zero-export limit, an ordinary one, and limits at and beyond what 32 bits of
    /// watts hold: a huge limit stays a limit, never "none".
    #[test]
    fn pcc_limits_in_watts() {
        assert_eq!(limit_w(None), NO_CONNECTION_LIMIT);
        assert_eq!(limit_w(Some(0.0)), 0);
        assert_eq!(limit_w(Some(2.0)), 2_000);
        assert_eq!(limit_w(Some(4_294_967.294)), NO_CONNECTION_LIMIT - 1);
        assert_eq!(limit_w(Some(4_294_967.295)), NO_CONNECTION_LIMIT - 1);
        assert_eq!(limit_w(Some(1e12)), NO_CONNECTION_LIMIT - 1);
    }

    #[test]
    fn the_first_level_at_or_above_a_price() {
        let milli = 1_000_000_000_000_000u128;
        let p = Prices {
            feed_in: 80 * milli,
            retail: 335 * milli,
            tick: milli,
            short_premium: 0,
            long_penalty: 0,
        };
        assert_eq!(p.level_at_or_above(80 * milli), 0);
        assert_eq!(p.level_at_or_above(80 * milli + 1), 1, "just above a level: the next");
        assert_eq!(p.level_at_or_above(0), 0, "below feed-in: the floor");
        assert_eq!(p.level_at_or_above(u128::MAX), 255, "above retail: the cap");
    }
}
