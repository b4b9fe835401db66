// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Fixture} from "./utils/Fixture.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";
import {IRegistry} from "../src/interfaces/IRegistry.sol";

/// Differential test: the contract's level-aggregated clearing against an independent merit-order clearing
/// (sort bids descending and asks ascending, match unit by unit while bid >= ask) on random books.
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
        for (uint256 i = 0; i < MAX_ORDERS; ++i) {
            address p = address(uint160(0x500000 + i));
            registry.registerParticipant(p, IRegistry.Role.Prosumer);
            market.depositFor(p, 10e18);
            traders.push(p);
        }
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

    /// Merit-order sweep. Returns matched volume and the prices of the last matched bid and ask.
    function _reference(Order[] memory bids, Order[] memory asks)
        internal
        pure
        returns (uint256 q, uint256 lastBid, uint256 lastAsk)
    {
        _sort(bids, true);
        _sort(asks, false);
        uint256 i;
        uint256 j;
        uint256 bidLeft = bids.length > 0 ? bids[0].wh : 0;
        uint256 askLeft = asks.length > 0 ? asks[0].wh : 0;
        while (i < bids.length && j < asks.length && bids[i].price >= asks[j].price) {
            uint256 m = bidLeft < askLeft ? bidLeft : askLeft;
            q += m;
            lastBid = bids[i].price;
            lastAsk = asks[j].price;
            bidLeft -= m;
            askLeft -= m;
            if (bidLeft == 0 && ++i < bids.length) bidLeft = bids[i].wh;
            if (askLeft == 0 && ++j < asks.length) askLeft = asks[j].wh;
        }
    }

    // ------------------------------------------------------------------ test

    /// forge-config: default.fuzz.runs = 12
    function testFuzz_clearingMatchesMeritOrder(uint256 seed, uint256 n, uint256 spread) public {
        n = bound(n, 1, MAX_ORDERS);
        // Narrow price ranges create many ties at the marginal level; wide ones spread the book.
        spread = bound(spread, 1, MAX_LEVEL);
        (Order[] memory bids, Order[] memory asks) = _placeBook(seed, n, spread);
        vm.warp(market.gateClosureTime(S));
        market.clear(S);
        IEnergyMarket.SlotInfo memory info = market.slotInfo(S);

        (uint256 q, uint256 lastBid, uint256 lastAsk) = _reference(bids, asks);
        assertEq(info.clearedWh, q, "cleared volume");
        if (q == 0) return;
        assertEq(_price(info.bidMarginalLevel), lastBid, "marginal bid price");
        assertEq(_price(info.askMarginalLevel), lastAsk, "marginal ask price");
        uint256 mid = _price(((lastBid - FEED_IN) / TICK + (lastAsk - FEED_IN) / TICK) / 2);
        assertEq(info.clearingPricePerKWh, mid, "uniform price at the midpoint");
        _checkFills(bids, asks, q, lastBid, lastAsk);
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
