// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Fixture} from "./utils/Fixture.sol";
import {StorageWords} from "./utils/StorageWords.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";
import {IMeterReadings} from "../src/interfaces/IMeterReadings.sol";
import {IRegistry} from "../src/interfaces/IRegistry.sol";

/// Issue 14, part 7, for the meter readings: a meter's slot energies live in a ring of `ENERGY_RING` words, so its
/// storage stops growing. Slot `j` and slot `j + ENERGY_RING` share a word; once the later slot has energy the
/// earlier one reads as zero without a reading, and a position settled after that is billed as unmetered.
contract EnergyRingTest is Fixture, StorageWords {
    uint64 internal constant J = 20;
    uint64 internal ring;

    address internal alice;
    address internal meter;

    function setUp() public {
        _deploy(IEnergyMarket.MarketMode.PayAsClear);
        ring = uint64(readings.ENERGY_RING());
        alice = _participant("alice", IRegistry.Role.Prosumer, 0);
        meter = meterAddrOf[alice];
    }

    function _energy(address m, uint64 slot) internal view returns (IMeterReadings.SlotEnergy memory) {
        return readings.energyInSlot(m, slot);
    }

    /// Asserts `meter`'s energy in `slot`.
    function _assertEnergy(address m, uint64 slot, uint64 imp, uint64 exp, bool has, string memory what) internal view {
        IMeterReadings.SlotEnergy memory e = _energy(m, slot);
        assertEq(e.importWh, imp, string.concat(what, ": import"));
        assertEq(e.exportWh, exp, string.concat(what, ": export"));
        assertEq(e.hasReading, has, string.concat(what, ": hasReading"));
    }

    /// `p`'s meter reports `imp`/`exp` at `ts`, sent at block time `blockTime`.
    function _readAt(address p, uint256 blockTime, uint64 imp, uint64 exp, uint256 ts) internal {
        vm.warp(blockTime);
        _read(p, imp, exp, uint64(ts));
    }

    /// The storage word `energyInSlot(m, slot)` reads (it reads exactly one).
    function _wordOf(address m, uint64 slot) internal returns (bytes32) {
        vm.record();
        readings.energyInSlot(m, slot);
        (bytes32[] memory reads,) = vm.accesses(address(readings));
        assertEq(reads.length, 1, "energyInSlot reads one word");
        return reads[0];
    }

    function test_energyRing_is4096Slots() public view {
        assertEq(ring, 4096, "ENERGY_RING");
    }

    /// Slot `j` and `j + ENERGY_RING` (and `j + 2 * ENERGY_RING`) are the same storage word; neighbours are not.
    function test_slotAndSlotPlusRing_shareOneWord() public {
        bytes32 w = _wordOf(meter, J);
        assertEq(_wordOf(meter, J + ring), w, "j + ENERGY_RING: the same word");
        assertEq(_wordOf(meter, J + 2 * ring), w, "j + 2 * ENERGY_RING: the same word");
        assertTrue(_wordOf(meter, J + ring - 1) != w, "j + ENERGY_RING - 1: another word");
        assertTrue(_wordOf(meter, J + ring + 1) != w, "j + ENERGY_RING + 1: another word");
        assertTrue(_wordOf(meter, J + 1) != w, "j + 1: another word");
        assertTrue(_wordOf(makeAddr("other-meter"), J) != w, "another meter: another word");
    }

    /// After slot `J + ENERGY_RING` had energy, slot `J` reads as zero without a reading (its word holds the later
    /// slot), and the later slot holds its own energy alone, not added to what `J` left in the word.
    function test_reusedWord_oldSlotReadsZero_newSlotExact() public {
        _readAt(alice, _start(J), 100, 20, _start(J));
        _readAt(alice, _start(J) + 800, 400, 50, _start(J) + 800);
        _assertEnergy(meter, J, 300, 30, true, "J before the reuse");
        assertTrue(readings.energyKept(meter, J), "J kept");
        assertTrue(readings.energyKept(meter, J + ring), "a later slot that never had energy: nothing lost");

        uint64 later = J + ring;
        // The reading at the slot's start closes the gap (booked to the open slot before it, J + ENERGY_RING - 1)
        // and books nothing into `later`, which then holds exactly what the meter measured in it.
        _readAt(alice, _start(later), 1000, 100, _start(later));
        _readAt(alice, _start(later) + 600, 1250, 170, _start(later) + 600);
        _assertEnergy(meter, later, 250, 70, true, "J + ENERGY_RING");
        _assertEnergy(meter, J, 0, 0, false, "J after the reuse: as if never metered");
        assertFalse(readings.energyKept(meter, J), "J's energy is no longer kept");
        assertTrue(readings.energyKept(meter, later), "J + ENERGY_RING's is");
        _assertEnergy(meter, later - 1, 600, 50, true, "the gap, in the first open slot before it");
        assertFalse(readings.energyKept(meter, J - 1), "J - 1 shares its word with the gap's slot");
    }

    /// Slots just under, at and over `ENERGY_RING` apart. The meter measures slots J - 1, J and J + 1, then, 42 days
    /// later, reports in slot J + ENERGY_RING - 1 and in slot J + ENERGY_RING. Also: slot `j`'s energy cannot be
    /// taken before `slotStart(j + ENERGY_RING) - MAX_CLOCK_SKEW` (a reading is at most that far ahead).
    function test_ringDistance_underAtOver() public {
        // Each reading is sent while the slot of the one before is still open (before its end + GRACE).
        _readAt(alice, _start(J - 1) + 450, 0, 0, _start(J - 1) + 450);
        _readAt(alice, _start(J) + 250, 700, 0, _start(J) + 250); // J - 1: 450, J: 250
        _readAt(alice, _start(J + 1) + 250, 1600, 0, _start(J + 1) + 250); // J: +650, J + 1: 250
        _assertEnergy(meter, J - 1, 450, 0, true, "J - 1");
        _assertEnergy(meter, J, 900, 0, true, "J");
        _assertEnergy(meter, J + 1, 250, 0, true, "J + 1");

        // One second before the skew lets a reading reach slot J + ENERGY_RING: the newest possible reading is in
        // slot J + ENERGY_RING - 1, which takes the word of J - 1 (ENERGY_RING apart) but not J's (one less).
        uint256 skew = readings.MAX_CLOCK_SKEW();
        uint256 t = _start(J + ring) - skew - 1;
        vm.warp(t);
        vm.prank(meter);
        vm.expectRevert(
            abi.encodeWithSelector(IMeterReadings.TimestampInFuture.selector, meter, uint64(_start(J + ring)), t)
        );
        readings.submitReading(2000, 0, uint64(_start(J + ring)));
        // The gap, from the anchor at the first open slot's start (J + ENERGY_RING - 1), all in that slot.
        _read(alice, 1600 + 899, 0, uint64(_start(J + ring) - 1));
        _assertEnergy(meter, J + ring - 1, 899, 0, true, "J + ENERGY_RING - 1");
        _assertEnergy(meter, J - 1, 0, 0, false, "at: J - 1 is gone");
        assertFalse(readings.energyKept(meter, J - 1), "at: J - 1 not kept");
        _assertEnergy(meter, J, 900, 0, true, "under: J is kept");
        assertTrue(readings.energyKept(meter, J), "under: J kept");

        // From slotStart(J + ENERGY_RING) - MAX_CLOCK_SKEW a reading may lie in slot J + ENERGY_RING.
        _readAt(alice, t + 1, 2600, 0, _start(J + ring)); // 101 Wh in the last second of J + ENERGY_RING - 1
        _assertEnergy(meter, J + ring, 0, 0, true, "J + ENERGY_RING: its reading, no energy yet");
        _assertEnergy(meter, J, 0, 0, false, "at: J is gone");
        assertFalse(readings.energyKept(meter, J), "at: J not kept");
        _assertEnergy(meter, J + 1, 250, 0, true, "under: J + 1 is kept");
        // Over: J - 1 and J + ENERGY_RING are ENERGY_RING + 1 apart, in different words: the word J - 1 left
        // holds J + ENERGY_RING - 1, untouched by J + ENERGY_RING.
        _assertEnergy(meter, J + ring - 1, 1000, 0, true, "over: J + ENERGY_RING - 1 in its own word");
        assertTrue(readings.energyKept(meter, J + ring - 1), "over: kept");
    }

    /// A late reading re-splits segments over reused words (subtracting shares the same epoch booked, never the
    /// old occupant's): the energies equal those of a meter that got the same readings in time order.
    function test_lateReadingInReusedWords_matchesInOrder() public {
        address bob = _participant("bob", IRegistry.Role.Prosumer, 0);
        address[2] memory ps = [alice, bob];
        uint64 late = J + ring;
        // The first epoch: J - 1 and J measured (their words are reused below).
        for (uint64 k = 0; k < 3; ++k) {
            for (uint256 i = 0; i < 2; ++i) {
                _readAt(ps[i], _start(J - 1 + k), 900 * k, 0, _start(J - 1 + k));
            }
        }
        // Alice's readings arrive out of order (the one at late + 10 s after the one at late + 200 s), bob's in
        // time order; the late reading's slot and the one before are still open in both cases.
        _readAt(alice, _start(late - 1) + 100, 5000, 0, _start(late - 1) + 100);
        _read(bob, 5000, 0, uint64(_start(late - 1) + 100));
        _readAt(bob, _start(late) + 10, 6000, 0, _start(late) + 10);
        _readAt(alice, _start(late) + 200, 6700, 0, _start(late) + 200);
        _read(bob, 6700, 0, uint64(_start(late) + 200));
        _readAt(alice, _start(late) + 250, 6000, 0, _start(late) + 10);
        for (uint256 i = 0; i < 2; ++i) {
            address m = meterAddrOf[ps[i]];
            // Gap from the anchor (1800 at the first open slot's start, late - 2) to 5000 at late - 1 + 100 s:
            // 3200 Wh over 1000 s. Then 1000 Wh over 810 s (800 in late - 1) and 700 Wh inside `late`.
            _assertEnergy(m, late - 2, 2880, 0, true, "late - 2");
            _assertEnergy(m, late - 1, 320 + 987, 0, true, "late - 1 (reuses J - 1's word)");
            _assertEnergy(m, late, 13 + 700, 0, true, "late (reuses J's word)");
            _assertEnergy(m, J - 1, 0, 0, false, "J - 1 gone");
            _assertEnergy(m, J, 0, 0, false, "J gone");
            _assertEnergy(m, J + 1, 0, 0, true, "J + 1 kept (its reading, no energy)");
        }
    }

    // ------------------------------------------------------------------ storage over 5,000 slots

    /// One meter reports twice per slot (at its start and in its middle) for 5,000 slots. Its storage: one meta
    /// word, the 64 reading words and one energy word per slot, until the ring of ENERGY_RING energy words has
    /// wrapped; from then on, nothing more (before the ring it grew by one word per slot forever).
    function test_storageWords_oneMeter_boundedAfter5000Slots() public {
        uint64 first = 10;
        uint64 slots = 5000;
        vm.record();
        uint256 at1000;
        uint256 atRing;
        uint64 v;
        for (uint64 j = first; j < first + slots; ++j) {
            _readAt(alice, _start(j), v, v / 10, _start(j));
            v += 100;
            _readAt(alice, _start(j) + 450, v, v / 10, _start(j) + 450);
            v += 100;
            _collectWrites(address(readings));
            if (j == first + 999) at1000 = _liveWords(address(readings));
            if (j == first + ring - 1) atRing = _liveWords(address(readings));
        }
        uint256 at5000 = _liveWords(address(readings));
        _print("readings storage words of one meter after 1,000 slots", at1000);
        _print("after 4,096 slots (ENERGY_RING)", atRing);
        _print("after 5,000 slots", at5000);
        uint256 fixedWords = 1 + readings.RING_SIZE(); // meta word and reading ring
        assertEq(at1000, fixedWords + 1000, "one energy word per slot while the ring fills");
        assertEq(atRing, fixedWords + ring, "the ring is full");
        assertEq(at5000, atRing, "no word added after the ring wrapped");
        // The last slots' energies are the meter's, the first ones' gone.
        _assertEnergy(meter, first + slots - 2, 200, 20, true, "a recent slot");
        _assertEnergy(meter, first, 0, 0, false, "the first slot, reused");
    }

    // ------------------------------------------------------------------ settlement after the reuse

    /// What a settlement is expected to bill one participant (see `Settlement`).
    struct Bill {
        uint64 imp;
        uint64 exp;
        uint256 credited;
        uint256 debited;
    }

    address internal seller;
    address internal buyer;
    address internal neighbour;

    /// Slot `s`: a seller asks 300 Wh at 0.15 and a buyer bids 200 Wh at 0.25 (200 Wh clear at 0.15, the ask
    /// rationed); the seller's meter exports 200 Wh, the buyer's imports 500 Wh, and a neighbour without orders
    /// imports 400 Wh.
    function _tradeAndMeter(uint64 s) internal {
        _fundGrid(1000e18);
        seller = _participant("seller", IRegistry.Role.Prosumer, 100e18);
        buyer = _participant("buyer", IRegistry.Role.Consumer, 100e18);
        neighbour = _participant("neighbour", IRegistry.Role.Consumer, 100e18);
        vm.prank(operator);
        market.openSlot(s);
        vm.prank(seller);
        market.placeAsk(s, 300, 150e15);
        vm.prank(buyer);
        market.placeBid(s, 200, 250e15);
        vm.warp(market.gateClosureTime(s));
        market.clear(s);
        vm.warp(_start(s));
        _read(seller, 0, 0, uint64(_start(s)));
        _read(buyer, 0, 0, uint64(_start(s)));
        _read(neighbour, 0, 0, uint64(_start(s)));
        vm.warp(_start(s) + SLOT);
        _read(seller, 0, 200, uint64(_start(s) + SLOT));
        _read(buyer, 500, 0, uint64(_start(s) + SLOT));
        _read(neighbour, 400, 0, uint64(_start(s) + SLOT));
    }

    /// Settles the three of {_tradeAndMeter} in slot `s`, checks the events and balances against `sb` (seller)
    /// and `bb` (buyer), and returns their net balance changes. The neighbour's grid-only window has closed.
    function _settleChecked(uint64 s, Bill memory sb, Bill memory bb)
        internal
        returns (int256 sellerNet, int256 buyerNet)
    {
        uint256 sellerBefore = _free(seller);
        uint256 buyerBefore = _free(buyer);
        address[] memory all = new address[](3);
        (all[0], all[1], all[2]) = (seller, buyer, neighbour);
        vm.expectEmit(address(market));
        emit IEnergyMarket.ParticipantSettled(s, seller, 0, 200, sb.imp, sb.exp, sb.credited, sb.debited);
        vm.expectEmit(address(market));
        emit IEnergyMarket.ParticipantSettled(s, buyer, 200, 0, bb.imp, bb.exp, bb.credited, bb.debited);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SettlementSkipped(s, neighbour, IEnergyMarket.SettlementExpired.selector);
        market.settle(s, all);
        sellerNet = int256(_free(seller)) - int256(sellerBefore);
        buyerNet = int256(_free(buyer)) - int256(buyerBefore);
        assertEq(sellerNet, int256(sb.credited) - int256(sb.debited), "seller's balance");
        assertEq(buyerNet, int256(bb.credited) - int256(bb.debited), "buyer's balance");
    }

    /// A position settled after its slot's energy was reused is billed as unmetered (zero import and export):
    /// the seller pays retail plus the short premium for all it sold, the buyer gets all it bought back at feed-in
    /// less the long penalty, and the buyer's import beyond its purchase goes unbilled. Against the same
    /// settlement one second before the energy can be reused (metered): the seller loses r + ps per Wh sold, the
    /// buyer gains f - pl per Wh bought and r per Wh imported beyond it, at the grid's cost. A neighbour without
    /// orders cannot be settled in either case: its grid-only window (POSITION_RING slots) closed long before.
    function test_settleAfterEnergyReused_billedAsUnmetered() public {
        uint64 s = 4;
        _tradeAndMeter(s);
        uint256 earliestReuse = _start(s + ring) - readings.MAX_CLOCK_SKEW();
        assertLt(market.gridSettlementClosesAt(s), earliestReuse, "the grid-only window closes long before");
        Bill memory seller_ = Bill(0, 200, _cost(300, RETAIL + PREMIUM - 150e15) + _cost(200, 150e15), 0);
        Bill memory buyer_ = Bill(500, 0, _cost(200, 250e15 + PREMIUM), _cost(200, 150e15) + _cost(300, RETAIL));
        uint256 snap = vm.snapshotState();

        // 42 days late, but before any reading can lie in slot s + ENERGY_RING: metered.
        vm.warp(earliestReuse - 1);
        assertTrue(readings.energyKept(meterAddrOf[buyer], s), "kept");
        (int256 sellerMetered, int256 buyerMetered) = _settleChecked(s, seller_, buyer_);

        // Instead: the three meters report in slot s + ENERGY_RING first.
        vm.revertToState(snap);
        vm.warp(_start(s + ring));
        _read(seller, 0, 250, uint64(_start(s + ring)));
        _read(buyer, 550, 0, uint64(_start(s + ring)));
        _read(neighbour, 450, 0, uint64(_start(s + ring)));
        assertFalse(readings.energyKept(meterAddrOf[seller], s), "the seller's energy in s is gone");
        assertFalse(readings.energyKept(meterAddrOf[buyer], s), "the buyer's too");
        // Unmetered: the seller delivered nothing and the buyer used nothing.
        (seller_.exp, seller_.debited) = (0, _cost(200, RETAIL + PREMIUM));
        buyer_.imp = 0;
        buyer_.credited += _cost(200, FEED_IN);
        buyer_.debited = _cost(200, 150e15) + _cost(200, PREMIUM);
        (int256 sellerLate, int256 buyerLate) = _settleChecked(s, seller_, buyer_);
        assertEq(sellerMetered - sellerLate, int256(_cost(200, RETAIL + PREMIUM)), "late: the seller loses r + ps");
        assertEq(
            buyerLate - buyerMetered,
            int256(_cost(200, FEED_IN - PREMIUM) + _cost(300, RETAIL)),
            "late: the buyer gains f - pl per Wh bought and r per Wh of extra import"
        );
    }
}
