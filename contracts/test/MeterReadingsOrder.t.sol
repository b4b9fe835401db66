// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Fixture} from "./utils/Fixture.sol";
import {MeterReadings} from "../src/MeterReadings.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";
import {IMeterReadings} from "../src/interfaces/IMeterReadings.sol";
import {IRegistry} from "../src/interfaces/IRegistry.sol";

/// Arrival order, finality and the storage window of {MeterReadings} (issue 14, part 5).
///
/// The differential reference below computes each slot's energy from the *set* of readings directly: the counter
/// value at each slot boundary, interpolated between the two readings that bracket it (rounded down), and the
/// slot's energy as the difference of its two boundary values. The contract instead keeps per-slot sums of
/// segment shares up to date incrementally (subtracting a segment's shares when a late reading splits it); the
/// two agree only if the incremental bookkeeping is exact.
contract MeterReadingsOrderTest is Fixture {
    /// A reading as the tests generate it.
    struct R {
        uint64 imp;
        uint64 exp;
        uint64 ts;
    }

    uint32 internal constant WIDE_FINALITY = 28 * SLOT;

    address internal alice;
    address internal meter;
    uint256 internal key;

    function setUp() public {
        _deploy(IEnergyMarket.MarketMode.PayAsClear);
        alice = _participant("alice", IRegistry.Role.Prosumer, 0);
        meter = registry.meterOf(alice);
        key = meterKeyOf[alice];
    }

    /// Replaces the fixture's readings with a deployment whose open window spans 28 slots (the widest allowed),
    /// so that every reading of a generated day stays open.
    function _wide() internal {
        readings = new MeterReadings(registry, WIDE_FINALITY);
    }

    // ------------------------------------------------------------------ reference

    /// Counter value at time `t` from the sorted readings: the first reading's before it, the last's after it,
    /// else linear between the bracketing pair, rounded down.
    function _valueAt(R[] memory rs, uint256 t) internal pure returns (uint256 imp, uint256 exp) {
        uint256 n = rs.length;
        if (t <= rs[0].ts) return (rs[0].imp, rs[0].exp);
        if (t >= rs[n - 1].ts) return (rs[n - 1].imp, rs[n - 1].exp);
        uint256 k = 0;
        while (rs[k + 1].ts <= t) ++k;
        R memory a = rs[k];
        R memory b = rs[k + 1];
        imp = a.imp + uint256(b.imp - a.imp) * (t - a.ts) / (b.ts - a.ts);
        exp = a.exp + uint256(b.exp - a.exp) * (t - a.ts) / (b.ts - a.ts);
    }

    /// Reference energy of `slot`: difference of its interpolated boundary values; `has` when the slot overlaps
    /// the span of the readings.
    function _reference(R[] memory rs, uint64 slot) internal pure returns (uint256 imp, uint256 exp, bool has) {
        uint256 s0 = _start(slot);
        uint256 s1 = s0 + SLOT;
        (uint256 i0, uint256 e0) = _valueAt(rs, s0);
        (uint256 i1, uint256 e1) = _valueAt(rs, s1);
        return (i1 - i0, e1 - e0, s1 > rs[0].ts && s0 <= rs[rs.length - 1].ts);
    }

    /// `n` readings in time order from slot 10 on, 1 s to `maxStep` s apart (often several per slot, sometimes a
    /// slot skipped), counters rising by 0–499 Wh import and 0–99 Wh export each.
    function _generate(uint256 seed, uint256 n, uint256 maxStep) internal pure returns (R[] memory rs) {
        rs = new R[](n);
        uint64 ts = uint64(_start(10)) + uint64(seed % SLOT);
        uint64 imp = uint64(seed >> 200) % 100_000;
        uint64 exp = 0;
        for (uint256 k = 0; k < n; ++k) {
            rs[k] = R(imp, exp, ts);
            seed = uint256(keccak256(abi.encode(seed, k)));
            ts += uint64(1 + seed % maxStep);
            imp += uint64((seed >> 64) % 500);
            exp += uint64((seed >> 128) % 100);
        }
    }

    function _permute(uint256 n, uint256 seed) internal pure returns (uint256[] memory order) {
        order = new uint256[](n);
        for (uint256 k = 0; k < n; ++k) {
            order[k] = k;
        }
        for (uint256 k = n; k > 1; --k) {
            seed = uint256(keccak256(abi.encode(seed, k)));
            uint256 j = seed % k;
            (order[k - 1], order[j]) = (order[j], order[k - 1]);
        }
    }

    function _assertMatchesReference(R[] memory rs) internal view {
        uint64 last = readings.slotAt(rs[rs.length - 1].ts);
        uint256 sumI;
        uint256 sumE;
        for (uint64 s = 8; s <= last + 2; ++s) {
            IMeterReadings.SlotEnergy memory e = readings.energyInSlot(meter, s);
            (uint256 ri, uint256 re, bool rh) = _reference(rs, s);
            assertEq(e.importWh, ri, "import matches the reference");
            assertEq(e.exportWh, re, "export matches the reference");
            assertEq(e.hasReading, rh, "hasReading matches the reference");
            sumI += e.importWh;
            sumE += e.exportWh;
        }
        assertEq(sumI, rs[rs.length - 1].imp - rs[0].imp, "import conserved");
        assertEq(sumE, rs[rs.length - 1].exp - rs[0].exp, "export conserved");
    }

    // ------------------------------------------------------------------ the relay-shift attack

    /// Issue 14: the relayer sends the meter's first reading of slot 11 before the last readings of slot 10
    /// (taken while the household consumed heavily late in slot 10). Before, the late readings were dropped and
    /// slot 10's consumption was booked into slot 11, where the household had bought cheaply. Now the late readings
    /// are accepted and every slot gets what it gets when the readings arrive in order.
    function test_relayShift_outOfOrderGivesInOrderEnergy() public {
        R[] memory rs = new R[](5);
        rs[0] = R(1000, 0, uint64(_start(10)) + 300);
        rs[1] = R(1100, 0, uint64(_start(10)) + 600);
        rs[2] = R(2400, 0, uint64(_start(10)) + 880); // heavy use late in slot 10
        rs[3] = R(2410, 0, uint64(_start(11)) + 20);
        rs[4] = R(2500, 0, uint64(_start(11)) + 250);
        vm.warp(_start(11) + 260); // slot 10 is final from _start(11) + GRACE
        uint256 snap = vm.snapshotState();
        for (uint256 k = 0; k < 5; ++k) {
            _read(alice, rs[k].imp, rs[k].exp, rs[k].ts);
        }
        uint64 inOrder10 = readings.energyInSlot(meter, 10).importWh;
        uint64 inOrder11 = readings.energyInSlot(meter, 11).importWh;
        vm.revertToState(snap);
        uint256[5] memory relayed = [uint256(0), 4, 3, 1, 2]; // slot 11's readings before slot 10's last ones
        for (uint256 k = 0; k < 5; ++k) {
            R memory r = rs[relayed[k]];
            _read(alice, r.imp, r.exp, r.ts);
        }
        assertEq(readings.energyInSlot(meter, 10).importWh, inOrder10, "slot 10 as in order");
        assertEq(readings.energyInSlot(meter, 11).importWh, inOrder11, "slot 11 as in order");
        // 1,400 Wh up to the reading at +880 plus floor(10 * 20 / 40) = 5 of the segment across the boundary.
        assertEq(inOrder10, 1405, "slot 10 keeps its consumption");
        assertEq(inOrder11, 95, "slot 11 only its own");
        _assertMatchesReference(rs);
    }

    /// The same attack through a relayed batch in the attacker's order.
    function test_relayShift_batchOrderDoesNotMatter() public {
        vm.warp(_start(11) + 260);
        IMeterReadings.SignedReading[] memory batch = new IMeterReadings.SignedReading[](4);
        batch[0] = _signed(key, 2500, 9, uint64(_start(11)) + 250);
        batch[1] = _signed(key, 1000, 0, uint64(_start(10)) + 300);
        batch[2] = _signed(key, 2400, 5, uint64(_start(10)) + 880);
        batch[3] = _signed(key, 2410, 5, uint64(_start(11)) + 20);
        readings.submitReadings(batch);
        R[] memory rs = new R[](4);
        rs[0] = R(1000, 0, uint64(_start(10)) + 300);
        rs[1] = R(2400, 5, uint64(_start(10)) + 880);
        rs[2] = R(2410, 5, uint64(_start(11)) + 20);
        rs[3] = R(2500, 9, uint64(_start(11)) + 250);
        _assertMatchesReference(rs);
    }

    // ------------------------------------------------------------------ fuzz: any arrival order

    /// Any arrival permutation of the same readings gives every slot the reference energy (hence identical
    /// energies for every permutation), conserves the total, and resends change nothing.
    function testFuzz_anyArrivalOrderSameEnergy(uint256 seed, uint8 count) public {
        _wide();
        uint256 n = bound(count, 2, 16);
        R[] memory rs = _generate(seed, n, 1200);
        vm.warp(rs[n - 1].ts);
        uint256[] memory order = _permute(n, seed ^ 0x5eed);
        for (uint256 k = 0; k < n; ++k) {
            R memory r = rs[order[k]];
            _read(alice, r.imp, r.exp, r.ts);
        }
        _assertMatchesReference(rs);
        R memory again = rs[seed % n];
        _read(alice, again.imp, again.exp, again.ts); // duplicate
        _assertMatchesReference(rs);
        assertLe(readings.keptReadings(meter).length, n, "kept at most every reading");
    }

    /// In time order with the default window (slots become final as time passes), energy is conserved and every
    /// slot that was open when its readings came matches the reference.
    function testFuzz_inOrderWithFinalityMatchesReference(uint256 seed, uint8 count) public {
        uint256 n = bound(count, 2, 24);
        R[] memory rs = _generate(seed, n, GRACE);
        for (uint256 k = 0; k < n; ++k) {
            vm.warp(rs[k].ts);
            _read(alice, rs[k].imp, rs[k].exp, rs[k].ts);
        }
        // No gap is longer than the grace period, so no segment reaches back past the finality horizon when it
        // closes: the reference applies to every slot.
        _assertMatchesReference(rs);
    }

    // ------------------------------------------------------------------ finality

    /// Slot 10 accepts readings until `slotEnd + finalityDelay - 1` and refuses them from `slotEnd + finalityDelay`.
    function test_finality_underAtOver() public {
        uint256 finalAt = _start(11) + GRACE;
        uint64 ts = uint64(_start(10)) + 500;
        vm.warp(finalAt - 1);
        assertFalse(readings.isFinal(10), "open one second before");
        assertEq(readings.firstOpenSlot(), 10, "first open slot");
        _read(alice, 10, 0, ts);
        vm.warp(finalAt);
        assertTrue(readings.isFinal(10), "final at the instant");
        assertEq(readings.firstOpenSlot(), 11, "first open slot moved");
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.SlotFinal.selector, meter, ts - 1, _start(11)));
        _read(alice, 9, 0, ts - 1);
        vm.warp(finalAt + 1);
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.SlotFinal.selector, meter, ts - 1, _start(11)));
        _read(alice, 9, 0, ts - 1);
        // A reading at the first open slot's start is accepted.
        _read(alice, 20, 0, uint64(_start(11)));
        assertEq(readings.energyInSlot(meter, 11).importWh, 10, "booked in the open slot");
    }

    /// A late reading splitting a segment that straddles the finality horizon: the final slot keeps its share,
    /// the reading must not lie below the counter value booked up to the horizon, the open slots get the rest.
    function test_finality_lateReadingBelowFinalisedValueRefused() public {
        readings = new MeterReadings(registry, 1200); // slot 9 final from _start(11) + 300
        vm.warp(_start(10) - 100);
        _read(alice, 1000, 0, uint64(_start(9)) + 800);
        vm.warp(_start(11) + 100);
        _read(alice, 3000, 0, uint64(_start(11)) + 100);
        // 2,000 Wh over 1,100 s: boundary of slot 10 at 1000 + floor(2000 * 100 / 1100) = 1181, of slot 11 at
        // 1000 + floor(2000 * 1000 / 1100) = 2818.
        assertEq(readings.energyInSlot(meter, 9).importWh, 181, "slot 9 before finality");
        assertEq(readings.energyInSlot(meter, 10).importWh, 1637, "slot 10 before");
        vm.warp(_start(11) + 300); // slot 9 is final
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.CounterBelowFinalised.selector, meter, 1180, 0, 1181, 0));
        _read(alice, 1180, 0, uint64(_start(10)) + 600);
        _read(alice, 2000, 0, uint64(_start(10)) + 600);
        assertEq(readings.energyInSlot(meter, 9).importWh, 181, "final slot unchanged");
        // (1181 -> 2000) in slot 10, then 1,000 Wh over 400 s of which 300 s in slot 10.
        assertEq(readings.energyInSlot(meter, 10).importWh, 819 + 750, "slot 10");
        assertEq(readings.energyInSlot(meter, 11).importWh, 250, "slot 11");
        assertEq(readings.keptReadings(meter)[0].timestamp, _start(10), "the anchor replaced the final reading");
    }

    // ------------------------------------------------------------------ limits

    /// The window of open slots is bounded: a finality delay giving 31 open slots deploys, 32 does not.
    function test_constructor_windowBound() public {
        // ceil((26040 + 60) / 900) + 2 = 31.
        MeterReadings ok = new MeterReadings(registry, 26_040);
        assertEq(ok.windowSlots(), 31, "at the bound");
        assertEq(new MeterReadings(registry, 26_039).windowSlots(), 31, "under the bound");
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.InvalidFinalityDelay.selector, 26_041, 32));
        new MeterReadings(registry, 26_041);
    }

    /// The ring of kept readings fills to its 64 words and is then pruned to the readings that still bracket
    /// an open boundary; energy stays conserved throughout.
    function test_ring_underAtOverBound() public {
        R[] memory rs = new R[](66);
        for (uint256 k = 0; k < 66; ++k) {
            uint64 slot = uint64(10 + k / 2);
            rs[k] = R(uint64(1000 + 37 * k), uint64(3 * k), uint64(_start(slot)) + (k % 2 == 0 ? 1 : 800));
        }
        for (uint256 k = 0; k < 63; ++k) {
            vm.warp(rs[k].ts);
            _read(alice, rs[k].imp, rs[k].exp, rs[k].ts);
        }
        assertEq(readings.keptReadings(meter).length, 63, "under");
        vm.warp(rs[63].ts);
        _read(alice, rs[63].imp, rs[63].exp, rs[63].ts);
        assertEq(readings.keptReadings(meter).length, 64, "at the ring size");
        vm.warp(rs[64].ts);
        _read(alice, rs[64].imp, rs[64].exp, rs[64].ts);
        IMeterReadings.KeptReading[] memory kept = readings.keptReadings(meter);
        assertEq(kept.length, 4, "over: pruned to the last final reading and the open ones");
        assertEq(kept[0].timestamp, rs[61].ts, "oldest kept: the last reading before the first open slot");
        vm.warp(rs[65].ts);
        _read(alice, rs[65].imp, rs[65].exp, rs[65].ts);
        _assertMatchesReference(rs);
    }

    /// The work of one reading is bounded by the window: a late reading that re-splits a segment over 28 slots
    /// (the widest window) stays well within a block.
    function test_submitReading_gasAtWindowBound() public {
        _wide();
        vm.warp(_start(38) + 60);
        _read(alice, 1000, 0, uint64(_start(10)) + 1);
        _read(alice, 900_000, 7, uint64(_start(37)) + 1);
        vm.prank(meter);
        uint256 g0 = gasleft();
        readings.submitReading(2000, 1, uint64(_start(10)) + 2);
        uint256 used = g0 - gasleft();
        assertLe(used, 1_500_000, "bounded");
        assertGt(used, 27 * 5000, "it did rewrite the slots of the segment (one cold word each)");
        assertEq(readings.energyInSlot(meter, 20).importWh, 33_260, "slot 20 re-split: 898,000 Wh over 24,299 s");
    }
}
