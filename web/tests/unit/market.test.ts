import { describe, expect, it } from 'vitest';
import {
  type Level,
  activeLevels,
  billOf,
  bookSides,
  computeClearing,
  firstOpenSlot,
  lockFor,
  NO_PREMIUMS,
  phaseOf,
} from '../../src/market';

const milli = 10n ** 15n;
const feedIn = 80n * milli;
const lvl = (level: number, bidWh: bigint, askWh: bigint): Level => ({
  level,
  pricePerKWh: feedIn + BigInt(level) * milli,
  bidWh,
  askWh,
});

describe('schedule', () => {
  const s = { startTime: 1000n, slotLength: 10n, gateClosure: 3n, gracePeriod: 3n };
  it('finds the first slot that still takes orders (contract: now + gate >= start refuses)', () => {
    expect(firstOpenSlot(s, 1000n)).toBe(1n); // slot 1 starts at 1010 > 1003
    expect(firstOpenSlot(s, 1006n)).toBe(1n); // 1009 < 1010
    expect(firstOpenSlot(s, 1007n)).toBe(2n); // 1010 >= 1010: slot 1 closed
    expect(firstOpenSlot(s, 900n)).toBe(0n);
  });
  it('names the phases', () => {
    expect(phaseOf(s, 2n, 1016n)).toBe('open');
    expect(phaseOf(s, 2n, 1017n)).toBe('gate-closed');
    expect(phaseOf(s, 2n, 1020n)).toBe('delivery');
    expect(phaseOf(s, 2n, 1030n)).toBe('grace');
    expect(phaseOf(s, 2n, 1033n)).toBe('settlement');
  });
});

