//! End-of-run checks:
//!
//! 1. **Clearing**: each slot's `SlotCleared` (volume, uniform price, marginal prices) equals an
//!    independent merit-order clearing ([`crate::clearing`]) of the orders read back from the
//!    `OrderPlaced` / `OrderCancelled` events; each settled fill equals the contract's documented
//!    allocation (full beyond the marginal levels, sequential floor(w·left/V) at them, in settlement
//!    order, with the merit order's volumes) and lies near the exact pro-rata share; bought = sold =
//!    volume.
//! 2. **No regret**: in every slot that traded, no order left with unfilled volume (its settled fill
//!    below its energy) was in the money: no such bid above the chain's clearing price and no such ask
//!    below it. Read from the chain's own events (orders, `SlotCleared`, `ParticipantSettled`) only.
//! 3. **Money**: the credits held by the market contract did not change, the free balances of the
//!    households and the grid changed by exactly what was still locked (nothing, once all is
//!    settled) in total, and each household's balance changed by what its events say.
//! 4. **Energy**: per slot, bought = sold; the grid's net supply in settlement equals the metered
//!    net import (ΣI − ΣE); every household's on-chain meter data equals what its simulated meter
//!    measured (so the MQTT → bridge → chain road lost and added nothing); every household's
//!    physics balances (PV + import = load + export + Δstored + battery losses).
//! 5. **Baseline**: no household paid more than on grid tariffs alone, or the report says which
//!    did and why (this one does not fail the run).
//! 6. **PCC** ([`crate::microgrid::check_pcc`]): every household's and the community's power
//!    balances minute by minute, and the flow at the point of common coupling stays within its
//!    limits, in the physics and in the meter data the bills use.

use std::collections::HashMap;

use alloy_primitives::Address;

use crate::clearing::{merit_order, Clearing, Order, Side};
use crate::engine::RunData;
use crate::engine::SlotRec;
use crate::market::{BookOrder, ClearedEvent, Prices};
use crate::results::HouseholdResult;

/// One check's outcome.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Check {
    /// Whether it passed.
    pub passed: bool,
    /// How many items were checked.
    pub checked: usize,
    /// What failed (first 100).
    pub failures: Vec<String>,
}

impl Check {
    /// A check that has passed nothing yet.
    pub(crate) fn new() -> Self {
        Self { passed: true, checked: 0, failures: Vec::new() }
    }

    fn fail(&mut self, msg: String) {
        self.passed = false;
        if self.failures.len() < 100 {
            self.failures.push(msg);
        }
    }

    /// Counts one item, failing the check with `msg` unless `ok`.
    pub(crate) fn expect(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.fail(msg());
        }
    }
}

/// All checks.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Checks {
    /// On-chain clearing = off-chain merit order.
    pub clearing: Check,
    /// No rejected order was in the money at the chain's clearing price.
    pub no_regret: Check,
    /// Money conserved.
    pub money: Check,
    /// Energy conserved, meters delivered intact.
    pub energy: Check,
    /// No household worse than its baseline (informative).
    pub baseline: Check,
    /// Minute-level power balance per household and community, PCC within its limits
    /// ([`crate::microgrid::check_pcc`]).
    pub pcc: Check,
    /// The microgrid's parameters and the operator's per-slot reports on chain
    /// ([`crate::microgrid::check_reports`]).
    pub reports: Check,
}

impl Checks {
    /// Whether the hard checks (clearing, no regret, money, energy, PCC, reports) passed.
    pub fn passed(&self) -> bool {
        self.clearing.passed
            && self.no_regret.passed
            && self.money.passed
            && self.energy.passed
            && self.pcc.passed
            && self.reports.passed
    }
}

/// Runs every check.
pub fn run_checks(d: &RunData, hs: &[HouseholdResult]) -> Checks {
    Checks {
        clearing: check_clearing(d),
        no_regret: check_no_regret(d),
        money: check_money(d),
        energy: check_energy(d),
        baseline: check_baseline(hs),
        pcc: crate::microgrid::check_pcc(d),
        reports: crate::microgrid::check_reports(d),
    }
}

fn check_clearing(d: &RunData) -> Check {
    let mut c = Check::new();
    for s in &d.slots {
        check_slot_clearing(&mut c, s);
    }
    c
}

/// One slot: its `SlotCleared` event against the merit order of its book, and every settled fill
/// against the allocation rule.
fn check_slot_clearing(c: &mut Check, s: &SlotRec) {
    let book = s.events.book();
    let Some(prices) = s.prices else {
        c.expect(book.is_empty(), || format!("chain slot {}: orders without prices", s.chain_slot));
        return;
    };
    if book.is_empty() {
        return;
    }
    let Some(ev) = s.cleared else {
        c.expect(false, || {
            format!("chain slot {}: {} orders but no SlotCleared event", s.chain_slot, book.len())
        });
        return;
    };
    let Some(orders) = book_on_grid(c, s.chain_slot, &book, &prices) else { return };
    let off = merit_order(&orders);
    check_clearing_figures(c, s.chain_slot, &off, &ev, &prices);
    check_fills(c, s, &book, &off, &prices);
}

