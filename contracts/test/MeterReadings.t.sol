// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Fixture} from "./utils/Fixture.sol";
import {MeterReadings} from "../src/MeterReadings.sol";
import {Registry} from "../src/Registry.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";
import {IMeterReadings} from "../src/interfaces/IMeterReadings.sol";
import {IRegistry} from "../src/interfaces/IRegistry.sol";

contract MeterReadingsTest is Fixture {
    address internal alice;
    address internal meter;
    uint256 internal key;

    function setUp() public {
        _deploy(IEnergyMarket.MarketMode.PayAsClear);
        alice = _participant("alice", IRegistry.Role.Prosumer, 0);
        meter = registry.meterOf(alice);
        key = meterKeyOf[alice];
        vm.warp(_start(10) + 290); // slots 9 and later are open (slot 9 is final from _start(10) + GRACE)
    }

    function _energy(uint64 slot) internal view returns (IMeterReadings.SlotEnergy memory) {
        return readings.energyInSlot(meter, slot);
    }

    function _ts(uint64 slot, uint64 offset) internal pure returns (uint64) {
        return uint64(_start(slot)) + offset;
    }

    // ------------------------------------------------------------------ configuration

    function test_constructor_copiesSchedule() public view {
        assertEq(address(readings.registry()), address(registry));
        assertEq(readings.startTime(), START, "start");
        assertEq(readings.slotLength(), SLOT, "slot length");
        assertEq(readings.slotAt(uint64(_start(3)) + 899), 3, "slotAt");
    }

    function test_domainSeparator() public view {
        bytes32 expected = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("P2PE Meter Readings"),
                keccak256("1"),
                block.chainid,
                address(readings)
            )
        );
        assertEq(readings.domainSeparator(), expected, "domain");
        assertEq(
            readings.READING_TYPEHASH(),
            keccak256("MeterReading(address meter,uint64 importWh,uint64 exportWh,uint64 timestamp)"),
            "typehash"
        );
    }

    // ------------------------------------------------------------------ direct submission

    function test_submitReading_storesAndEmits() public {
        vm.expectEmit(address(readings));
        emit IMeterReadings.ReadingRecorded(meter, 100, 20, _ts(10, 5));
        _read(alice, 100, 20, _ts(10, 5));
        (uint64 i, uint64 e, uint64 t, bool pending) = readings.latestReading(meter);
        assertEq(i, 100, "import");
        assertEq(e, 20, "export");
        assertEq(t, _ts(10, 5), "ts");
        assertFalse(pending, "no reset");
    }

    function test_submitReading_revertsForUnknownMeter() public {
        address rogue = makeAddr("rogue");
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.UnknownMeter.selector, rogue));
        vm.prank(rogue);
        readings.submitReading(1, 1, uint64(block.timestamp));
    }

    function test_submitReading_revertsForParticipantKey() public {
        // The participant's own account is not its meter.
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.UnknownMeter.selector, alice));
        vm.prank(alice);
        readings.submitReading(1, 1, uint64(block.timestamp));
    }

    function test_submitReading_revertsWhenTimestampTooFarAhead() public {
        uint64 ts = uint64(block.timestamp + 61);
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.TimestampInFuture.selector, meter, ts, block.timestamp));
        _read(alice, 1, 1, ts);
        // exactly 60 s ahead is accepted
        _read(alice, 1, 1, uint64(block.timestamp + 60));
    }

    function test_submitReading_revertsWhenCounterDecreases() public {
        _read(alice, 100, 50, _ts(10, 1));
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.CounterDecreased.selector, meter, 99, 50, 100, 50));
        _read(alice, 99, 50, _ts(10, 2));
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.CounterDecreased.selector, meter, 100, 49, 100, 50));
        _read(alice, 100, 49, _ts(10, 2));
    }

    function test_submitReading_duplicateIsIdempotent() public {
        _read(alice, 100, 50, _ts(10, 1));
        _read(alice, 150, 50, _ts(10, 2));
        vm.recordLogs();
        _read(alice, 150, 50, _ts(10, 2));
        assertEq(vm.getRecordedLogs().length, 0, "no event for a duplicate");
        (uint64 i,,,) = readings.latestReading(meter);
        assertEq(i, 150, "unchanged");
        assertEq(_energy(10).importWh, 50, "not double counted");
    }

    /// A reading older than the newest, inside an open slot, is accepted (no longer dropped); between two kept
    /// readings of its own slot it moves no boundary and is not kept.
    function test_submitReading_lateReadingAccepted() public {
        vm.warp(_start(10) + 20);
        _read(alice, 100, 50, _ts(10, 1));
        _read(alice, 150, 50, _ts(10, 9));
        vm.expectEmit(address(readings));
        emit IMeterReadings.ReadingRecorded(meter, 120, 50, _ts(10, 5));
        _read(alice, 120, 50, _ts(10, 5)); // older reading arriving late
        (uint64 i,, uint64 t,) = readings.latestReading(meter);
        assertEq(i, 150, "latest kept");
        assertEq(t, _ts(10, 9), "latest ts kept");
        assertEq(readings.keptReadings(meter).length, 2, "interior reading of a slot not kept");
        assertEq(_energy(10).importWh, 50, "slot energy unchanged");
    }

    /// A late reading must lie between its neighbours in time: not above the next one, not below the previous.
    function test_submitReading_lateReadingMustLieBetweenNeighbours() public {
        _read(alice, 100, 10, _ts(9, 100));
        _read(alice, 300, 30, _ts(10, 5));
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.CounterAboveLater.selector, meter, 301, 20, 300, 30));
        _read(alice, 301, 20, _ts(9, 800));
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.CounterDecreased.selector, meter, 99, 20, 100, 10));
        _read(alice, 99, 20, _ts(9, 800));
        _read(alice, 300, 10, _ts(9, 800)); // at both bounds: accepted
        assertEq(_energy(9).importWh, 200, "slot 9: up to the reading at its end");
    }

    function test_submitReading_revertsOnConflict() public {
        _read(alice, 100, 50, _ts(10, 1));
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.ConflictingReading.selector, meter, _ts(10, 1)));
        _read(alice, 101, 50, _ts(10, 1));
    }

    function test_submitReading_revertsOnMaxCounter() public {
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.CounterTooLarge.selector, meter));
        _read(alice, type(uint64).max, 0, _ts(10, 1));
    }

    // ------------------------------------------------------------------ slot energy

    function test_energyInSlot_noReading() public view {
        IMeterReadings.SlotEnergy memory e = _energy(10);
        assertFalse(e.hasReading, "none");
        assertEq(e.importWh, 0, "zero");
    }

    function test_energyInSlot_firstReadingCountsFromItself() public {
        _read(alice, 1000, 500, _ts(10, 10));
        vm.warp(_ts(10, 800));
        _read(alice, 1200, 540, _ts(10, 800));
        IMeterReadings.SlotEnergy memory e = _energy(10);
        assertTrue(e.hasReading, "has");
        assertEq(e.importWh, 200, "import");
        assertEq(e.exportWh, 40, "export");
    }

    /// Boundary values are interpolated between the readings that bracket them (values worked out by hand).
    function test_energyInSlot_acrossSlots() public {
        _read(alice, 1000, 0, _ts(9, 890)); // 10 s before slot 10
        _read(alice, 1100, 0, _ts(10, 100)); // 100 s into slot 10
        vm.warp(_ts(10, 899));
        _read(alice, 1300, 7, _ts(10, 899)); // last reading in slot 10
        vm.warp(_start(11) + 10);
        _read(alice, 1400, 9, _ts(11, 5));
        // Boundary of slot 10: 1000 + floor(100 * 10 / 110) = 1009. Boundary of slot 11: 1300 + floor(100 / 6) = 1316
        // import, 7 + floor(2 / 6) = 7 export.
        assertEq(_energy(9).importWh, 9, "slot 9: up to the interpolated boundary");
        assertTrue(_energy(9).hasReading, "slot 9 has the first reading");
        IMeterReadings.SlotEnergy memory e10 = _energy(10);
        assertEq(e10.importWh, 1316 - 1009, "slot 10 import between interpolated boundaries");
        assertEq(e10.exportWh, 7, "slot 10 export");
        IMeterReadings.SlotEnergy memory e11 = _energy(11);
        assertEq(e11.importWh, 1400 - 1316, "slot 11 so far");
        assertEq(e11.exportWh, 2, "slot 11 export");
    }

    /// A gap whose slots are open is split linearly over them (hasReading true: interpolated).
    function test_energyInSlot_openGapInterpolated() public {
        MeterReadings wide = _wideReadings();
        vm.warp(_ts(10, 450));
        vm.prank(meter);
        wide.submitReading(1000, 0, _ts(10, 450));
        vm.warp(_start(13) + 10);
        vm.prank(meter);
        wide.submitReading(2800, 90, _ts(12, 450)); // 1,800 Wh over 1,800 s: 450 s in 10, 900 in 11, 450 in 12
        assertEq(wide.energyInSlot(meter, 10).importWh, 450, "10");
        assertEq(wide.energyInSlot(meter, 11).importWh, 900, "11");
        assertEq(wide.energyInSlot(meter, 12).importWh, 450, "12");
        assertEq(wide.energyInSlot(meter, 11).exportWh, 45, "11 export");
        assertTrue(wide.energyInSlot(meter, 11).hasReading, "interpolated slot");
    }

    /// A gap whose slots became final while the meter was silent: they keep what they had; its energy is split
    /// from the start of the first open slot.
    function test_energyInSlot_gapIntoFinalSlotsGoesToFirstOpenSlot() public {
        _read(alice, 1000, 0, _ts(10, 1));
        vm.warp(_start(14));
        _read(alice, 5000, 0, _ts(13, 10)); // silent during 11 and 12, which are final now
        assertFalse(_energy(11).hasReading, "11 silent");
        assertFalse(_energy(12).hasReading, "12 silent");
        assertEq(_energy(10).importWh, 0, "10 closed at its only reading");
        assertEq(_energy(13).importWh, 4000, "13 gets the gap from its start");
    }

    function test_energyInSlot_readingsBeforeStartTime() public {
        vm.warp(START - 100);
        _read(alice, 10, 0, START - 200);
        _read(alice, 20, 0, START - 100);
        assertFalse(_energy(0).hasReading, "nothing in slot 0 yet");
        vm.warp(START + 100);
        _read(alice, 50, 0, START + 50);
        // 30 Wh over 150 s, 50 s of them in slot 0; the share before the schedule is booked nowhere.
        assertEq(_energy(0).importWh, 10, "interpolated from the last pre-start reading");
    }

    /// energyInSlot reads one storage word, whatever the meter's readings: the same gas for an empty slot and
    /// for one filled by a late reading at the bound of the window (28 slots re-split).
    function test_energyInSlot_gasBounded() public {
        MeterReadings wide = _wideReadings();
        vm.prank(meter);
        wide.submitReading(1000, 0, _ts(10, 1));
        vm.warp(_start(10) + 60 + uint256(SLOT) * 28);
        vm.prank(meter);
        wide.submitReading(900_000, 7, _ts(37, 1)); // a segment over 28 slots
        vm.prank(meter);
        wide.submitReading(2000, 1, _ts(10, 2)); // late: re-splits all of them
        uint256 g0 = gasleft();
        wide.energyInSlot(meter, 20);
        uint256 filled = g0 - gasleft();
        g0 = gasleft();
        wide.energyInSlot(meter, 500);
        uint256 empty = g0 - gasleft();
        // The word of slot 20 was written earlier in this test's transaction, so its read is warm (100 instead of
        // 2,100): the only difference between the two calls.
        assertEq(empty - filled, 2000, "the same work but for the warm storage access");
        assertLe(empty, 5000, "one cold storage read and the call");
    }

    // ------------------------------------------------------------------ resets

    function test_recordMeterReset_allowsLowerCounterAndContinues() public {
        vm.warp(_ts(10, 400));
        _read(alice, 1000, 300, _ts(10, 1));
        _read(alice, 1100, 300, _ts(10, 100));
        vm.expectEmit(address(readings));
        emit IMeterReadings.MeterResetRecorded(meter, operator);
        vm.prank(operator);
        readings.recordMeterReset(meter);
        (,,, bool pending) = readings.latestReading(meter);
        assertTrue(pending, "pending");
        _read(alice, 5, 0, _ts(10, 200)); // new meter, counters restarted
        _read(alice, 55, 10, _ts(10, 300));
        (uint64 i, uint64 e,, bool pending2) = readings.latestReading(meter);
        assertFalse(pending2, "consumed");
        assertEq(i, 1150, "effective import continues");
        assertEq(e, 310, "effective export continues");
        assertEq(_energy(10).importWh, 150, "slot energy across the reset");
        // Still monotone after the reset.
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.CounterDecreased.selector, meter, 4, 10, 1100, 300));
        _read(alice, 4, 10, _ts(10, 400));
        // A pre-reset reading (old counter scale) is refused.
        vm.expectRevert(
            abi.encodeWithSelector(IMeterReadings.ReadingBeforeReset.selector, meter, _ts(10, 100), _ts(10, 200))
        );
        _read(alice, 1100, 300, _ts(10, 100));
        // A late post-reset reading is mapped like the others.
        _read(alice, 30, 5, _ts(10, 250));
        (uint64 li,,,) = readings.latestReading(meter);
        assertEq(li, 1150, "newest unchanged");
    }

    function test_recordMeterReset_staleAfterResetIgnored() public {
        _read(alice, 1000, 300, _ts(10, 100));
        vm.prank(operator);
        readings.recordMeterReset(meter);
        vm.recordLogs();
        _read(alice, 1000, 300, _ts(10, 100));
        assertEq(vm.getRecordedLogs().length, 0, "duplicate ignored while pending");
    }

    function test_recordMeterReset_revertsForNonOperator() public {
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.NotOperator.selector, alice));
        vm.prank(alice);
        readings.recordMeterReset(meter);
    }

    function test_recordMeterReset_revertsForUnknownMeter() public {
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.UnknownMeter.selector, alice));
        vm.prank(operator);
        readings.recordMeterReset(alice);
    }

    // ------------------------------------------------------------------ signed batches

    function test_submitReadings_batch() public {
        address bob = _participant("bob", IRegistry.Role.Consumer, 0);
        IMeterReadings.SignedReading[] memory batch = new IMeterReadings.SignedReading[](3);
        batch[0] = _signed(key, 100, 0, _ts(10, 1));
        batch[1] = _signed(meterKeyOf[bob], 7, 0, _ts(10, 1));
        batch[2] = _signed(key, 160, 1, _ts(10, 2));
        vm.prank(makeAddr("relayer"));
        readings.submitReadings(batch);
        assertEq(_energy(10).importWh, 60, "alice");
        (uint64 bi,,,) = readings.latestReading(registry.meterOf(bob));
        assertEq(bi, 7, "bob");
        // Resending the same batch is a no-op.
        vm.recordLogs();
        readings.submitReadings(batch);
        assertEq(vm.getRecordedLogs().length, 0, "idempotent resend");
        assertEq(_energy(10).importWh, 60, "not double counted");
    }

    /// Invalid items are skipped, each with an event naming its index and the error, and the rest recorded.
    function test_submitReadings_skipsInvalidItemsWithEvents() public {
        (, uint256 rogueKey) = makeKey("rogue-meter");
        address bob = _participant("bob", IRegistry.Role.Consumer, 0);
        _read(alice, 50, 0, _ts(9, 100));
        IMeterReadings.SignedReading[] memory batch = new IMeterReadings.SignedReading[](7);
        batch[0] = _signed(key, 100, 0, _ts(10, 1));
        batch[1] = _signed(key, 110, 0, _ts(10, 2));
        batch[1].importWh = 111; // tampered
        batch[2] = IMeterReadings.SignedReading(meter, 1, 1, _ts(10, 3), bytes32(0), bytes32(0)); // garbage
        batch[3] = _signed(rogueKey, 1, 1, _ts(10, 1)); // not bound
        batch[4] = _signed(key, 40, 0, _ts(10, 5)); // below the reading before it
        batch[5] = _signed(key, 60, 0, _ts(8, 5)); // in a final slot
        batch[6] = _signed(meterKeyOf[bob], 7, 0, _ts(10, 1));
        vm.expectEmit(address(readings));
        emit IMeterReadings.ReadingRecorded(meter, 100, 0, _ts(10, 1));
        vm.expectEmit(address(readings));
        emit IMeterReadings.ReadingSkipped(1, meter, _ts(10, 2), IMeterReadings.InvalidSignature.selector);
        vm.expectEmit(address(readings));
        emit IMeterReadings.ReadingSkipped(2, meter, _ts(10, 3), IMeterReadings.InvalidSignature.selector);
        vm.expectEmit(address(readings));
        emit IMeterReadings.ReadingSkipped(3, vm.addr(rogueKey), _ts(10, 1), IMeterReadings.UnknownMeter.selector);
        vm.expectEmit(address(readings));
        emit IMeterReadings.ReadingSkipped(4, meter, _ts(10, 5), IMeterReadings.CounterDecreased.selector);
        vm.expectEmit(address(readings));
        emit IMeterReadings.ReadingSkipped(5, meter, _ts(8, 5), IMeterReadings.SlotFinal.selector);
        vm.prank(makeAddr("relayer"));
        readings.submitReadings(batch);
        (uint64 ai,, uint64 at,) = readings.latestReading(meter);
        assertEq(ai, 100, "alice's valid item recorded");
        assertEq(at, _ts(10, 1), "alice ts");
        (uint64 bi,,,) = readings.latestReading(registry.meterOf(bob));
        assertEq(bi, 7, "item after the skipped ones recorded");
    }

    /// The batch path's per-item entry point is not callable from outside.
    function test_recordRelayed_onlySelf() public {
        vm.expectRevert(IMeterReadings.OnlySelf.selector);
        vm.prank(meter);
        readings.recordRelayed(meter, 1, 1, _ts(10, 1));
    }

    function test_submitReadings_signatureBoundToContract() public {
        // A signature for another deployment (different verifying contract) is rejected.
        MeterReadings other = new MeterReadings(registry, GRACE);
        IMeterReadings.SignedReading memory r = _signed(key, 100, 0, _ts(10, 1));
        IMeterReadings.SignedReading[] memory batch = new IMeterReadings.SignedReading[](1);
        batch[0] = r;
        vm.expectEmit(address(other));
        emit IMeterReadings.ReadingSkipped(0, meter, _ts(10, 1), IMeterReadings.InvalidSignature.selector);
        other.submitReadings(batch);
        (,, uint64 t,) = other.latestReading(meter);
        assertEq(t, 0, "nothing recorded");
    }

    // ------------------------------------------------------------------ fuzz

    /// Energy summed over slots equals the counter increase since the first reading.
    function testFuzz_slotEnergySumsToCounterDelta(uint256 seed, uint8 count) public {
        count = uint8(bound(count, 2, 40));
        uint64 ts = _ts(10, 0);
        uint64 imp = 1000;
        uint64 exp = 500;
        uint64 firstImp = imp;
        uint64 firstExp = exp;
        for (uint256 k = 0; k < count; ++k) {
            vm.warp(ts); // in time order, each when it is taken: earlier slots become final meanwhile
            _read(alice, imp, exp, ts);
            seed = uint256(keccak256(abi.encode(seed)));
            ts += uint64(1 + seed % 400);
            imp += uint64(seed >> 64) % 300;
            exp += uint64(seed >> 128) % 100;
        }
        uint64 lastSlot = readings.slotAt(ts - 1);
        uint256 sumImp;
        uint256 sumExp;
        for (uint64 s = 10; s <= lastSlot; ++s) {
            IMeterReadings.SlotEnergy memory e = _energy(s);
            sumImp += e.importWh;
            sumExp += e.exportWh;
        }
        (uint64 li, uint64 le,,) = readings.latestReading(meter);
        assertEq(sumImp, li - firstImp, "import conserved");
        assertEq(sumExp, le - firstExp, "export conserved");
    }

    function testFuzz_counterDecreaseAlwaysRejected(uint64 first, uint64 second) public {
        first = uint64(bound(first, 1, type(uint64).max - 1));
        second = uint64(bound(second, 0, first - 1));
        _read(alice, first, 0, _ts(10, 1));
        vm.expectRevert(abi.encodeWithSelector(IMeterReadings.CounterDecreased.selector, meter, second, 0, first, 0));
        _read(alice, second, 0, _ts(10, 2));
    }

    // ------------------------------------------------------------------ helpers

    /// A second deployment on the same registry whose finality spans 28 slots (the widest window allowed), so that wide gaps stay open.
    function _wideReadings() internal returns (MeterReadings) {
        return new MeterReadings(registry, 28 * SLOT);
    }

    // Silence unused-import warnings for Registry in some compilers.
    function _unused() internal pure returns (bytes4) {
        return Registry.bindMeter.selector;
    }
}
