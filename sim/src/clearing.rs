//! An independent merit-order clearing, written from the market's specification (contracts/README.md,
//! "Life of a slot") rather than from the contract: individual orders are sorted (bids by falling,
//! asks by rising price) and swept against each other while the best remaining bid is at least the
//! best remaining ask. The matched energy is the cleared volume; the prices of the last bid and ask
//! the sweep touched are the marginal levels; orders beyond the marginal levels fill completely and
//! orders at a marginal level share the rest pro rata.
//!
//! The uniform price: the orders the sweep left with unfilled volume are the rejected ones, and the
//! market-clearing interval is `[max(last matched ask, highest rejected bid), min(last matched bid,
//! lowest rejected ask)]`, every price of which clears the volume with no rejected bid above it and
//! no rejected ask below it. The price is its point `k = 1/2` rounded down onto the tick,
//! `lower + floor((upper − lower) / 2)` (contracts/README.md, "Life of a slot").
//!
//! The simulator compares every slot's on-chain `SlotCleared` and `ParticipantSettled` events with
//! this clearing of the orders it read back from `OrderPlaced` / `OrderCancelled` events.

use std::collections::BTreeMap;

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// A bid (buy).
    Bid,
    /// An ask (sell).
    Ask,
}

/// One order: who, which side, its price level (ticks above the feed-in tariff) and energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order<K> {
    /// The participant.
    pub who: K,
    /// Bid or ask.
    pub side: Side,
    /// Limit price as a level: `(price − feedIn) / tick`.
    pub level: u32,
    /// Energy, Wh (> 0).
    pub wh: u64,
}

/// The outcome of clearing a book.
#[derive(Debug, Clone, PartialEq)]
pub struct Clearing<K: Ord> {
    /// Cleared volume, Wh.
    pub volume_wh: u64,
    /// Bid marginal level (lowest accepted bid price), if anything cleared.
    pub bid_marginal: Option<u32>,
    /// Ask marginal level (highest accepted ask price), if anything cleared.
    pub ask_marginal: Option<u32>,
    /// Market-clearing interval `(lower, upper)` as levels, if anything cleared (see the module docs).
    pub interval: Option<(u32, u32)>,
    /// Uniform price level: the point [`PRICE_K`] of the interval rounded down onto the tick.
    pub price_level: Option<u32>,
    /// Exact (fractional) fills per participant and side, Wh.
    pub fills: BTreeMap<(K, Side), f64>,
}

/// The point of the market-clearing interval the uniform price takes: `k` of the k-double auction,
/// `p = k·upper + (1 − k)·lower`, rounded down onto the price tick.
pub const PRICE_K: (u32, u32) = (1, 2);

/// The uniform price level of the interval `[lower, upper]` (levels): `lower + floor(k·(upper − lower))`.
pub fn k_point(lower: u32, upper: u32) -> u32 {
    lower + upper.saturating_sub(lower) * PRICE_K.0 / PRICE_K.1
}

/// Clears `orders` by merit order.
pub fn merit_order<K: Ord + Copy>(orders: &[Order<K>]) -> Clearing<K> {
    let mut bids: Vec<&Order<K>> = orders.iter().filter(|o| o.side == Side::Bid && o.wh > 0).collect();
    let mut asks: Vec<&Order<K>> = orders.iter().filter(|o| o.side == Side::Ask && o.wh > 0).collect();
    bids.sort_by_key(|o| std::cmp::Reverse(o.level));
    asks.sort_by_key(|o| o.level);

    // Energy of each sorted order the sweep has not matched.
    let mut bid_left: Vec<u64> = bids.iter().map(|o| o.wh).collect();
    let mut ask_left: Vec<u64> = asks.iter().map(|o| o.wh).collect();
    let (mut i, mut j) = (0usize, 0usize);
    let mut volume = 0u64;
    let (mut last_bid, mut last_ask) = (None, None);
    while i < bids.len() && j < asks.len() && bids[i].level >= asks[j].level {
        let m = bid_left[i].min(ask_left[j]);
        volume += m;
        bid_left[i] -= m;
        ask_left[j] -= m;
        last_bid = Some(bids[i].level);
        last_ask = Some(asks[j].level);
        if bid_left[i] == 0 {
            i += 1;
        }
        if ask_left[j] == 0 {
            j += 1;
        }
    }

    let mut fills = BTreeMap::new();
    for o in orders {
        *fills.entry((o.who, o.side)).or_insert(0.0) += 0.0;
    }
    let (Some(mb), Some(ma)) = (last_bid, last_ask) else {
        return Clearing {
            volume_wh: 0,
            bid_marginal: None,
            ask_marginal: None,
            interval: None,
            price_level: None,
            fills,
        };
    };
    // The interval from the rejected orders: every order the sweep left with energy unmatched.
    let rejected = |list: &[&Order<K>], left: &[u64]| -> Vec<u32> {
        list.iter().zip(left).filter(|(_, l)| **l > 0).map(|(o, _)| o.level).collect()
    };
    let lower = rejected(&bids, &bid_left).into_iter().fold(ma, u32::max);
    let upper = rejected(&asks, &ask_left).into_iter().fold(mb, u32::min);
    debug_assert!(lower <= upper, "a maximal volume leaves no rejected bid above a rejected ask");
    let share = |side: Side, marginal: u32, better: &dyn Fn(u32) -> bool| {
        let list = if side == Side::Bid { &bids } else { &asks };
        let full: u64 = list.iter().filter(|o| better(o.level)).map(|o| o.wh).sum();
        let at: u64 = list.iter().filter(|o| o.level == marginal).map(|o| o.wh).sum();
        let rest = volume - full;
        list.iter()
            .map(|o| {
                let f = if better(o.level) {
                    o.wh as f64
                } else if o.level == marginal {
                    o.wh as f64 * rest as f64 / at as f64
                } else {
                    0.0
                };
                ((o.who, side), f)
            })
            .collect::<Vec<_>>()
    };
    for (k, f) in share(Side::Bid, mb, &|l| l > mb).into_iter().chain(share(Side::Ask, ma, &|l| l < ma)) {
        *fills.entry(k).or_insert(0.0) += f;
    }
    Clearing {
        volume_wh: volume,
        bid_marginal: Some(mb),
        ask_marginal: Some(ma),
        interval: Some((lower, upper)),
        price_level: Some(k_point(lower, upper)),
        fills,
    }
}