/// The book as merit-order orders; `None` (after failing `c`) if an order is off the price grid.
fn book_on_grid(
    c: &mut Check,
    slot: u64,
    book: &[BookOrder],
    prices: &Prices,
) -> Option<Vec<Order<Address>>> {
    let mut orders = Vec::with_capacity(book.len());
    let mut bad = false;
    for o in book {
        match prices.level(o.price) {
            Some(level) => orders.push(Order { who: o.account, side: o.side, level, wh: o.wh }),
            None => {
                bad = true;
                c.expect(false, || {
                    format!("chain slot {slot}: order of {} at {} is off the price grid", o.account, o.price)
                });
            }
        }
    }
    (!bad).then_some(orders)
}

/// Volume, price and marginal prices on chain against the merit order's.
fn check_clearing_figures(
    c: &mut Check,
    slot: u64,
    off: &Clearing<Address>,
    ev: &ClearedEvent,
    prices: &Prices,
) {
    c.expect(off.volume_wh == ev.volume_wh, || {
        format!("chain slot {slot}: volume on chain {} Wh, merit order {} Wh", ev.volume_wh, off.volume_wh)
    });
    if off.volume_wh == 0 {
        c.expect(ev.price == 0, || format!("chain slot {slot}: no volume but price {}", ev.price));
        return;
    }
    let price = off.price_level.map(|l| prices.price(l)).unwrap_or(0);
    let mb = off.bid_marginal.map(|l| prices.price(l)).unwrap_or(0);
    let ma = off.ask_marginal.map(|l| prices.price(l)).unwrap_or(0);
    c.expect(price == ev.price, || {
        format!("chain slot {slot}: price on chain {}, merit order {price}", ev.price)
    });
    c.expect(mb == ev.bid_marginal, || {
        format!("chain slot {slot}: bid marginal on chain {}, merit order {mb}", ev.bid_marginal)
    });
    c.expect(ma == ev.ask_marginal, || {
        format!("chain slot {slot}: ask marginal on chain {}, merit order {ma}", ev.ask_marginal)
    });
}

/// Fills. Orders beyond a marginal level fill completely, orders short of it not at all; at a
/// marginal level the contract hands out the level's matched energy R as participants settle: an
/// order of w Wh, with V Wh of the level's orders not yet settled and `left` Wh of R still to give,
/// gets floor(w·left / V) (README, "Life of a slot"). Replay that in settlement order, with R and V
/// from the merit order, and require equality; and no order may be more than (orders at its level)
/// Wh from its exact pro-rata share.
fn check_fills(c: &mut Check, s: &SlotRec, book: &[BookOrder], off: &Clearing<Address>, prices: &Prices) {
    let slot = s.chain_slot;
    let level_of = |o: &BookOrder| prices.level(o.price).unwrap_or(0);
    // Per side at its marginal level: (energy left to give, energy of unsettled orders, orders).
    let mut state: HashMap<Side, (u64, u64, usize)> = HashMap::new();
    for (side, marginal) in [(Side::Bid, off.bid_marginal), (Side::Ask, off.ask_marginal)] {
        if let Some(m) = marginal {
            let at: Vec<&BookOrder> = book.iter().filter(|o| o.side == side && level_of(o) == m).collect();
            let beyond: u64 = book
                .iter()
                .filter(|o| {
                    o.side == side && if side == Side::Bid { level_of(o) > m } else { level_of(o) < m }
                })
                .map(|o| o.wh)
                .sum();
            state.insert(side, (off.volume_wh - beyond, at.iter().map(|o| o.wh).sum(), at.len()));
        }
    }
    for e in &s.events.settled {
        for o in book.iter().filter(|o| o.account == e.account) {
            let got = if o.side == Side::Bid { e.bought_wh } else { e.sold_wh };
            let marginal = if o.side == Side::Bid { off.bid_marginal } else { off.ask_marginal };
            let want = match marginal {
                None => 0,
                Some(m) if level_of(o) == m => {
                    let st = state.get_mut(&o.side).expect("marginal level state");
                    let f = if st.1 == 0 { 0 } else { (o.wh as u128 * st.0 as u128 / st.1 as u128) as u64 };
                    st.0 -= f;
                    st.1 -= o.wh;
                    f
                }
                Some(m)
                    if (o.side == Side::Bid && level_of(o) > m)
                        || (o.side == Side::Ask && level_of(o) < m) =>
                {
                    o.wh
                }
                Some(_) => 0,
            };
            c.expect(got == want, || {
                format!("chain slot {slot}: {} {:?} filled {got} Wh on chain, the allocation rule gives {want} Wh", o.account, o.side)
            });
            let exact = off.fills.get(&(o.account, o.side)).copied().unwrap_or(0.0);
            let n_at = state.get(&o.side).map_or(1, |s| s.2.max(1)) as f64;
            c.expect((got as f64 - exact).abs() <= n_at, || {
                format!(
                    "chain slot {slot}: {} {:?} filled {got} Wh, exact pro rata {exact:.3} Wh",
                    o.account, o.side
                )
            });
        }
    }
    check_settled_volume(c, s, book);
}

