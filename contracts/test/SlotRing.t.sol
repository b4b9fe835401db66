// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Fixture} from "./utils/Fixture.sol";
import {StorageWords} from "./utils/StorageWords.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";
import {IRegistry} from "../src/interfaces/IRegistry.sol";

/// Issue 14, part 7: storage that does not grow with the market's age. A slot's price-level words are needed only
/// until it is cleared; slot `k + SLOT_RING` reuses the words of slot `k`. The limit (at most `SLOT_RING` slots open
/// and still taking orders) is tested under, at and over it, and the market's storage is counted over 1,000 slots.
contract SlotRingTest is Fixture, StorageWords {
    uint64 internal constant S = 4;
    uint256 internal ring;

    address internal seller;
    address internal buyer;

    function setUp() public {
        _deploy(IEnergyMarket.MarketMode.PayAsClear);
        _fundGrid(1000e18);
        ring = market.SLOT_RING();
        seller = _participant("seller", IRegistry.Role.Prosumer, 100e18);
        buyer = _participant("buyer", IRegistry.Role.Consumer, 100e18);
    }

    function _open(uint64 slot) internal {
        vm.prank(operator);
        market.openSlot(slot);
    }

    function _trade(uint64 slot) internal {
        _trade(slot, seller, buyer);
    }

    function _trade(uint64 slot, address s, address b) internal {
        vm.prank(s);
        market.placeAsk(slot, 300, 150e15);
        vm.prank(b);
        market.placeBid(slot, 200, 250e15);
    }

    function test_ring_is128Slots() public view {
        assertEq(ring, 128, "SLOT_RING");
    }

    /// Slot `S + SLOT_RING` reuses the level words of the cleared slot `S` (rewriting them instead of creating
    /// them: GasBench's `test_gas_openSlot_reusingWords`), and `S`'s per-level volumes are gone while its result
    /// stays. (The 300 Wh ask is rationed at 0.15, which pins the price there.)
    function test_openSlot_reusesTheWordsOfAClearedSlot() public {
        _open(S);
        _trade(S);
        vm.warp(market.gateClosureTime(S));
        market.clear(S);
        (uint64 b, uint64 a) = market.levelVolumes(S, 70);
        assertEq(a, 300, "ask level kept until the words are reused");
        assertEq(b, 0, "no bid at 0.15");
        uint64 next = S + uint64(ring);
        _open(next);
        (, a) = market.levelVolumes(S, 70);
        assertEq(a, 0, "S's level words now belong to S + SLOT_RING");
        assertEq(market.slotInfo(S).activeLevels, 0, "no active levels reported from another slot's words");
        IEnergyMarket.SlotInfo memory info = market.slotInfo(S);
        assertEq(info.clearedWh, 200, "the cleared result is kept");
        assertEq(info.clearingPricePerKWh, 150e15, "and the price");
        // The new slot's book starts empty and works.
        assertEq(market.slotInfo(next).activeLevels, 0, "new book empty");
        vm.warp(_start(next) - 3600);
        // Others trade in it (seller and buyer would first have to settle S, whose position ring word it shares).
        _trade(
            next,
            _participant("seller2", IRegistry.Role.Prosumer, 100e18),
            _participant("buyer2", IRegistry.Role.Consumer, 100e18)
        );
        (b,) = market.levelVolumes(next, 170);
        assertEq(b, 200, "bid in the reused words");
        vm.warp(market.gateClosureTime(next));
        market.clear(next);
        assertEq(market.slotInfo(next).clearedWh, 200, "cleared from the reused words");
    }

    /// At most SLOT_RING slots can take orders at once: under (SLOT_RING - 1 slots after S), at (SLOT_RING slots
    /// open: S .. S + SLOT_RING - 1) and over (S + SLOT_RING while S still takes orders).
    function test_openSlot_ringLimit_underAtOver() public {
        _open(S);
        _trade(S);
        _open(S + uint64(ring) - 2); // under: another set
        _open(S + uint64(ring) - 1); // at: every set holds a slot still taking orders
        uint64 over = S + uint64(ring);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.LevelWordsInUse.selector, over, S));
        market.openSlot(over);
        // One second before S's gate closes it still takes orders: still refused.
        vm.warp(market.gateClosureTime(S) - 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.LevelWordsInUse.selector, over, S));
        market.openSlot(over);
    }

    /// Once S's gate has closed its book is final; if nobody cleared it, opening the slot that reuses its words
    /// clears it first, with the result `clear` would have given, and its participants settle as usual.
    function test_openSlot_clearsTheUnclearedSlotWhoseWordsItReuses() public {
        _open(S);
        _trade(S);
        uint64 next = S + uint64(ring);
        vm.warp(market.gateClosureTime(S));
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotCleared(S, 150e15, 200, 250e15, 150e15);
        _open(next);
        assertEq(uint8(market.slotInfo(S).status), uint8(IEnergyMarket.SlotStatus.Cleared), "S cleared");
        assertEq(uint8(market.slotInfo(next).status), uint8(IEnergyMarket.SlotStatus.Open), "next open");
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.AlreadyCleared.selector, S));
        market.clear(S);
        // Settlement of S works from its header alone.
        vm.warp(_start(S));
        _read(seller, 0, 0, uint64(_start(S)));
        _read(buyer, 0, 0, uint64(_start(S)));
        vm.warp(_start(S) + SLOT - 1);
        _read(seller, 0, 200, uint64(_start(S) + SLOT - 1));
        _read(buyer, 200, 0, uint64(_start(S) + SLOT - 1));
        vm.warp(market.settlementOpensAt(S));
        uint256 sellerBefore = _free(seller);
        address[] memory both = new address[](2);
        (both[0], both[1]) = (seller, buyer);
        market.settle(S, both);
        // The seller's collateral for 300 Wh comes back and 200 Wh sold at 0.15 are paid.
        uint256 collateral = _cost(300, RETAIL + PREMIUM - 150e15);
        assertEq(_free(seller), sellerBefore + collateral + _cost(200, 150e15), "seller paid at the clearing price");
        assertEq(market.lockedOf(S, buyer), 0, "buyer's escrow released");
    }

    /// An empty slot that nobody cleared is cleared (with no trade) when its words are reused.
    function test_openSlot_clearsAnEmptySlotWhoseWordsItReuses() public {
        _open(S);
        vm.warp(market.gateClosureTime(S));
        _open(S + uint64(ring));
        IEnergyMarket.SlotInfo memory info = market.slotInfo(S);
        assertEq(uint8(info.status), uint8(IEnergyMarket.SlotStatus.Cleared), "cleared");
        assertEq(info.clearedWh, 0, "nothing traded");
    }

    // ------------------------------------------------------------------ storage over 1,000 slots

    /// One simulated slot per iteration, as the keeper and settler run it: open slot `j + 2`, four sellers and four
    /// buyers order in it, clear slot `j`, settle slot `j - 2` for everyone (no readings: the meter contract's words
    /// are not the market's). The market's storage is counted after 500 and 1,000 slots: from the time the ring has
    /// wrapped, a slot adds only its header and its cleared-volume word (before issue 14 part 7 it added 223).
    function test_storageWords_after1000Slots() public {
        address[8] memory p;
        for (uint256 i = 0; i < 8; ++i) {
            p[i] = _participant(
                string.concat("p", vm.toString(i)), i < 4 ? IRegistry.Role.Prosumer : IRegistry.Role.Consumer, 1000e18
            );
        }
        address[] memory all = new address[](8);
        for (uint256 i = 0; i < 8; ++i) {
            all[i] = p[i];
        }
        uint64 first = 10;
        uint64 slots = 1000;
        _open(first);
        _open(first + 1);
        vm.record();
        uint256 at500;
        for (uint64 j = first; j < first + slots; ++j) {
            vm.warp(market.gateClosureTime(j));
            market.clear(j);
            _open(j + 2);
            for (uint256 i = 0; i < 4; ++i) {
                vm.prank(p[i]);
                market.placeAsk(j + 2, uint32(100 + 10 * i), FEED_IN + (20 + 20 * i) * TICK);
                vm.prank(p[i + 4]);
                market.placeBid(j + 2, uint32(100 + 10 * i), FEED_IN + (50 + 20 * i) * TICK);
            }
            if (j >= first + 2) market.settle(j - 2, all);
            _collectWrites(address(market));
            if (j == first + slots / 2 - 1) at500 = _liveWords(address(market));
        }
        uint256 at1000 = _liveWords(address(market));
        _print("market storage words after 500 slots", at500);
        _print("market storage words after 1,000 slots", at1000);
        _print("of which price-level words (bounded)", ring * (MAX_LEVEL + 1));
        _print("words added per slot after the ring wrapped (x1000)", (at1000 - at500) * 1000 / 500);
        assertEq(at1000 - at500, 2 * 500, "each slot adds two words: its header and its cleared volume");
    }
}