describe('order book', () => {
  it('reads the active-levels bitmap', () => {
    expect(activeLevels(0n)).toEqual([]);
    expect(activeLevels((1n << 0n) | (1n << 70n) | (1n << 255n))).toEqual([0, 70, 255]);
  });

  it('aggregates sides with cumulative energy', () => {
    const { bids, asks } = bookSides([lvl(10, 100n, 0n), lvl(20, 50n, 30n), lvl(5, 0n, 70n)]);
    expect(bids.map((r) => [r.energyWh, r.cumulativeWh])).toEqual([
      [50n, 50n],
      [100n, 150n],
    ]);
    expect(asks.map((r) => [r.energyWh, r.cumulativeWh])).toEqual([
      [70n, 70n],
      [30n, 100n],
    ]);
  });

  it('clears like the contract: maximal volume, k = 1/2 of the market-clearing interval', () => {
    // One bid at level 100, one ask at level 40, nothing rejected: [40, 100] clears, price level 70.
    expect(computeClearing([lvl(100, 300n, 0n), lvl(40, 0n, 300n)])).toEqual({
      clearedWh: 300n,
      bidMarginal: 100,
      askMarginal: 40,
      lowLevel: 40,
      highLevel: 100,
      priceLevel: 70,
    });
    // The bid level is rationed (500 Wh bid, 300 Wh trade): its rejected volume pins the price to 100.
    expect(computeClearing([lvl(100, 500n, 0n), lvl(40, 0n, 300n)]).priceLevel).toBe(100);
    // No overlap, one side only, nothing.
    expect(computeClearing([lvl(10, 500n, 0n), lvl(40, 0n, 300n)]).clearedWh).toBe(0n);
    expect(computeClearing([lvl(10, 500n, 0n)]).clearedWh).toBe(0n);
    expect(computeClearing([]).clearedWh).toBe(0n);
    // Marginal bid level: bids 200@60 and 200@50, asks 300@30: Q = 300, mb = 50 rationed, price 50.
    expect(computeClearing([lvl(60, 200n, 0n), lvl(50, 200n, 0n), lvl(30, 0n, 300n)])).toEqual({
      clearedWh: 300n,
      bidMarginal: 50,
      askMarginal: 30,
      lowLevel: 50,
      highLevel: 50,
      priceLevel: 50,
    });
    // Bid and ask at the same level.
    expect(computeClearing([lvl(7, 100n, 100n)]).priceLevel).toBe(7);
  });

  it('prices the books of issue 14 where no rejected order is in the money', () => {
    // Bids at 0.23 rationed: the midpoint rule gave 0.18 (level 100); now 0.23 (level 150).
    expect(computeClearing([lvl(150, 1500n, 0n), lvl(50, 0n, 1000n)]).priceLevel).toBe(150);
    // Asks at 0.089 rationed: the midpoint rule gave 0.137 (level 57); now 0.089 (level 9).
    expect(computeClearing([lvl(105, 800n, 0n), lvl(9, 0n, 1200n)]).priceLevel).toBe(9);
    // A rejected bid at 110 and a rejected ask at 140 inside [20, 170]: interval [110, 140], level 125.
    const c = computeClearing([lvl(170, 1000n, 0n), lvl(110, 300n, 0n), lvl(20, 0n, 1000n), lvl(140, 0n, 400n)]);
    expect([c.lowLevel, c.highLevel, c.priceLevel]).toEqual([110, 140, 125]);
    // An odd width rounds down onto the tick: [40, 51] gives 45.
    expect(computeClearing([lvl(170, 1000n, 0n), lvl(40, 300n, 0n), lvl(20, 0n, 1000n), lvl(51, 0n, 400n)]).priceLevel).toBe(45);
  });

  it('agrees with a merit-order sweep over the individual orders on random books', () => {
    // Independent reference: sort the orders, match them, take the interval over the unmatched ones.
    let seed = 14;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let round = 0; round < 2000; round++) {
      const width = 1 + rnd(10);
      const orders = Array.from({ length: rnd(12) }, () => ({ bid: rnd(2) === 0, level: rnd(width), wh: BigInt(1 + rnd(400)) }));
      const bids = orders.filter((o) => o.bid).sort((a, b) => b.level - a.level).map((o) => ({ ...o, left: o.wh }));
      const asks = orders.filter((o) => !o.bid).sort((a, b) => a.level - b.level).map((o) => ({ ...o, left: o.wh }));
      let [i, j, q, lastBid, lastAsk] = [0, 0, 0n, -1, -1];
      while (i < bids.length && j < asks.length && bids[i].level >= asks[j].level) {
        const m = bids[i].left < asks[j].left ? bids[i].left : asks[j].left;
        q += m;
        bids[i].left -= m;
        asks[j].left -= m;
        [lastBid, lastAsk] = [bids[i].level, asks[j].level];
        if (bids[i].left === 0n) i++;
        if (asks[j].left === 0n) j++;
      }
      const levels = new Map<number, Level>();
      for (const o of orders) {
        const l = levels.get(o.level) ?? lvl(o.level, 0n, 0n);
        if (o.bid) l.bidWh += o.wh;
        else l.askWh += o.wh;
        levels.set(o.level, l);
      }
      const c = computeClearing([...levels.values()]);
      expect(c.clearedWh, `round ${round}`).toBe(q);
      if (q === 0n) continue;
      const lo = Math.max(lastAsk, ...bids.filter((o) => o.left > 0n).map((o) => o.level));
      const hi = Math.min(lastBid, ...asks.filter((o) => o.left > 0n).map((o) => o.level));
      expect([c.bidMarginal, c.askMarginal, c.lowLevel, c.highLevel], `round ${round}`).toEqual([lastBid, lastAsk, lo, hi]);
      expect(c.priceLevel, `round ${round}`).toBe(lo + Math.floor((hi - lo) / 2));
    }
  });
});