/// Once every order of the slot is settled, the settled bought and sold energy equal the cleared
/// volume.
fn check_settled_volume(c: &mut Check, s: &SlotRec, book: &[BookOrder]) {
    let slot = s.chain_slot;
    let settled: HashMap<Address, (u64, u64)> =
        s.events.settled.iter().map(|e| (e.account, (e.bought_wh, e.sold_wh))).collect();
    if !book.iter().all(|o| settled.contains_key(&o.account)) {
        c.expect(false, || format!("chain slot {slot}: not every order was settled"));
        return;
    }
    let volume = s.cleared.map_or(0, |ev| ev.volume_wh);
    let bought: u64 = settled.values().map(|v| v.0).sum();
    let sold: u64 = settled.values().map(|v| v.1).sum();
    c.expect(bought == volume && sold == volume, || {
        format!("chain slot {slot}: settled bought {bought} / sold {sold} Wh, cleared {volume}")
    });
}

/// No rejected order in the money: every settled order whose fill fell short of its energy lies on
/// the right side of the slot's uniform price (a bid at or below it, an ask at or above it).
fn check_no_regret(d: &RunData) -> Check {
    let mut c = Check::new();
    for s in &d.slots {
        let Some(ev) = s.cleared else { continue };
        if ev.volume_wh == 0 {
            continue; // no trade, no price
        }
        let settled: HashMap<Address, (u64, u64)> =
            s.events.settled.iter().map(|e| (e.account, (e.bought_wh, e.sold_wh))).collect();
        for o in s.events.book() {
            let Some(&(bought, sold)) = settled.get(&o.account) else { continue };
            let (fill, in_the_money) = match o.side {
                Side::Bid => (bought, o.price > ev.price),
                Side::Ask => (sold, o.price < ev.price),
            };
            if fill < o.wh {
                c.expect(!in_the_money, || {
                    format!(
                        "chain slot {}: {} {:?} of {} Wh at {} filled {fill} Wh though the price was {}",
                        s.chain_slot, o.account, o.side, o.wh, o.price, ev.price
                    )
                });
            }
        }
    }
    c
}

fn check_money(d: &RunData) -> Check {
    let mut c = Check::new();
    c.expect(d.market_tokens.start == d.market_tokens.end, || {
        format!("credits held by the market changed: {} → {}", d.market_tokens.start, d.market_tokens.end)
    });
    // Money still locked in unsettled positions: per account, locked − refunded of slots it was not settled in.
    let mut locked_open: HashMap<Address, i128> = HashMap::new();
    let mut from_events: HashMap<Address, i128> = HashMap::new();
    for s in &d.slots {
        for (o, locked) in &s.events.placed {
            *from_events.entry(o.account).or_default() -= *locked as i128;
            if !s.events.settled.iter().any(|e| e.account == o.account) {
                *locked_open.entry(o.account).or_default() += *locked as i128;
            }
        }
        for (a, _, refund) in &s.events.cancelled {
            *from_events.entry(*a).or_default() += *refund as i128;
            if !s.events.settled.iter().any(|e| e.account == *a) {
                *locked_open.entry(*a).or_default() -= *refund as i128;
            }
        }
        for e in &s.events.settled {
            *from_events.entry(e.account).or_default() += e.credited as i128 - e.debited as i128;
        }
    }
    let mut total: i128 = 0;
    for h in &d.hh {
        let a = h.account.address();
        let change = h.balance_end.net() - h.balance_start.net();
        let expected = from_events.get(&a).copied().unwrap_or(0);
        c.expect(change == expected, || {
            format!("{}: balance − debt changed by {change}, its events say {expected}", h.spec.id)
        });
        total += h.balance_end.free as i128 - h.balance_start.free as i128;
    }
    // The grid's net position: feed-in it could not pay is its debt, credited to households anyway.
    let grid = d.grid_balance.end.net() - d.grid_balance.start.net();
    let open: i128 = locked_open.values().sum();
    c.expect(total + grid + open == 0, || {
        format!("free balances of households ({total}) and grid ({grid}) plus still locked ({open}) do not sum to zero")
    });
    c
}

