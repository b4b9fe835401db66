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

    // ------------------------------------------------------------------ settlement window and reclaimed words

    /// Opens, trades in and clears slot `slot` (the seller's 300 Wh ask rationed at 0.15, the buyer's 200 Wh bid filled).
    function _tradedSlot(uint64 slot) internal {
        _open(slot);
        _trade(slot);
        vm.warp(market.gateClosureTime(slot));
        market.clear(slot);
    }

    function test_settlementWindow_is4096Slots() public view {
        assertEq(market.SETTLEMENT_WINDOW(), 4096, "SETTLEMENT_WINDOW");
        assertEq(market.SLOT_WORDS_KEPT(), 8192, "SLOT_WORDS_KEPT");
        assertEq(market.settlementClosesAt(S), market.settlementOpensAt(S + 4096), "closes 4096 slots on");
    }

    /// Positions with orders settle normally until `settlementClosesAt` (one second before it: under), and are closed
    /// as expired from it (at, and over: a later call finds nothing left). The expired position's escrow is forfeited:
    /// no account is credited or debited, the buyer's ring word is free again.
    function test_settlementWindow_positionWithOrders_underAtOver() public {
        _tradedSlot(S);
        uint64 closes = uint64(market.settlementClosesAt(S));
        vm.warp(closes - 1);
        uint256 sellerBefore = _free(seller);
        market.settle(S, _one(seller));
        uint256 proceeds = _cost(300, RETAIL + PREMIUM - 150e15) + _cost(200, 150e15) - _cost(200, RETAIL + PREMIUM);
        assertEq(_free(seller), sellerBefore + proceeds, "under: settled as usual (unmetered: short 200 Wh)");

        vm.warp(closes);
        uint256 buyerFree = _free(buyer);
        uint256 gridFree = _free(grid);
        uint256 held = token.balanceOf(address(market));
        assertEq(market.lockedOf(S, buyer), 0, "at: nothing counts as locked any more");
        (uint64 b,) = market.previewFills(S, buyer);
        assertEq(b, 0, "and nothing will be filled");
        vm.expectEmit(address(market));
        emit IEnergyMarket.PositionExpired(S, buyer, 200, 0);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SettlementSkipped(S, seller, IEnergyMarket.SettlementExpired.selector);
        address[] memory both = new address[](2);
        (both[0], both[1]) = (buyer, seller);
        market.settle(S, both);
        assertEq(_free(buyer), buyerFree, "at: the buyer gets nothing back");
        assertEq(_free(grid), gridFree, "and the grid nothing");
        assertEq(token.balanceOf(address(market)), held, "the forfeited escrow stays in the market");
        assertTrue(market.positionOf(S, buyer).settled, "closed");

        vm.warp(closes + 1000);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SettlementSkipped(S, buyer, IEnergyMarket.SettlementExpired.selector);
        market.settle(S, _one(buyer));
    }

    /// An order whose position word holds an unsettled position of slot `S`: refused while `S` can still be settled
    /// (under), accepted from `settlementClosesAt(S)` on, closing the old position as expired (at).
    function test_settlementWindow_orderReusingTheWordOfAnExpiredPosition() public {
        _tradedSlot(S);
        uint64 later = S + 65 * uint64(market.POSITION_RING()); // same ring word, after the window
        uint256 closes = market.settlementClosesAt(S);
        assertGt(_start(later) - GATE, closes, "still orderable when the window closes");
        vm.warp(closes - 1);
        _open(later);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.PositionSlotBusy.selector, buyer, S));
        market.placeBid(later, 100, 200e15);
        vm.warp(closes);
        vm.expectEmit(address(market));
        emit IEnergyMarket.PositionExpired(S, buyer, 200, 0);
        vm.prank(buyer);
        market.placeBid(later, 100, 200e15);
        assertEq(market.positionOf(later, buyer).bidWh, 100, "the word holds the new position");
        vm.expectEmit(address(market));
        emit IEnergyMarket.SettlementSkipped(S, buyer, IEnergyMarket.SettlementExpired.selector);
        market.settle(S, _one(buyer));
    }

    /// `openSlot(k)` deletes the words of slot `k - SLOT_WORDS_KEPT`: not those of a slot one closer (under), those of
    /// `S` exactly at the distance (at), and nothing of `S` from a slot one further (over: it deletes `S + 1`'s).
    /// Afterwards `S` reads as never opened: `slotInfo` Empty, `clear` has nothing to clear, and `settle` closes
    /// positions as expired without reading a slot word.
    function test_openSlot_reclaimsWordsAtTheDistance_underAtOver() public {
        uint64 kept = uint64(market.SLOT_WORDS_KEPT());
        _tradedSlot(S);
        _open(S + 1);
        vm.warp(market.gateClosureTime(S + 1));
        market.clear(S + 1);
        vm.warp(_start(S + kept + 1) - 3600);
        _open(S + kept - 1); // under: reclaims slot S - 1, never opened
        assertEq(uint8(market.slotInfo(S).status), uint8(IEnergyMarket.SlotStatus.Cleared), "under: kept");
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotWordsReclaimed(S);
        _open(S + kept); // at
        IEnergyMarket.SlotInfo memory info = market.slotInfo(S);
        assertEq(uint8(info.status), uint8(IEnergyMarket.SlotStatus.Empty), "at: reclaimed");
        assertEq(info.clearedWh, 0, "no result left");
        (uint64 bf, uint64 bv,,) = market.marginalState(S);
        assertEq(bf + bv, 0, "no pro-rata state left");
        assertEq(uint256(vm.load(address(market), _headerWord(S))), 0, "header word zero");
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NothingToClear.selector, S));
        market.clear(S);
        assertEq(market.positionOf(S, buyer).bidPricePerKWh, 0, "prices gone with the header");
        vm.expectEmit(address(market));
        emit IEnergyMarket.PositionExpired(S, seller, 0, 300);
        market.settle(S, _one(seller));
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotWordsReclaimed(S + 1);
        _open(S + kept + 1); // over: S + 1's words, not S's
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NothingToReclaim.selector, S));
        market.reclaimSlot(S);
        assertEq(uint8(market.slotInfo(S + kept).status), uint8(IEnergyMarket.SlotStatus.Open), "new slot open");
    }

    /// `reclaimSlot` (anyone) deletes the words of a slot whose successor `SLOT_WORDS_KEPT` later was opened before
    /// the window closed (so `openSlot` kept them) or never: refused before `settlementClosesAt`, accepted at it,
    /// and refused again once nothing is left.
    function test_reclaimSlot_underAtOver() public {
        _tradedSlot(S);
        uint256 closes = market.settlementClosesAt(S);
        vm.warp(closes - 1);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.SettlementWindowOpen.selector, S, closes));
        market.reclaimSlot(S);
        // The keeper opening the slot `SLOT_WORDS_KEPT` later this early keeps S's words (its window is open).
        _open(S + uint64(market.SLOT_WORDS_KEPT()));
        assertEq(uint8(market.slotInfo(S).status), uint8(IEnergyMarket.SlotStatus.Cleared), "kept while open");
        vm.warp(closes);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotWordsReclaimed(S);
        market.reclaimSlot(S);
        assertEq(uint256(vm.load(address(market), _headerWord(S))), 0, "header deleted");
        assertEq(uint256(vm.load(address(market), _marginalWord(S))), 0, "cleared-volume word deleted");
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NothingToReclaim.selector, S));
        market.reclaimSlot(S);
    }

    function _one(address a) internal pure returns (address[] memory list) {
        list = new address[](1);
        list[0] = a;
    }

    /// Storage slot of `_headers[slot]` (the market's second state variable, after `_accounts`).
    function _headerWord(uint64 slot) internal pure returns (bytes32) {
        return keccak256(abi.encode(uint256(slot), uint256(1)));
    }

    /// Storage slot of `_marginals[slot]` (the third state variable).
    function _marginalWord(uint64 slot) internal pure returns (bytes32) {
        return keccak256(abi.encode(uint256(slot), uint256(2)));
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

    /// The same keeper-and-settler run over `SLOT_WORDS_KEPT + 1,000` slots (with an 11-level price range, so that each
    /// `openSlot` is cheap): until slot `SLOT_WORDS_KEPT` each slot adds its header and cleared-volume word; from then
    /// on `openSlot(k)` deletes those of slot `k - SLOT_WORDS_KEPT`, and the market's word count stops growing.
    function test_storageWords_stopGrowingOnceSlotWordsWrap() public {
        vm.prank(operator);
        registry.setDefaultPrices(FEED_IN + 10 * TICK, FEED_IN);
        address[] memory all = new address[](4);
        for (uint256 i = 0; i < 4; ++i) {
            all[i] = _participant(
                string.concat("q", vm.toString(i)), i < 2 ? IRegistry.Role.Prosumer : IRegistry.Role.Consumer, 1000e18
            );
        }
        uint64 first = 10;
        uint64 kept = uint64(market.SLOT_WORDS_KEPT());
        for (uint64 k = first; k < first + 2; ++k) {
            _open(k);
            _book4(k, all);
        }
        vm.record();
        uint256[4] memory at; // after 500 slots, SLOT_WORDS_KEPT - 2 slots (the last before a deletion), + 502, + 1,002
        for (uint64 j = first; j < first + kept + 1000; ++j) {
            vm.warp(market.gateClosureTime(j));
            market.clear(j);
            _open(j + 2);
            _book4(j + 2, all);
            if (j >= first + 2) market.settle(j - 2, all);
            _collectWrites(address(market));
            uint64 done = j - first + 1;
            if (done == 500) at[0] = _liveWords(address(market));
            if (done == kept - 2) at[1] = _liveWords(address(market));
            if (done == kept + 500) at[2] = _liveWords(address(market));
        }
        at[3] = _liveWords(address(market));
        _print("market storage words after 500 slots", at[0]);
        _print("market storage words after 8,190 slots", at[1]);
        _print("market storage words after 8,692 slots", at[2]);
        _print("market storage words after 9,192 slots", at[3]);
        assertEq(at[1] - at[0], 2 * (kept - 2 - 500), "until the slot words wrap, two words per slot");
        assertEq(at[2], at[1], "then none: each opened slot deletes the words of the slot 8,192 earlier");
        assertEq(at[3], at[2], "and the count stays flat");
    }

    /// Two asks and two bids in `slot` that cross (so clearing keeps a cleared-volume word).
    function _book4(uint64 slot, address[] memory all) internal {
        for (uint256 i = 0; i < 2; ++i) {
            vm.prank(all[i]);
            market.placeAsk(slot, uint32(100 + 10 * i), FEED_IN + (2 + 3 * i) * TICK);
            vm.prank(all[i + 2]);
            market.placeBid(slot, uint32(100 + 10 * i), FEED_IN + (4 + 3 * i) * TICK);
        }
    }
}