/// Clearing from aggregated level volumes (bid Wh, ask Wh) by the max-min definition
/// `Q = max_l min(D(l), S(l))`, with `D(l)` the bid energy at levels ≥ `l` and `S(l)` the ask
/// energy at levels ≤ `l`: the definition the merit-order sweep must agree with (used in tests) and
/// how an agent reads the public book of level totals.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelClearing {
    /// Cleared volume, Wh.
    pub volume_wh: u64,
    /// Bid marginal level `max{l : D(l) ≥ Q}`.
    pub bid_marginal: Option<u32>,
    /// Ask marginal level `min{l : S(l) ≥ Q}`.
    pub ask_marginal: Option<u32>,
    /// Share of the bid energy at the bid marginal level that trades.
    pub bid_marginal_share: f64,
    /// Share of the ask energy at the ask marginal level that trades.
    pub ask_marginal_share: f64,
}

impl LevelClearing {
    /// Clears `levels[l] = (bid Wh, ask Wh)`.
    pub fn new(levels: &[(u64, u64)]) -> Self {
        let n = levels.len();
        // demand[l] = D(l), supply[l] = S(l).
        let mut demand = vec![0u64; n + 1];
        for l in (0..n).rev() {
            demand[l] = demand[l + 1] + levels[l].0;
        }
        let mut supply = vec![0u64; n];
        let mut acc = 0;
        for l in 0..n {
            acc += levels[l].1;
            supply[l] = acc;
        }
        let q = (0..n).map(|l| demand[l].min(supply[l])).max().unwrap_or(0);
        if q == 0 {
            return Self {
                volume_wh: 0,
                bid_marginal: None,
                ask_marginal: None,
                bid_marginal_share: 0.0,
                ask_marginal_share: 0.0,
            };
        }
        let mb = (0..n).filter(|&l| demand[l] >= q).max().expect("D(0) ≥ Q");
        let ma = (0..n).filter(|&l| supply[l] >= q).min().expect("S(n−1) ≥ Q");
        let bid_rest = q - demand[mb + 1];
        let ask_rest = q - if ma == 0 { 0 } else { supply[ma - 1] };
        Self {
            volume_wh: q,
            bid_marginal: Some(mb as u32),
            ask_marginal: Some(ma as u32),
            bid_marginal_share: bid_rest as f64 / levels[mb].0 as f64,
            ask_marginal_share: ask_rest as f64 / levels[ma].1 as f64,
        }
    }

    /// The share of an order at `level` on `side` that would trade.
    pub fn fill_share(&self, side: Side, level: u32) -> f64 {
        match (side, self.bid_marginal, self.ask_marginal) {
            (Side::Bid, Some(mb), _) if level > mb => 1.0,
            (Side::Bid, Some(mb), _) if level == mb => self.bid_marginal_share,
            (Side::Ask, _, Some(ma)) if level < ma => 1.0,
            (Side::Ask, _, Some(ma)) if level == ma => self.ask_marginal_share,
            _ => 0.0,
        }
    }
}