fn check_energy(d: &RunData) -> Check {
    let mut c = Check::new();
    for (k, s) in d.slots.iter().enumerate() {
        let slot = s.chain_slot;
        let bought: u64 = s.events.settled.iter().map(|e| e.bought_wh).sum();
        let sold: u64 = s.events.settled.iter().map(|e| e.sold_wh).sum();
        c.expect(bought == sold, || format!("chain slot {slot}: bought {bought} Wh ≠ sold {sold} Wh"));
        let (mut i, mut e_, mut gs, mut ga) = (0i128, 0i128, 0i128, 0i128);
        for e in &s.events.settled {
            i += e.import_wh as i128;
            e_ += e.export_wh as i128;
            gs += (e.import_wh.saturating_sub(e.bought_wh) + e.sold_wh.saturating_sub(e.export_wh)) as i128;
            ga += (e.bought_wh.saturating_sub(e.import_wh) + e.export_wh.saturating_sub(e.sold_wh)) as i128;
        }
        c.expect(i - e_ == gs - ga, || {
            format!("chain slot {slot}: metered net import {} ≠ grid net supply {}", i - e_, gs - ga)
        });
        // Every metered Wh is billed: a household whose meter measured energy in the slot was
        // settled, with orders or not (issue 14, part 6).
        if s.settle.is_some() {
            for (j, h) in d.hh.iter().enumerate() {
                let m = d.metered[j][k];
                if m.import_wh == 0 && m.export_wh == 0 {
                    continue;
                }
                let a = h.account.address();
                c.expect(s.events.settled.iter().any(|e| e.account == a), || {
                    format!(
                        "chain slot {slot}: {} metered {}/{} Wh but was not settled",
                        h.spec.id, m.import_wh, m.export_wh
                    )
                });
            }
        }
        // Settlement used the meter data on chain.
        for e in &s.events.settled {
            if let Some(j) = d.hh.iter().position(|h| h.account.address() == e.account) {
                let (mi, me) = (d.metered[j][k].import_wh, d.metered[j][k].export_wh);
                c.expect((e.import_wh, e.export_wh) == (mi, me), || {
                    format!(
                        "chain slot {slot}: {} settled with {}/{} Wh, meter data on chain {mi}/{me} Wh",
                        d.hh[j].spec.id, e.import_wh, e.export_wh
                    )
                });
            }
        }
        if d.simulated_meters {
            for (j, h) in d.hh.iter().enumerate() {
                let hs = &h.slots[k];
                if hs.phys.is_none() {
                    continue;
                }
                let want = (
                    hs.reg_end.import_wh - hs.reg_start.import_wh,
                    hs.reg_end.export_wh - hs.reg_start.export_wh,
                );
                let m = d.metered[j][k];
                let (mi, me, has) = (m.import_wh, m.export_wh, m.has_reading);
                c.expect(has && (mi, me) == want, || {
                    format!("chain slot {slot}: {} meter on chain {mi}/{me} Wh (reading: {has}), simulated meter measured {}/{} Wh", h.spec.id, want.0, want.1)
                });
            }
        }
    }
    if d.simulated_meters {
        for h in &d.hh {
            let (mut pv, mut imp, mut load, mut exp, mut loss) = (0.0, 0.0, 0.0, 0.0, 0.0);
            let mut first_soc = None;
            for s in &h.slots {
                if let Some(p) = &s.phys {
                    first_soc.get_or_insert(s.soc_start);
                    pv += p.pv_wh;
                    imp += p.import_wh;
                    load += p.load_wh;
                    exp += p.export_wh;
                    loss += p.battery_loss_wh;
                }
            }
            let stored = h.battery.map_or(0.0, |b| b.soc_wh) - first_soc.unwrap_or(0.0);
            let stored = if h.battery.is_some() { stored } else { 0.0 };
            let lhs = pv + imp;
            let rhs = load + exp + stored + loss;
            c.expect((lhs - rhs).abs() <= 1e-6 * lhs.abs().max(1.0), || {
                format!(
                    "{}: PV + import = {lhs:.3} Wh but load + export + Δstored + losses = {rhs:.3} Wh",
                    h.spec.id
                )
            });
        }
    }
    c
}

fn check_baseline(hs: &[HouseholdResult]) -> Check {
    let mut c = Check::new();
    for h in hs {
        c.expect(h.savings >= 0, || {
            format!(
                "{} paid {:.3} credits more than on grid tariffs alone: {}",
                h.id,
                -(h.savings as f64) / 1e18,
                h.reason()
            )
        });
    }
    c
}
