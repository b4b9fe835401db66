// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Fixture} from "./utils/Fixture.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";
import {IRegistry} from "../src/interfaces/IRegistry.sol";

/// Differential test: the contract's level-aggregated clearing against an independent merit-order clearing
/// (sort bids descending and asks ascending, match unit by unit while bid >= ask) on random books; the
/// reference price is the point k = 1/2 (rounded down onto the tick) of the market-clearing interval
/// [max(last matched ask, highest rejected bid), min(last matched bid, lowest rejected ask)], taken over the
/// individual orders the sweep left with unfilled volume.
contract DifferentialTest is Fixture {
    uint64 internal constant S = 2;
    uint256 internal constant MAX_ORDERS = 1000;

    address[] internal traders;

    struct Order {
        uint256 price;
        uint256 wh;
        uint256 id;
    }

    function setUp() public {
        _deploy(IEnergyMarket.MarketMode.PayAsClear);
        vm.startPrank(operator);
        token.mint(operator, MAX_ORDERS * 10e18);
        token.approve(address(market), MAX_ORDERS * 10e18);
        // Orders here go up to 10,000 Wh per 900 s slot: 40 kW connections.
        registry.setDefaultCapacity(40_000, 40_000);
        for (uint256 i = 0; i < MAX_ORDERS; ++i) {
            address p = address(uint160(0x500000 + i));
            registry.registerParticipant(p, IRegistry.Role.Prosumer);
            market.depositFor(p, 10e18);
            traders.push(p);
        }
        market.openSlot(S); // the keeper opens the slot (orders never open one)
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ reference implementation

    function _sort(Order[] memory a, bool descending) internal pure {
        if (a.length > 1) _quick(a, 0, int256(a.length - 1), descending);
    }

    function _quick(Order[] memory a, int256 lo, int256 hi, bool desc) internal pure {
        while (lo < hi) {
            uint256 pivot = a[uint256((lo + hi) / 2)].price;
            int256 i = lo;
            int256 j = hi;
            while (i <= j) {
                while (desc ? a[uint256(i)].price > pivot : a[uint256(i)].price < pivot) i++;
                while (desc ? a[uint256(j)].price < pivot : a[uint256(j)].price > pivot) j--;
                if (i <= j) {
                    (a[uint256(i)], a[uint256(j)]) = (a[uint256(j)], a[uint256(i)]);
                    i++;
                    j--;
                }
            }
            if (j - lo < hi - i) {
                _quick(a, lo, j, desc);
                lo = i;
            } else {
                _quick(a, i, hi, desc);
                hi = j;
            }
        }
    }

    /// The outcome of the reference clearing.
    struct Ref {
        uint256 q; // matched volume
        uint256 lastBid; // price of the last (lowest) bid the sweep matched
        uint256 lastAsk; // price of the last (highest) ask the sweep matched
        uint256 lower; // max(lastAsk, highest rejected bid)
        uint256 upper; // min(lastBid, lowest rejected ask)
    }

    /// Merit-order sweep over the individual orders (sorted in place), then the market-clearing interval from
    /// the orders the sweep left with unfilled volume (the rejected ones).
    function _reference(Order[] memory bids, Order[] memory asks) internal pure returns (Ref memory r) {
        _sort(bids, true);
        _sort(asks, false);
        uint256[] memory bidFill = new uint256[](bids.length);
        uint256[] memory askFill = new uint256[](asks.length);
        uint256 i;
        uint256 j;
        while (i < bids.length && j < asks.length && bids[i].price >= asks[j].price) {
            uint256 bl = bids[i].wh - bidFill[i];
            uint256 al = asks[j].wh - askFill[j];
            uint256 m = bl < al ? bl : al;
            r.q += m;
            r.lastBid = bids[i].price;
            r.lastAsk = asks[j].price;
            bidFill[i] += m;
            askFill[j] += m;
            if (bidFill[i] == bids[i].wh) i++;
            if (askFill[j] == asks[j].wh) j++;
        }
        if (r.q == 0) return r;
        r.lower = r.lastAsk;
        r.upper = r.lastBid;
        for (uint256 k = 0; k < bids.length; ++k) {
            if (bidFill[k] < bids[k].wh && bids[k].price > r.lower) r.lower = bids[k].price;
        }
        for (uint256 k = 0; k < asks.length; ++k) {
            if (askFill[k] < asks[k].wh && asks[k].price < r.upper) r.upper = asks[k].price;
        }
    }

    // ------------------------------------------------------------------ test

    /// forge-config: default.fuzz.runs = 12
    function testFuzz_clearingMatchesMeritOrder(uint256 seed, uint256 n, uint256 spread) public {
        n = bound(n, 1, MAX_ORDERS);
        // Narrow price ranges create many ties at the marginal level; wide ones spread the book.
        spread = bound(spread, 1, MAX_LEVEL);
        _clearAndCompare(seed, n, spread);
    }

    /// Small books on a few price levels: rationed marginal levels, equal marginal levels, no crossing and
    /// one-sided books are frequent here.
    /// forge-config: default.fuzz.runs = 300
    function testFuzz_clearingMatchesMeritOrder_smallBooks(uint256 seed, uint256 n, uint256 spread) public {
        n = bound(n, 1, 16);
        spread = bound(spread, 0, 8);
        _clearAndCompare(seed, n, spread);
    }

    function _clearAndCompare(uint256 seed, uint256 n, uint256 spread) internal {
        (Order[] memory bids, Order[] memory asks) = _placeBook(seed, n, spread);
        vm.warp(market.gateClosureTime(S));
        market.clear(S);
        IEnergyMarket.SlotInfo memory info = market.slotInfo(S);

        Ref memory r = _reference(bids, asks);
        assertEq(info.clearedWh, r.q, "cleared volume");
        _checkNoRejectedOrderInTheMoney(bids, asks, info);
        if (r.q == 0) {
            assertEq(info.clearingPricePerKWh, 0, "no trade, no price");
            return;
        }
        assertEq(_price(info.bidMarginalLevel), r.lastBid, "marginal bid price");
        assertEq(_price(info.askMarginalLevel), r.lastAsk, "marginal ask price");
        assertLe(r.lower, r.upper, "non-empty clearing interval");
        // k = 1/2 of the interval, rounded down onto the tick.
        uint256 expected = _price(((r.lower - FEED_IN) / TICK + (r.upper - FEED_IN) / TICK) / 2);
        assertEq(info.clearingPricePerKWh, expected, "uniform price at k = 1/2 of the clearing interval");
        _checkFills(bids, asks, r.q, r.lastBid, r.lastAsk);
    }

    /// On the contract's own fills: no order left with unfilled volume is priced better than the clearing
    /// price (a bid above it or an ask below it), and every filled order is within its limit.
    function _checkNoRejectedOrderInTheMoney(
        Order[] memory bids,
        Order[] memory asks,
        IEnergyMarket.SlotInfo memory info
    ) internal view {
        if (info.clearedWh == 0) return; // no trade: no price to be in the money against
        uint256 p = info.clearingPricePerKWh;
        for (uint256 k = 0; k < bids.length; ++k) {
            (uint64 f,) = market.previewFills(S, traders[bids[k].id]);
            if (f < bids[k].wh) assertLe(bids[k].price, p, "rejected bid above the price");
            if (f != 0) assertGe(bids[k].price, p, "filled bid below the price");
        }
        for (uint256 k = 0; k < asks.length; ++k) {
            (, uint64 f) = market.previewFills(S, traders[asks[k].id]);
            if (f < asks[k].wh) assertGe(asks[k].price, p, "rejected ask below the price");
            if (f != 0) assertLe(asks[k].price, p, "filled ask above the price");
        }
    }

    function _placeBook(uint256 seed, uint256 n, uint256 spread)
        internal
        returns (Order[] memory bids, Order[] memory asks)
    {
        uint256 nb;
        for (uint256 i = 0; i < n; ++i) {
            if (uint256(keccak256(abi.encode(seed, i, "side"))) % 2 == 0) nb++;
        }
        bids = new Order[](nb);
        asks = new Order[](n - nb);
        uint256 bi;
        uint256 ai;
        for (uint256 i = 0; i < n; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            uint256 price = _price(r % (spread + 1));
            uint256 wh = 1 + (r >> 16) % 10_000;
            vm.prank(traders[i]);
            if (uint256(keccak256(abi.encode(seed, i, "side"))) % 2 == 0) {
                market.placeBid(S, uint32(wh), price);
                bids[bi++] = Order(price, wh, i);
            } else {
                market.placeAsk(S, uint32(wh), price);
                asks[ai++] = Order(price, wh, i);
            }
        }
    }

    /// Every order's fill follows price priority, and the marginal levels carry exactly the rest of Q.
    function _checkFills(Order[] memory bids, Order[] memory asks, uint256 q, uint256 lastBid, uint256 lastAsk)
        internal
        view
    {
        uint256 bought;
        uint256 sold;
        for (uint256 k = 0; k < bids.length; ++k) {
            (uint64 f,) = market.previewFills(S, traders[bids[k].id]);
            if (bids[k].price > lastBid) assertEq(f, bids[k].wh, "better bid fills fully");
            else if (bids[k].price < lastBid) assertEq(f, 0, "worse bid gets nothing");
            else assertLe(f, bids[k].wh, "marginal bid within size");
            if (bids[k].price > lastBid) bought += f;
        }
        for (uint256 k = 0; k < asks.length; ++k) {
            (, uint64 f) = market.previewFills(S, traders[asks[k].id]);
            if (asks[k].price < lastAsk) assertEq(f, asks[k].wh, "better ask fills fully");
            else if (asks[k].price > lastAsk) assertEq(f, 0, "worse ask gets nothing");
            else assertLe(f, asks[k].wh, "marginal ask within size");
            if (asks[k].price < lastAsk) sold += f;
        }
        (uint64 bidLeft,, uint64 askLeft,) = market.marginalState(S);
        assertEq(bought + bidLeft, q, "bids sum to Q");
        assertEq(sold + askLeft, q, "asks sum to Q");
    }

    /// The largest book, fixed seed: 1,000 orders in one slot.
    function test_clearingMatchesMeritOrder_1000() public {
        testFuzz_clearingMatchesMeritOrder(42, MAX_ORDERS, MAX_LEVEL);
    }
}