/// `(Q, bid marginal, ask marginal)` of aggregated levels (see [`LevelClearing`]).
pub fn from_levels(levels: &[(u64, u64)]) -> (u64, Option<u32>, Option<u32>) {
    let c = LevelClearing::new(levels);
    (c.volume_wh, c.bid_marginal, c.ask_marginal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn o(who: u32, side: Side, level: u32, wh: u64) -> Order<u32> {
        Order { who, side, level, wh }
    }

    #[test]
    fn simple_cross() {
        let c = merit_order(&[
            o(1, Side::Bid, 200, 1000),
            o(2, Side::Bid, 100, 500),
            o(3, Side::Ask, 50, 800),
            o(4, Side::Ask, 150, 800),
        ]);
        // Bid 200 takes ask 50's 800 and 200 of ask 150; bid 100 < ask 150 stops. Ask 150 keeps
        // 600 Wh unsold, so no price above 150 leaves it out of the money: the interval is [150, 150].
        assert_eq!(c.volume_wh, 1000);
        assert_eq!((c.bid_marginal, c.ask_marginal), (Some(200), Some(150)));
        assert_eq!((c.interval, c.price_level), (Some((150, 150)), Some(150)));
        assert_eq!(c.fills[&(1, Side::Bid)], 1000.0);
        assert_eq!(c.fills[&(2, Side::Bid)], 0.0);
        assert_eq!(c.fills[&(3, Side::Ask)], 800.0);
        assert_eq!(c.fills[&(4, Side::Ask)], 200.0);
    }

    #[test]
    fn no_cross_and_empty_books() {
        let c = merit_order(&[o(1, Side::Bid, 10, 100), o(2, Side::Ask, 11, 100)]);
        assert_eq!((c.volume_wh, c.price_level, c.interval), (0, None, None));
        let c = merit_order(&[o(1, Side::Bid, 10, 100)]);
        assert_eq!(c.volume_wh, 0);
        assert_eq!(c.fills[&(1, Side::Bid)], 0.0);
        let c: Clearing<u32> = merit_order(&[]);
        assert_eq!(c.volume_wh, 0);
    }

    #[test]
    fn pro_rata_at_the_marginal_level() {
        let c =
            merit_order(&[o(1, Side::Bid, 100, 300), o(2, Side::Bid, 100, 100), o(3, Side::Ask, 20, 200)]);
        assert_eq!(c.volume_wh, 200);
        assert_eq!(c.fills[&(1, Side::Bid)], 150.0);
        assert_eq!(c.fills[&(2, Side::Bid)], 50.0);
        // 200 Wh of bids at 100 stay unfilled: the rationed bid level pins the price.
        assert_eq!(c.price_level, Some(100));
    }

    #[test]
    fn reported_rationed_bid_level_pins_the_price() {
        // Issue 14: bids at 0.23 (level 150) rejected while the midpoint rule priced at 0.18.
        let c =
            merit_order(&[o(1, Side::Ask, 50, 1000), o(2, Side::Bid, 150, 1000), o(3, Side::Bid, 150, 500)]);
        assert_eq!((c.volume_wh, c.bid_marginal, c.ask_marginal), (1000, Some(150), Some(50)));
        assert_eq!((c.interval, c.price_level), (Some((150, 150)), Some(150)));
    }

    #[test]
    fn reported_rationed_ask_level_pins_the_price() {
        // Issue 14, mirror case: asks at 0.089 (level 9) unsold while the midpoint rule priced at 0.137.
        let c = merit_order(&[o(1, Side::Ask, 9, 700), o(2, Side::Ask, 9, 500), o(3, Side::Bid, 105, 800)]);
        assert_eq!((c.volume_wh, c.bid_marginal, c.ask_marginal), (800, Some(105), Some(9)));
        assert_eq!((c.interval, c.price_level), (Some((9, 9)), Some(9)));
    }

    #[test]
    fn rejected_orders_between_the_marginal_levels_narrow_the_interval() {
        let c = merit_order(&[
            o(1, Side::Ask, 20, 1000),
            o(2, Side::Ask, 140, 400),
            o(3, Side::Bid, 170, 1000),
            o(4, Side::Bid, 110, 300),
        ]);
        assert_eq!((c.bid_marginal, c.ask_marginal), (Some(170), Some(20)));
        assert_eq!((c.interval, c.price_level), (Some((110, 140)), Some(125)));
        // An odd width rounds down onto the tick.
        assert_eq!(k_point(40, 51), 45);
    }

    /// Brute force over every level: the prices at which no filled order trades beyond its limit and
    /// no order with unfilled volume is in the money (exact pro-rata fills).
    fn no_regret_prices(orders: &[Order<u32>], c: &Clearing<u32>, levels: u32) -> Vec<u32> {
        (0..levels)
            .filter(|&p| {
                orders.iter().all(|o| {
                    let f = c.fills[&(o.who, o.side)];
                    let (filled, rejected) = (f > 1e-9, f < o.wh as f64 - 1e-9);
                    match o.side {
                        Side::Bid => (!filled || o.level >= p) && (!rejected || o.level <= p),
                        Side::Ask => (!filled || o.level <= p) && (!rejected || o.level >= p),
                    }
                })
            })
            .collect()
    }

    #[test]
    fn price_lies_in_the_no_regret_interval_on_random_books() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let mut pinned = 0;
        for round in 0..2000 {
            let levels = rng.gen_range(1..12u32);
            let n = rng.gen_range(0..14);
            let orders: Vec<Order<u32>> = (0..n)
                .map(|i| Order {
                    who: i,
                    side: if rng.gen_bool(0.5) { Side::Bid } else { Side::Ask },
                    level: rng.gen_range(0..levels),
                    wh: rng.gen_range(1..500),
                })
                .collect();
            let c = merit_order(&orders);
            let Some((lower, upper)) = c.interval else {
                assert_eq!((c.volume_wh, c.price_level), (0, None), "round {round}");
                continue;
            };
            let ok = no_regret_prices(&orders, &c, levels);
            // The no-regret prices are exactly the interval, and the price is its k = 1/2 point.
            assert_eq!(ok, (lower..=upper).collect::<Vec<_>>(), "round {round}: {orders:?}");
            assert_eq!(c.price_level, Some(lower + (upper - lower) / 2), "round {round}");
            let (ma, mb) = (c.ask_marginal.unwrap(), c.bid_marginal.unwrap());
            assert!(ma <= lower && upper <= mb, "round {round}");
            pinned += usize::from(lower == upper && ma < mb);
        }
        assert!(pinned > 50, "random books include pinned prices ({pinned})");
    }

    #[test]
    fn sweep_agrees_with_the_max_min_definition_on_random_books() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..500 {
            let levels = rng.gen_range(1..40u32);
            let n = rng.gen_range(0..30);
            let orders: Vec<Order<u32>> = (0..n)
                .map(|i| Order {
                    who: i,
                    side: if rng.gen_bool(0.5) { Side::Bid } else { Side::Ask },
                    level: rng.gen_range(0..levels),
                    wh: rng.gen_range(1..2000),
                })
                .collect();
            let c = merit_order(&orders);
            let mut agg = vec![(0u64, 0u64); levels as usize];
            for o in &orders {
                match o.side {
                    Side::Bid => agg[o.level as usize].0 += o.wh,
                    Side::Ask => agg[o.level as usize].1 += o.wh,
                }
            }
            let (q, mb, ma) = from_levels(&agg);
            assert_eq!(c.volume_wh, q, "round {round}");
            assert_eq!(c.bid_marginal, mb, "round {round}");
            assert_eq!(c.ask_marginal, ma, "round {round}");
            let bought: f64 = c.fills.iter().filter(|(k, _)| k.1 == Side::Bid).map(|(_, v)| v).sum();
            let sold: f64 = c.fills.iter().filter(|(k, _)| k.1 == Side::Ask).map(|(_, v)| v).sum();
            assert!((bought - q as f64).abs() < 1e-6 && (sold - q as f64).abs() < 1e-6, "round {round}");
            // Maximal: no unmatched bid at or above an unmatched ask remains.
            if let (Some(mb), Some(ma)) = (mb, ma) {
                assert!(ma <= mb);
                for o in &orders {
                    if o.side == Side::Bid && o.level > mb {
                        assert_eq!(c.fills[&(o.who, Side::Bid)], o.wh as f64);
                    }
                }
            }
        }
    }

    #[test]
    fn fill_shares_from_the_public_book() {
        // Levels: bids 300 Wh at 100; asks 200 Wh at 20 and 50 Wh at 120.
        let mut levels = vec![(0u64, 0u64); 130];
        levels[100].0 = 300;
        levels[20].1 = 200;
        levels[120].1 = 50;
        let c = LevelClearing::new(&levels);
        assert_eq!((c.volume_wh, c.bid_marginal, c.ask_marginal), (200, Some(100), Some(20)));
        assert!((c.fill_share(Side::Bid, 100) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.fill_share(Side::Bid, 101), 1.0);
        assert_eq!(c.fill_share(Side::Bid, 99), 0.0);
        assert_eq!(c.fill_share(Side::Ask, 20), 1.0);
        assert_eq!(c.fill_share(Side::Ask, 120), 0.0);
        assert_eq!(LevelClearing::new(&[(5, 0), (0, 5)]).volume_wh, 0);
        assert_eq!(LevelClearing::new(&[]).volume_wh, 0);
    }
}