describe('money', () => {
  const prem = { shortPremiumPerKWh: 50n * milli, longPenaltyPerKWh: 20n * milli };

  it('locks the worst case: the bid cost plus the long penalty, the ask shortfall at retail plus the premium', () => {
    // 500 Wh bid at 0.15 + 0.02 penalty = 0.085 credits; 500 Wh ask at 0.10: (0.30 + 0.05 − 0.10) × 0.5 = 0.125.
    expect(lockFor('bid', 500n, 150n * milli, 300n * milli, prem)).toBe(85n * milli);
    expect(lockFor('ask', 500n, 100n * milli, 300n * milli, prem)).toBe(125n * milli);
    // An ask at retail still locks the short premium: no order is free.
    expect(lockFor('ask', 1000n, 300n * milli, 300n * milli, prem)).toBe(50n * milli);
    expect(lockFor('bid', 1000n, 150n * milli, 300n * milli, NO_PREMIUMS)).toBe(150n * milli);
  });

  it('breaks a settlement into trade and grid flows that reproduce the contract amounts', () => {
    // Consumer bid 500 Wh @ 0.20, bought 300 Wh @ 0.15, used 400 Wh: 100 Wh from the grid at 0.30.
    const r = 300n * milli;
    const f = 80n * milli;
    const c = 150n * milli;
    const pb = 200n * milli;
    const released = (500n * (pb + prem.longPenaltyPerKWh)) / 1000n;
    const debited = (300n * c) / 1000n + (100n * r) / 1000n;
    const bill = billOf(
      { slot: 5n, boughtWh: 300n, soldWh: 0n, importWh: 400n, exportWh: 0n, credited: released, debited },
      { retailPerKWh: r, feedInPerKWh: f, clearingPerKWh: c },
      { bidPricePerKWh: pb, askPricePerKWh: 0n },
      false,
      prem,
    );
    expect(bill.fromGridWh).toBe(100n);
    expect(bill.toGridWh).toBe(0n);
    expect(bill.imbalanceCharge).toBe(0n);
    expect(bill.net).toBe(debited);
    expect(bill.released).toBe(released);
    expect(bill.gridOnly).toBe((400n * r) / 1000n);
    expect(bill.savings).toBe((400n * r) / 1000n - debited);
    expect(bill.consistent).toBe(true);

    // Prosumer sold 300 Wh @ 0.15 but delivered 250 Wh: 50 Wh bought at retail + premium (0.35).
    const pa = 100n * milli;
    const rel2 = (300n * (r + prem.shortPremiumPerKWh - pa)) / 1000n;
    const bill2 = billOf(
      {
        slot: 5n,
        boughtWh: 0n,
        soldWh: 300n,
        importWh: 0n,
        exportWh: 250n,
        credited: rel2 + (300n * c) / 1000n,
        debited: (50n * 350n * milli) / 1000n,
      },
      { retailPerKWh: r, feedInPerKWh: f, clearingPerKWh: c },
      { bidPricePerKWh: 0n, askPricePerKWh: pa },
      false,
      prem,
    );
    expect(bill2.imbalanceCharge).toBe((50n * 50n * milli) / 1000n);
    expect(bill2.net).toBe((50n * 350n * milli) / 1000n - (300n * c) / 1000n);
    expect(bill2.gridOnly).toBe(-(250n * f) / 1000n);
    expect(bill2.consistent).toBe(true);

    // Consumer bought 300 Wh @ 0.15 and used 100 Wh: 200 Wh back at feed-in, 0.02 penalty on each.
    const bill3 = billOf(
      {
        slot: 5n,
        boughtWh: 300n,
        soldWh: 0n,
        importWh: 100n,
        exportWh: 0n,
        credited: released + (200n * f) / 1000n,
        debited: (300n * c) / 1000n + (200n * 20n * milli) / 1000n,
      },
      { retailPerKWh: r, feedInPerKWh: f, clearingPerKWh: c },
      { bidPricePerKWh: pb, askPricePerKWh: 0n },
      false,
      prem,
    );
    expect(bill3.toGridWh).toBe(200n);
    expect(bill3.imbalanceCharge).toBe((200n * 20n * milli) / 1000n);
    // Paid 0.045 for 300 Wh, got 0.016 back at feed-in, paid 0.004 penalty.
    expect(bill3.net).toBe((300n * c) / 1000n - (200n * f) / 1000n + (200n * 20n * milli) / 1000n);
    expect(bill3.consistent).toBe(true);
  });

  it('flags a breakdown that does not match the contract', () => {
    const bill = billOf(
      { slot: 1n, boughtWh: 10n, soldWh: 0n, importWh: 10n, exportWh: 0n, credited: 0n, debited: 1n },
      { retailPerKWh: 300n * milli, feedInPerKWh: 80n * milli, clearingPerKWh: 150n * milli },
      { bidPricePerKWh: 150n * milli, askPricePerKWh: 0n },
      false,
      NO_PREMIUMS,
    );
    expect(bill.consistent).toBe(false);
  });
});
