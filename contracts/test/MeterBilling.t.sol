// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Fixture} from "./utils/Fixture.sol";
import {Vm} from "./utils/Vm.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";
import {IMeterReadings} from "../src/interfaces/IMeterReadings.sol";
import {IRegistry} from "../src/interfaces/IRegistry.sol";
import {EnergyMarket} from "../src/EnergyMarket.sol";
import {MeterReadings} from "../src/MeterReadings.sol";
import {Registry} from "../src/Registry.sol";

/// Issue 14, parts 4 and 6: bills follow the meter bound in the delivered slot (binding history with a slot
/// boundary), participants with a meter but no order are settled against the grid, and an underfunded grid
/// account leaves a debt instead of locking everyone's escrow.
contract MeterBillingTest is Fixture {
    uint64 internal constant S = 4;
    uint256 internal constant FUNDS = 100e18;
    uint48 internal constant OPEN = type(uint48).max;

    address internal alice; // prosumer
    address internal bob; // consumer
    address internal carol; // prosumer
    address internal dave; // consumer

    function setUp() public {
        _deploy(IEnergyMarket.MarketMode.PayAsClear);
        _fundGrid(1000e18);
        alice = _participant("alice", IRegistry.Role.Prosumer, FUNDS);
        bob = _participant("bob", IRegistry.Role.Consumer, FUNDS);
        carol = _participant("carol", IRegistry.Role.Prosumer, FUNDS);
        dave = _participant("dave", IRegistry.Role.Consumer, FUNDS);
        for (uint64 k = S; k < S + 4; ++k) {
            _open(k);
        }
    }

    // ------------------------------------------------------------------ helpers

    function _open(uint64 slot) internal {
        vm.prank(operator);
        market.openSlot(slot);
    }

    /// Clears every opened slot up to `last` whose gate has closed (empty slots too: settlement needs it).
    function _clear(uint64 first, uint64 last) internal {
        for (uint64 k = first; k <= last; ++k) {
            if (market.slotInfo(k).status == IEnergyMarket.SlotStatus.Open) market.clear(k);
        }
    }

    function _one(address p) internal pure returns (address[] memory a) {
        a = new address[](1);
        a[0] = p;
    }

    /// Warps into slot `slot` (10 s after its start).
    function _into(uint64 slot) internal {
        vm.warp(_start(slot) + 10);
    }

    /// Has the meter with key `key` report cumulative counters at `ts` (relayed, signed by the meter); moves time
    /// forward to `ts` first if it lies ahead.
    function _report(uint256 key, uint64 imp, uint64 exp, uint64 ts) internal {
        if (block.timestamp < ts) vm.warp(ts);
        IMeterReadings.SignedReading[] memory batch = new IMeterReadings.SignedReading[](1);
        batch[0] = _signed(key, imp, exp, ts);
        readings.submitReadings(batch);
    }

    /// The `ParticipantSettled` import and export of `account` in the logs, and whether there was one.
    function _settledEnergy(Vm.Log[] memory logs, address account)
        internal
        pure
        returns (bool found, uint64 imp, uint64 exp)
    {
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].topics[0] != IEnergyMarket.ParticipantSettled.selector) continue;
            if (logs[i].topics[2] != bytes32(uint256(uint160(account)))) continue;
            (,, imp, exp,,) = abi.decode(logs[i].data, (uint64, uint64, uint64, uint64, uint256, uint256));
            return (true, imp, exp);
        }
    }

    /// The skip reason logged for `account`, or zero.
    function _skipReason(Vm.Log[] memory logs, address account) internal pure returns (bytes4) {
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].topics[0] != IEnergyMarket.SettlementSkipped.selector) continue;
            if (logs[i].topics[2] != bytes32(uint256(uint160(account)))) continue;
            return abi.decode(logs[i].data, (bytes4));
        }
        return 0;
    }

    /// Settles `who` alone in `slot` and returns the metered energy it was billed for (reverts the test if skipped).
    function _billed(uint64 slot, address who) internal returns (uint64 imp, uint64 exp) {
        vm.recordLogs();
        market.settle(slot, _one(who));
        bool found;
        (found, imp, exp) = _settledEnergy(vm.getRecordedLogs(), who);
        assertTrue(found, "settled");
    }

    /// Settles `who` alone in `slot` and returns the skip reason (zero if it was settled).
    function _skipped(uint64 slot, address who) internal returns (bytes4) {
        vm.recordLogs();
        market.settle(slot, _one(who));
        return _skipReason(vm.getRecordedLogs(), who);
    }

    // ================================================================== part 4: the binding history

    function test_bindMeter_takesEffectFromTheNextSlot() public {
        address eve = makeAddr("eve");
        (address m,) = makeKey("eve-meter");
        _into(5);
        vm.startPrank(operator);
        registry.registerParticipant(eve, IRegistry.Role.Consumer);
        vm.expectEmit(address(registry));
        emit IRegistry.MeterBound(m, eve, 6);
        vm.expectEmit(address(market));
        emit IEnergyMarket.MeterSynced(eve, _packed(m, 6, OPEN), 0);
        registry.bindMeter(m, eve);
        vm.stopPrank();
        assertEq(registry.meterAt(eve, 5), address(0), "not in the slot it was bound in");
        assertEq(registry.meterAt(eve, 6), m, "from the next slot");
        assertEq(registry.meterAt(eve, 1000), m, "while open");
        assertEq(registry.participantAt(m, 5), address(0), "meter free in slot 5");
        assertEq(registry.participantAt(m, 6), eve, "meter bound in slot 6");
        assertEq(registry.meterOf(eve), m, "open binding");
        assertEq(registry.participantOf(m), eve, "pending binding accepts readings (baseline for slot 6)");
        IRegistry.Binding[] memory h = registry.meterBindings(m);
        assertEq(h.length, 1, "one binding");
        assertEq(h[0].account, eve, "participant");
        assertEq(h[0].fromSlot, 6, "from");
        assertEq(h[0].untilSlot, OPEN, "open");
    }

    /// Unbinding during slot 5 ends the binding after slot 5; the meter's readings are still taken during slot 6
    /// (to close slot 5) and refused from slot 7: under, at and over the reading window.
    function test_unbindMeter_endsAfterTheCurrentSlot_readingWindow() public {
        address m = meterAddrOf[alice];
        _into(5);
        vm.expectEmit(address(registry));
        emit IRegistry.MeterUnbound(m, alice, 6);
        vm.prank(operator);
        registry.unbindMeter(m);
        assertEq(registry.meterAt(alice, 5), m, "still alice's in slot 5");
        assertEq(registry.meterAt(alice, 6), address(0), "not from slot 6");
        assertEq(registry.meterOf(alice), address(0), "no open binding");
        assertEq(registry.participantOf(m), alice, "readings taken in slot 5");
        _report(meterKeyOf[alice], 10, 0, uint64(_start(5) + 20));
        vm.warp(_start(7) - 1);
        assertEq(registry.participantOf(m), alice, "readings taken up to the end of slot 6");
        _report(meterKeyOf[alice], 20, 0, uint64(_start(6) + 1));
        vm.warp(_start(7));
        assertEq(registry.participantOf(m), address(0), "refused from slot 7");
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.UnknownMeter.selector, m));
        vm.prank(m);
        readings.submitReading(30, 0, uint64(_start(7)));
    }

    function test_unbindMeter_beforeItTookEffect_dropsTheBinding() public {
        address eve = makeAddr("eve");
        (address m,) = makeKey("eve-meter");
        _into(5);
        vm.startPrank(operator);
        registry.registerParticipant(eve, IRegistry.Role.Consumer);
        registry.bindMeter(m, eve);
        vm.expectEmit(address(registry));
        emit IRegistry.MeterUnbound(m, eve, 6); // until == from: cancelled
        vm.expectEmit(address(market));
        emit IEnergyMarket.MeterSynced(eve, 0, 0);
        registry.unbindMeter(m);
        vm.stopPrank();
        assertEq(registry.meterBindings(m).length, 0, "dropped from the meter's history");
        assertEq(registry.participantBindings(eve).length, 0, "and the participant's");
        assertEq(registry.meterAt(eve, 6), address(0), "never in effect");
    }

    /// One meter per participant and slot: a second open binding is refused, a swap in one slot is not.
    function test_bindMeter_oneMeterPerSlot() public {
        (address m2,) = makeKey("alice-meter-2");
        address m1 = meterAddrOf[alice];
        _into(5);
        vm.startPrank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRegistry.ParticipantHasMeter.selector, alice, m1));
        registry.bindMeter(m2, alice);
        registry.unbindMeter(m1);
        registry.bindMeter(m2, alice);
        vm.expectRevert(abi.encodeWithSelector(IRegistry.MeterAlreadyBound.selector, m2, alice));
        registry.bindMeter(m2, bob);
        vm.stopPrank();
        assertEq(registry.meterAt(alice, 5), m1, "old meter through slot 5");
        assertEq(registry.meterAt(alice, 6), m2, "new meter from slot 6");
        assertEq(registry.participantBindings(alice).length, 2, "two bindings");
    }

    /// Binary search over a long history: every slot maps to the meter of its binding. Alice is settled in the
    /// opened slots first: otherwise the third binding would be refused (`BindingStillNeeded`, see below).
    function test_meterAt_longHistory() public {
        address m1 = meterAddrOf[alice];
        (address m2,) = makeKey("alice-meter-2");
        _into(10);
        _clear(S, S + 3);
        for (uint64 k = S; k < S + 4; ++k) {
            market.settle(k, _one(alice));
        }
        vm.startPrank(operator);
        for (uint64 i = 0; i < 10; ++i) {
            // Swap i, during slot 10 + 2i: m1 -> m2 for even i, m2 -> m1 for odd i.
            _into(10 + 2 * i);
            registry.unbindMeter(i % 2 == 0 ? m1 : m2);
            registry.bindMeter(i % 2 == 0 ? m2 : m1, alice);
        }
        vm.stopPrank();
        assertEq(registry.participantBindings(alice).length, 11, "eleven bindings");
        assertEq(registry.meterAt(alice, 0), m1, "first binding");
        assertEq(registry.meterAt(alice, 10), m1, "through the slot of the first swap");
        for (uint64 k = 11; k < 31; ++k) {
            // Slots 11 + 2i and 12 + 2i follow swap i.
            uint64 i = (k - 11) / 2;
            assertEq(registry.meterAt(alice, k), i % 2 == 0 ? m2 : m1, "slot's meter");
        }
        assertEq(registry.meteredAccountCount(), 4, "four metered accounts");
        address[] memory page = registry.meteredAccounts(1, 2);
        assertEq(page.length, 2, "page");
        assertEq(page[0], bob, "second");
        assertEq(page[1], carol, "third");
        assertEq(registry.meteredAccounts(3, 10).length, 1, "clipped");
        assertEq(registry.meteredAccounts(9, 10).length, 0, "past the end");
    }

    // ================================================================== part 4: the three cases of the issue

    /// (a) A participant removed after delivery is still billed for what his meter measured, with and without
    /// orders in the slot.
    function test_removedAfterDelivery_isStillBilled() public {
        vm.prank(alice);
        market.placeAsk(S, 1000, 100e15);
        vm.prank(bob);
        market.placeBid(S, 1000, 200e15);
        vm.warp(market.gateClosureTime(S));
        _clear(S, S); // 1000 Wh at 0.15
        _report(meterKeyOf[bob], 0, 0, uint64(_start(S) - 1));
        _report(meterKeyOf[dave], 0, 0, uint64(_start(S) - 1));
        _report(meterKeyOf[alice], 0, 0, uint64(_start(S) - 1));
        vm.warp(_start(S) + SLOT - 1);
        _report(meterKeyOf[bob], 1300, 0, uint64(_start(S) + SLOT - 2));
        _report(meterKeyOf[dave], 700, 0, uint64(_start(S) + SLOT - 2));
        _report(meterKeyOf[alice], 0, 1000, uint64(_start(S) + SLOT - 2));

        _into(S + 1); // after delivery, before settlement
        vm.startPrank(operator);
        registry.removeParticipant(bob);
        registry.removeParticipant(dave);
        vm.stopPrank();

        vm.warp(market.settlementOpensAt(S));
        (uint64 bi,) = _billed(S, bob);
        (uint64 di,) = _billed(S, dave);
        assertEq(bi, 1300, "bob's consumption");
        assertEq(di, 700, "dave's consumption");
        assertEq(_free(bob), FUNDS - _cost(1000, 150e15) - _cost(300, RETAIL), "bob pays trade and excess");
        assertEq(_free(dave), FUNDS - _cost(700, RETAIL), "dave pays the grid");
        // Removed during slot S+1: that slot is still his, the next one is not.
        vm.warp(market.settlementOpensAt(S + 2));
        _clear(S + 1, S + 2);
        assertEq(_skipped(S + 1, bob), bytes4(0), "the slot of the removal is still billed to him");
        assertEq(_skipped(S + 2, bob), IEnergyMarket.NoPosition.selector, "no meter after it");
    }

    /// (b) The old meter rebound to a new tenant bills the tenant only from the slot after the rebinding, and
    /// the former participant for the slots before.
    function test_reboundMeter_billsTenantOnlyForNewSlots() public {
        uint256 key = meterKeyOf[bob];
        address m = meterAddrOf[bob];
        address eve = makeAddr("eve");
        _report(key, 0, 0, uint64(_start(S) - 1));
        uint64[4] memory use = [uint64(500), 600, 800, 900];
        uint64 total;
        for (uint64 i = 0; i < 4; ++i) {
            if (i == 1) {
                // During slot S+1: bob leaves, eve moves in with his meter (from slot S+2).
                vm.warp(_start(S + 1) + 100);
                vm.startPrank(operator);
                registry.removeParticipant(bob);
                registry.registerParticipant(eve, IRegistry.Role.Consumer);
                registry.bindMeter(m, eve);
                vm.stopPrank();
            }
            total += use[i];
            _report(key, total, 0, uint64(_start(S + i) + SLOT - 2));
        }
        vm.warp(market.settlementOpensAt(S + 3));
        _clear(S, S + 3);
        (uint64 b0,) = _billed(S, bob);
        (uint64 b1,) = _billed(S + 1, bob);
        assertEq(b0, 500, "bob, slot S");
        assertEq(b1, 600, "bob, slot S+1 (the slot of the rebinding)");
        assertEq(_skipped(S, eve), IEnergyMarket.NoPosition.selector, "eve had no meter in S");
        assertEq(_skipped(S + 1, eve), IEnergyMarket.NoPosition.selector, "nor in S+1");
        (uint64 e2,) = _billed(S + 2, eve);
        (uint64 e3,) = _billed(S + 3, eve);
        assertEq(e2, 800, "eve, slot S+2");
        assertEq(e3, 900, "eve, slot S+3");
        assertEq(_skipped(S + 2, bob), IEnergyMarket.NoPosition.selector, "bob not billed after");
        assertEq(_free(bob), FUNDS - _cost(1100, RETAIL), "bob paid his two slots");
        assertEq(_free(eve), 0, "eve had no credits");
        assertEq(_debt(eve), _cost(1700, RETAIL), "eve owes her two slots");
    }

    /// (c) A meter swap in the middle of the day: the slots up to the swap use the old meter, the later ones the
    /// new one, even though the old meter keeps reporting (say, on a test bench) after it was removed.
    function test_meterSwapMidDay() public {
        uint64 k = 40;
        for (uint64 j = k; j < k + 4; ++j) {
            _open(j);
        }
        uint256 k1 = meterKeyOf[alice];
        (address m2, uint256 k2) = makeKey("alice-meter-2");
        vm.warp(_start(k) - 1);
        _report(k1, 0, 0, uint64(_start(k) - 1));
        vm.warp(_start(k + 1) - 1);
        _report(k1, 100, 10, uint64(_start(k + 1) - 1)); // slot k: 100 / 10
        _into(k + 1);
        vm.startPrank(operator);
        registry.unbindMeter(meterAddrOf[alice]);
        registry.bindMeter(m2, alice);
        vm.stopPrank();
        _report(k2, 0, 0, uint64(_start(k + 1) + 20)); // the new meter's baseline
        vm.warp(_start(k + 2) - 1);
        _report(k1, 300, 30, uint64(_start(k + 2) - 1)); // slot k+1: 200 / 20 on the old meter
        _report(k2, 0, 0, uint64(_start(k + 2) - 2));
        vm.warp(_start(k + 3) - 1);
        _report(k1, 1299, 30, uint64(_start(k + 3) - 2)); // the old meter in slot k+2: not alice's any more
        _report(k2, 400, 5, uint64(_start(k + 3) - 1)); // slot k+2: 400 / 5
        vm.warp(_start(k + 4) - 1);
        _report(k2, 450, 5, uint64(_start(k + 4) - 1)); // slot k+3: 50 / 0

        vm.warp(market.settlementOpensAt(k + 3));
        _clear(k, k + 3);
        uint64[4] memory imp = [uint64(100), 200, 400, 50];
        uint64[4] memory exp = [uint64(10), 20, 5, 0];
        uint256 paid;
        for (uint64 j = 0; j < 4; ++j) {
            (uint64 i, uint64 e) = _billed(k + j, alice);
            assertEq(i, imp[j], "import of the slot's meter");
            assertEq(e, exp[j], "export of the slot's meter");
            paid += _cost(i, RETAIL);
            paid -= _cost(e, FEED_IN);
        }
        assertEq(_free(alice), FUNDS - paid, "billed slot by slot");
    }

    /// The market keeps the latest binding and the one before it (pushed by the registry), so a meter swap's earlier
    /// slots settle without a registry call. A third binding, which drops the copy of the first, is refused while a
    /// slot of the first can still be settled (`BindingStillNeeded`, newest such slot first) and accepted once they
    /// are settled. Three meters and two gaps: every slot is billed to the meter bound in it.
    ///   m1 [.., k+2)   gap k+2   m2 [k+3, k+4)   gap k+4   m3 [k+5, ..)
    function test_meterHistory_twoSwapsAndGaps_eachSlotBilledToItsMeter() public {
        uint64 k = 40;
        for (uint64 j = k; j < k + 6; ++j) {
            _open(j);
        }
        uint256 k1 = meterKeyOf[alice];
        address m1 = meterAddrOf[alice];
        (address m2, uint256 k2) = makeKey("alice-meter-2");
        (address m3, uint256 k3) = makeKey("alice-meter-3");
        _report(k1, 0, 0, uint64(_start(k) - 1));
        _report(k1, 100, 10, uint64(_start(k + 1) - 1)); // slot k: 100 / 10
        _into(k + 1);
        vm.prank(operator);
        registry.unbindMeter(m1); // m1 until k+2
        _report(k1, 300, 30, uint64(_start(k + 2) - 1)); // slot k+1: 200 / 20
        _into(k + 2);
        vm.prank(operator);
        registry.bindMeter(m2, alice); // m2 from k+3
        _report(k2, 0, 0, uint64(_start(k + 3)));
        _into(k + 3);
        vm.startPrank(operator);
        registry.unbindMeter(m2); // m2 until k+4
        vm.stopPrank();
        _report(k2, 70, 7, uint64(_start(k + 4) - 1)); // slot k+3: 70 / 7
        _into(k + 4);
        _clear(S, S + 3);
        for (uint64 j = S; j < S + 4; ++j) {
            market.settle(j, _one(alice)); // the slots set-up opened, also m1's
        }
        _clear(k, k + 3);
        // m3 would drop the copy of m1, and slots k and k+1 (m1's, no orders) can still be settled.
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.BindingStillNeeded.selector, alice, k + 1, m1));
        vm.prank(operator);
        registry.bindMeter(m3, alice);
        (uint64 i, uint64 e) = _billed(k + 1, alice);
        assertEq(i, 200, "slot k+1 on m1, from the market's copy of the previous binding");
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.BindingStillNeeded.selector, alice, k, m1));
        vm.prank(operator);
        registry.bindMeter(m3, alice);
        (i, e) = _billed(k, alice);
        assertEq(i, 100, "slot k on m1");
        assertEq(e, 10, "slot k export");
        vm.expectEmit(address(market));
        emit IEnergyMarket.MeterSynced(alice, _packed(m3, k + 5, OPEN), _packed(m2, k + 3, k + 4));
        vm.prank(operator);
        registry.bindMeter(m3, alice); // m3 from k+5: accepted once m1's slots are settled
        _report(k3, 0, 0, uint64(_start(k + 5)));
        _report(k3, 500, 50, uint64(_start(k + 6) - 1)); // slot k+5: 500 / 50

        vm.warp(market.settlementOpensAt(k + 5));
        _clear(k + 4, k + 5);
        // Latest binding, previous binding, and the two gaps; the slots before both copies were settled before.
        (i, e) = _billed(k + 5, alice);
        assertEq(i, 500, "slot k+5 on m3, the latest binding");
        assertEq(e, 50, "slot k+5 export");
        (i, e) = _billed(k + 3, alice);
        assertEq(i, 70, "slot k+3 on m2, the previous binding");
        assertEq(e, 7, "slot k+3 export");
        assertEq(_skipped(k + 4, alice), IEnergyMarket.NoPosition.selector, "gap between m2 and m3: no meter");
        assertEq(_skipped(k + 2, alice), IEnergyMarket.NoPosition.selector, "gap between m1 and m2: no meter");
        // Before both copies the market knows no meter any more: a second settlement is skipped as `NoPosition`
        // (nothing moves), and the record keeps the first.
        uint256 free = _free(alice);
        assertEq(_skipped(k + 1, alice), IEnergyMarket.NoPosition.selector, "before both copies: no meter");
        assertEq(_skipped(k, alice), IEnergyMarket.NoPosition.selector, "before both copies: no meter");
        assertEq(_free(alice), free, "not billed twice");
        assertTrue(market.settledWithoutOrders(k, alice), "the record of the settlement made before the change");
    }

    // ================================================================== part 8: a binding still needed

    /// Swaps `who`'s meter during the current slot: unbinds the meter bound now and binds `fresh`.
    function _swapTo(address who, address fresh) internal {
        vm.startPrank(operator);
        registry.unbindMeter(registry.meterOf(who));
        registry.bindMeter(fresh, who);
        vm.stopPrank();
    }

    /// A position with orders in slot S whose meter m1 was swapped for m2: a third binding (dropping m1's copy) is
    /// refused until `settlementClosesAt(S)` (under: one second before), accepted at it (the position can then only
    /// expire, which needs no meter) and after it (over); and accepted at any time once S is settled. Unbinding and
    /// removal, which drop no copy, are never refused, and S is still billed from m1 after them.
    function test_bindingStillNeeded_positionWithOrders_underAtOver() public {
        address m1 = meterAddrOf[alice];
        (address m2,) = makeKey("alice-meter-2");
        (address m3,) = makeKey("alice-meter-3");
        vm.prank(alice);
        market.placeAsk(S, 1000, 100e15);
        vm.prank(bob);
        market.placeBid(S, 1000, 200e15);
        _report(meterKeyOf[alice], 0, 0, uint64(_start(S) - 1));
        _report(meterKeyOf[alice], 0, 1000, uint64(_start(S) + SLOT - 2)); // delivers what it sells
        _into(S + 1);
        _swapTo(alice, m2); // m1 until S+2, m2 from S+2
        _clear(S, S);
        uint256 closes = market.settlementClosesAt(S);
        uint256 snap = vm.snapshotState();

        // Under: the position can still be settled, so its meter's copy must stay.
        vm.warp(closes - 1);
        vm.startPrank(operator);
        registry.unbindMeter(m2); // unbinding drops no copy: never refused
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.BindingStillNeeded.selector, alice, S, m1));
        registry.bindMeter(m3, alice);
        vm.stopPrank();
        // Settling first makes the change possible; S is billed from m1.
        (, uint64 e) = _billed(S, alice);
        assertEq(e, 1000, "S billed from m1");
        vm.prank(operator);
        registry.bindMeter(m3, alice);
        assertEq(registry.meterOf(alice), m3, "bound after settling");

        // At the closing time: the position can only expire now; the change is accepted.
        vm.revertToState(snap);
        vm.warp(closes);
        _swapTo(alice, m3);
        vm.expectEmit(address(market));
        emit IEnergyMarket.PositionExpired(S, alice, 0, 1000);
        market.settle(S, _one(alice));

        // Over: later still.
        vm.revertToState(snap);
        vm.warp(closes + SLOT);
        _swapTo(alice, m3);
        assertEq(registry.meterOf(alice), m3, "accepted after the window");

        // Removal drops no copy either: refused never, and S still billed from m1 after it.
        vm.revertToState(snap);
        vm.warp(market.settlementOpensAt(S + 3));
        vm.prank(operator);
        registry.removeParticipant(alice);
        (, e) = _billed(S, alice);
        assertEq(e, 1000, "S billed from m1 after the removal");
    }

    /// Dave has no orders: a slot of his first meter blocks the change that drops its copy until
    /// `gridSettlementClosesAt` (under: one second before; at and over: accepted), or until he is settled in it.
    function test_bindingStillNeeded_withoutOrders_underAtOver() public {
        address m1 = meterAddrOf[dave];
        (address m2,) = makeKey("dave-meter-2");
        (address m3,) = makeKey("dave-meter-3");
        _report(meterKeyOf[dave], 0, 0, uint64(_start(S) - 1));
        _report(meterKeyOf[dave], 150, 0, uint64(_start(S + 1) - 1)); // 150 Wh in S
        _report(meterKeyOf[dave], 300, 0, uint64(_start(S + 2) - 2)); // 150 Wh in S+1
        _into(S + 1);
        _swapTo(dave, m2); // m1 until S+2 (slots S and S+1), m2 from S+2
        _clear(S, S + 1);
        uint256 closes = market.gridSettlementClosesAt(S + 1);
        uint256 snap = vm.snapshotState();

        // Under: S's record has closed a slot earlier, S+1's has not.
        vm.warp(closes - 1);
        assertEq(_skipped(S, dave), IEnergyMarket.SettlementExpired.selector, "S can no longer be settled");
        vm.startPrank(operator);
        registry.unbindMeter(m2);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.BindingStillNeeded.selector, dave, S + 1, m1));
        registry.bindMeter(m3, dave);
        vm.stopPrank();
        (uint64 i,) = _billed(S + 1, dave);
        assertEq(i, 150, "S+1 billed from m1");
        vm.prank(operator);
        registry.bindMeter(m3, dave);
        assertEq(registry.meterOf(dave), m3, "bound after settling");

        // At the closing time nothing can be settled without orders any more: accepted.
        vm.revertToState(snap);
        vm.warp(closes);
        _swapTo(dave, m3);
        // S+1 now lies before both copies: the market knows no meter there (nothing could be settled anyway).
        assertEq(_skipped(S + 1, dave), IEnergyMarket.NoPosition.selector, "no meter known, nothing settled");
        assertEq(_free(dave), FUNDS, "unchanged");

        // Over.
        vm.revertToState(snap);
        vm.warp(closes + 1);
        _swapTo(dave, m3);
        assertEq(registry.meterOf(dave), m3, "accepted after the record closed");
    }

    /// Only slots the dropped binding covered and that were opened block: a slot in the gap before the next binding,
    /// and a slot nobody opened (it can never be cleared or settled), do not.
    function test_bindingStillNeeded_gapsAndUnopenedSlotsDoNotBlock() public {
        address m1 = meterAddrOf[dave];
        (address m2,) = makeKey("dave-meter-2");
        (address m3,) = makeKey("dave-meter-3");
        vm.warp(market.settlementOpensAt(S + 3)); // during S+4: m1 covers S..S+4; S+4 was never opened
        _clear(S, S + 3);
        for (uint64 j = S; j < S + 4; ++j) {
            market.settle(j, _one(dave));
        }
        vm.prank(operator);
        registry.unbindMeter(m1); // m1 until S+5
        _into(S + 6);
        vm.prank(operator);
        registry.bindMeter(m2, dave); // gap S+5, S+6; m2 from S+7
        _into(S + 7);
        _swapTo(dave, m3); // drops m1: its opened slots are settled, S+4 never opened, S+5 and S+6 a gap
        assertEq(registry.meterOf(dave), m3, "accepted");
        assertEq(registry.meterAt(dave, S + 4), m1, "S+4 was m1's, but never opened");
    }

    /// An account bound three times before the market became the registry's listener: the first change pushed to
    /// the market has a previous binding, so the market cannot tell whether older bindings exist and keeps asking the
    /// registry's history for it; slot 1, on the first meter and before both pushed copies, is billed from it.
    function test_accountBoundBeforeTheListener_keepsReadingTheRegistry() public {
        address[] memory admins = new address[](1);
        admins[0] = operator;
        Registry r = new Registry(admins, START, SLOT, TICK, RETAIL, FEED_IN);
        MeterReadings mr = new MeterReadings(r, GRACE);
        EnergyMarket m = new EnergyMarket(r, token, mr, grid, GATE, GRACE, IEnergyMarket.MarketMode.PayAsClear);
        address eve = makeAddr("eve");
        (address m1,) = makeKey("eve-meter-1");
        (address m2,) = makeKey("eve-meter-2");
        (address m3,) = makeKey("eve-meter-3");
        vm.warp(START - 100);
        vm.startPrank(operator);
        m.openSlot(1);
        r.registerParticipant(eve, IRegistry.Role.Consumer);
        r.bindMeter(m1, eve); // from slot 0
        vm.stopPrank();
        vm.warp(_start(1));
        vm.prank(m1);
        mr.submitReading(0, 0, uint64(_start(1)));
        vm.warp(_start(2) - 1);
        vm.prank(m1);
        mr.submitReading(400, 0, uint64(_start(2) - 1)); // slot 1: 400 Wh on m1
        vm.startPrank(operator);
        r.unbindMeter(m1); // during slot 1: m1 until 2
        r.bindMeter(m2, eve); // m2 from 2
        vm.warp(_start(2) + 10);
        r.unbindMeter(m2);
        r.bindMeter(m3, eve); // m2 [2, 3), m3 from 3
        vm.warp(_start(3) + 10);
        r.setRoleListener(address(m));
        m.syncRole(eve);
        vm.expectEmit(address(m));
        emit IEnergyMarket.MeterSynced(eve, _packed(m3, 3, 4), _packed(m2, 2, 3));
        r.unbindMeter(m3); // the first push: two copies, slot 1 before both
        vm.stopPrank();
        m.clear(1);
        vm.recordLogs();
        m.settle(1, _one(eve));
        (bool found, uint64 imp,) = _settledEnergy(vm.getRecordedLogs(), eve);
        assertTrue(found, "settled");
        assertEq(imp, 400, "slot 1 billed from m1, the registry's history");
    }

    // ================================================================== part 6: settled without orders

    /// A participant with a meter and no order pays its import at retail and is paid its export at feed-in.
    function test_settle_withoutOrders_againstTheGrid() public {
        _report(meterKeyOf[dave], 0, 0, uint64(_start(S) - 1));
        _report(meterKeyOf[carol], 0, 0, uint64(_start(S) - 1));
        vm.warp(_start(S) + SLOT - 1);
        _report(meterKeyOf[dave], 500, 0, uint64(_start(S) + SLOT - 2));
        _report(meterKeyOf[carol], 40, 300, uint64(_start(S) + SLOT - 2));
        vm.warp(market.settlementOpensAt(S));
        _clear(S, S);
        uint256 gridBefore = _free(grid);
        address[] memory both = new address[](2);
        (both[0], both[1]) = (dave, carol);
        vm.expectEmit(address(market));
        emit IEnergyMarket.ParticipantSettled(S, dave, 0, 0, 500, 0, 0, _cost(500, RETAIL));
        vm.expectEmit(address(market));
        emit IEnergyMarket.ParticipantSettled(S, carol, 0, 0, 40, 300, _cost(300, FEED_IN), _cost(40, RETAIL));
        market.settle(S, both);
        assertEq(_free(dave), FUNDS - _cost(500, RETAIL), "dave");
        assertEq(_free(carol), FUNDS - _cost(40, RETAIL) + _cost(300, FEED_IN), "carol");
        assertEq(_free(grid), gridBefore + _cost(540, RETAIL) - _cost(300, FEED_IN), "grid is the counterparty");
        assertTrue(market.settledWithoutOrders(S, dave), "recorded");
        assertEq(_skipped(S, dave), IEnergyMarket.AlreadySettled.selector, "once");
        assertEq(_free(dave), FUNDS - _cost(500, RETAIL), "not billed twice");
    }

    /// An account whose orders were all cancelled is settled against the grid too.
    function test_settle_withoutOrders_afterCancelling() public {
        vm.prank(carol);
        market.placeAsk(S, 500, 100e15);
        vm.prank(carol);
        market.cancelOrder(S, IEnergyMarket.Side.Ask);
        _report(meterKeyOf[carol], 0, 0, uint64(_start(S) - 1));
        vm.warp(_start(S) + SLOT - 1);
        _report(meterKeyOf[carol], 0, 200, uint64(_start(S) + SLOT - 2));
        vm.warp(market.settlementOpensAt(S));
        _clear(S, S);
        (, uint64 e) = _billed(S, carol);
        assertEq(e, 200, "export");
        assertEq(_free(carol), FUNDS + _cost(200, FEED_IN), "feed-in");
    }

    /// Settling without orders is open until `gridSettlementClosesAt` (the settlement of the slot 64 later):
    /// under and at that time, and the skip reason after it.
    function test_settle_withoutOrders_closingTime() public {
        _report(meterKeyOf[dave], 0, 0, uint64(_start(S) - 1));
        _report(meterKeyOf[bob], 0, 0, uint64(_start(S) - 1));
        vm.warp(_start(S) + SLOT - 1);
        _report(meterKeyOf[dave], 100, 0, uint64(_start(S) + SLOT - 2));
        _report(meterKeyOf[bob], 100, 0, uint64(_start(S) + SLOT - 2));
        vm.warp(market.gateClosureTime(S));
        _clear(S, S);
        uint256 closes = market.gridSettlementClosesAt(S);
        assertEq(closes, market.settlementOpensAt(S + 64), "64 slots");
        vm.warp(closes - 1);
        (uint64 i,) = _billed(S, dave);
        assertEq(i, 100, "just before the closing time");
        vm.warp(closes);
        assertEq(_skipped(S, bob), IEnergyMarket.SettlementExpired.selector, "at the closing time");
        assertEq(_free(bob), FUNDS, "unchanged");
    }

    /// Orders in slot S settled, then the ring word reused by slot S+64: the account is not billed again for S.
    function test_settle_withoutOrders_ringReusedAfterOrders_notBilledTwice() public {
        vm.prank(bob);
        market.placeBid(S, 100, 200e15); // unmatched
        _report(meterKeyOf[bob], 0, 0, uint64(_start(S) - 1));
        vm.warp(_start(S) + SLOT - 1);
        _report(meterKeyOf[bob], 300, 0, uint64(_start(S) + SLOT - 2));
        vm.warp(market.settlementOpensAt(S));
        _clear(S, S);
        _billed(S, bob);
        uint256 free = _free(bob);
        _open(S + 64);
        vm.prank(bob);
        market.placeBid(S + 64, 100, 200e15); // reuses the ring word of slot S
        assertEq(_skipped(S, bob), IEnergyMarket.AlreadySettled.selector, "remembered through the reuse");
        assertEq(_free(bob) + market.lockedOf(S + 64, bob), free, "not billed twice");
    }

    /// No orders in slot S, but an order for slot S+64 placed before S is settled: S is still billed once.
    function test_settle_withoutOrders_ringTakenByLaterSlot() public {
        _open(S + 64);
        vm.prank(dave);
        market.placeBid(S + 64, 100, 200e15); // takes the ring word S would use
        _report(meterKeyOf[dave], 0, 0, uint64(_start(S) - 1));
        vm.warp(_start(S) + SLOT - 1);
        _report(meterKeyOf[dave], 250, 0, uint64(_start(S) + SLOT - 2));
        vm.warp(market.settlementOpensAt(S));
        _clear(S, S);
        (uint64 i,) = _billed(S, dave);
        assertEq(i, 250, "billed");
        assertEq(_skipped(S, dave), IEnergyMarket.AlreadySettled.selector, "once");
        assertEq(market.positionOf(S + 64, dave).bidWh, 100, "the later order untouched");
    }

    /// A batch mixing traders, metered accounts without orders, strangers and repeats settles everyone once.
    function test_settle_mixedBatch() public {
        vm.prank(alice);
        market.placeAsk(S, 1000, 100e15);
        vm.prank(bob);
        market.placeBid(S, 1000, 200e15);
        vm.warp(market.settlementOpensAt(S));
        _clear(S, S);
        address[] memory batch = new address[](6);
        (batch[0], batch[1], batch[2], batch[3], batch[4], batch[5]) =
        (alice, bob, carol, dave, makeAddr("stranger"), dave);
        vm.recordLogs();
        market.settle(S, batch);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 settled;
        uint256 skipped;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].topics[0] == IEnergyMarket.ParticipantSettled.selector) settled++;
            if (logs[i].topics[0] == IEnergyMarket.SettlementSkipped.selector) skipped++;
        }
        assertEq(settled, 4, "two traders and two metered accounts");
        assertEq(skipped, 2, "the stranger and the repeat");
    }

    // ================================================================== part 6: an underfunded grid account

    /// The grid account holds exactly the feed-in it owes (at) or one base unit less (over): settlement completes
    /// either way, the seller is paid in full, and the shortfall is the grid's debt.
    function test_settle_gridUnderfunded_recordsDebt_atAndOver() public {
        for (uint256 short = 0; short <= 1; ++short) {
            _deploy(IEnergyMarket.MarketMode.PayAsClear);
            carol = _participant(string.concat("carol", short == 0 ? "0" : "1"), IRegistry.Role.Prosumer, FUNDS);
            bob = _participant(string.concat("bob", short == 0 ? "0" : "1"), IRegistry.Role.Consumer, FUNDS);
            _open(S);
            uint256 feedIn = _cost(1000, FEED_IN);
            _fundGrid(feedIn - short);
            vm.prank(bob);
            market.placeBid(S, 1000, 200e15); // unmatched: its escrow must come back
            _report(meterKeyOf[carol], 0, 0, uint64(_start(S) - 1));
            vm.warp(_start(S) + SLOT - 1);
            _report(meterKeyOf[carol], 0, 1000, uint64(_start(S) + SLOT - 2));
            vm.warp(market.settlementOpensAt(S));
            _clear(S, S);
            address[] memory both = new address[](2);
            (both[0], both[1]) = (carol, bob);
            vm.recordLogs();
            market.settle(S, both);
            Vm.Log[] memory logs = vm.getRecordedLogs();
            uint256 incurred;
            for (uint256 i = 0; i < logs.length; ++i) {
                if (logs[i].topics[0] == IEnergyMarket.GridDebtIncurred.selector) {
                    incurred += abi.decode(logs[i].data, (uint256));
                }
            }
            assertEq(_free(carol), FUNDS + feedIn, "paid in full");
            assertEq(_free(bob), FUNDS, "escrow back (unmatched, nothing used)");
            assertEq(_free(grid), 0, "grid drained");
            assertEq(_debt(grid), short, "grid debt");
            assertEq(incurred, short, "event");
            assertEq(
                token.balanceOf(address(market)) + _debt(grid),
                _free(carol) + _free(bob) + _free(grid),
                "claims = tokens + grid debt"
            );
        }
    }

    /// While the grid has debt withdrawals wait (they would take credits backing another balance); a deposit for
    /// the grid repays it and withdrawals resume. A later grid charge repays debt too.
    function test_gridDebt_blocksWithdrawalsUntilRepaid() public {
        _deploy(IEnergyMarket.MarketMode.PayAsClear);
        carol = _participant("carol2", IRegistry.Role.Prosumer, FUNDS);
        dave = _participant("dave2", IRegistry.Role.Consumer, FUNDS);
        _open(S);
        _open(S + 1);
        _report(meterKeyOf[carol], 0, 0, uint64(_start(S) - 1));
        _report(meterKeyOf[dave], 0, 0, uint64(_start(S) - 1));
        vm.warp(_start(S) + SLOT - 1);
        _report(meterKeyOf[carol], 0, 1000, uint64(_start(S) + SLOT - 2)); // 0.08 credits of feed-in, no grid funds
        vm.warp(_start(S + 1) + SLOT - 1);
        _report(meterKeyOf[dave], 100, 0, uint64(_start(S + 1) + SLOT - 2)); // slot S+1: 100 Wh, 0.03 credits
        vm.warp(market.settlementOpensAt(S + 1));
        _clear(S, S + 1);
        vm.expectEmit(address(market));
        emit IEnergyMarket.GridDebtIncurred(S, _cost(1000, FEED_IN));
        market.settle(S, _one(carol));
        assertEq(_debt(grid), _cost(1000, FEED_IN), "debt");
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.GridInDebt.selector, _cost(1000, FEED_IN)));
        vm.prank(carol);
        market.withdraw(1);

        vm.expectEmit(address(market));
        emit IEnergyMarket.DebtRepaid(grid, _cost(100, RETAIL));
        market.settle(S + 1, _one(dave));
        assertEq(_debt(grid), _cost(1000, FEED_IN) - _cost(100, RETAIL), "repaid by the grid's charge");

        _fundGrid(_cost(1000, FEED_IN)); // more than the rest of the debt
        assertEq(_debt(grid), 0, "repaid by the deposit");
        assertEq(_free(grid), _cost(100, RETAIL), "the rest is the grid's");
        vm.prank(carol);
        market.withdraw(_cost(1000, FEED_IN));
        assertEq(token.balanceOf(carol), _cost(1000, FEED_IN), "withdrawn");
    }
}
