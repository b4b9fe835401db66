// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Fixture} from "./utils/Fixture.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";
import {IMeterReadings} from "../src/interfaces/IMeterReadings.sol";
import {IRegistry} from "../src/interfaces/IRegistry.sol";

/// Gas benchmarks behind BENCHMARKS.md ("## Contracts gas"). Run all of them, or one scenario at a time so that
/// the report's row of the measured function shows that scenario alone:
///   forge test --match-contract GasBench --gas-report
///   forge test --match-test test_gas_order_firstOfAccount --gas-report
/// In each scenario the measured function is called only in the situation the test name describes; set-up uses
/// other functions (or other sides: asks to set up a bid measurement). Participants have realistic (hashed)
/// addresses so that calldata costs what it costs on a real chain. "Opened" slots were opened by the
/// operator's keeper ({EnergyMarket-openSlot}); participants are registered with the market as the registry's
/// listener, so their position words exist.
contract GasBench is Fixture {
    uint64 internal constant S = 4;

    address[] internal people;

    function setUp() public {
        _deploy(IEnergyMarket.MarketMode.PayAsClear);
        _fundGrid(1_000_000e18);
    }

    function _people(uint256 n) internal {
        vm.prank(operator);
        token.mint(operator, n * 10e18);
        vm.prank(operator);
        token.approve(address(market), n * 10e18);
        for (uint256 i = people.length; i < n; ++i) {
            address p = address(uint160(uint256(keccak256(abi.encode("participant", i)))));
            vm.startPrank(operator);
            registry.registerParticipant(p, IRegistry.Role.Prosumer);
            address meter = vm.addr(0x200000 + i);
            registry.bindMeter(meter, p);
            market.depositFor(p, 10e18);
            vm.stopPrank();
            meterAddrOf[p] = meter;
            meterKeyOf[p] = 0x200000 + i;
            people.push(p);
        }
    }

    function _open(uint64 slot) internal {
        vm.prank(operator);
        market.openSlot(slot);
    }

    /// Pseudo-random book: half bids, half asks, prices spread over the whole range.
    function _book(uint64 slot, uint256 n, uint256 seed) internal {
        for (uint256 i = 0; i < n; ++i) {
            seed = uint256(keccak256(abi.encode(seed, i)));
            uint32 wh = uint32(100 + seed % 5000);
            uint256 price = _price((seed >> 32) % (MAX_LEVEL + 1));
            vm.prank(people[i]);
            if (i % 2 == 0) market.placeBid(slot, wh, price);
            else market.placeAsk(slot, wh, price);
        }
    }

    // ------------------------------------------------------------------ placing orders

    /// Every `placeBid` here is the first order ever of its account (and many are the first at their price
    /// level), in an opened slot. `openSlot` is measured too.
    function test_gas_order_firstOfAccount() public {
        _people(100);
        _open(S);
        for (uint256 i = 0; i < 100; ++i) {
            uint256 seed = uint256(keccak256(abi.encode(i)));
            vm.prank(people[i]);
            market.placeBid(S, uint32(100 + seed % 5000), _price((seed >> 32) % (MAX_LEVEL + 1)));
        }
    }

    /// The one `placeBid` is the first order of an opened slot (and of its account).
    function test_gas_order_firstOfSlot() public {
        _people(1);
        _open(S);
        vm.prank(people[0]);
        market.placeBid(S, 1000, _price(120));
    }

    /// Orders in a slot 64 slots (POSITION_RING) after a settled one reuse the accounts' ring words (steady
    /// state). The first round uses only asks (first orders of their accounts) and the second only bids, so
    /// `placeBid` in this test's gas report measures steady-state orders alone. Both slots are opened. The first
    /// round's `settle` of all 500 participants in one call is reported too.
    function test_gas_placeOrders_steadyState_500() public {
        _people(500);
        _open(S);
        for (uint256 i = 0; i < 500; ++i) {
            vm.prank(people[i]);
            market.placeAsk(S, 1000, _price(i % (MAX_LEVEL + 1)));
        }
        vm.warp(market.settlementOpensAt(S));
        market.clear(S);
        market.settle(S, people);
        uint64 next = S + uint64(market.POSITION_RING());
        _open(next);
        for (uint256 i = 0; i < 500; ++i) {
            uint256 seed = uint256(keccak256(abi.encode(i)));
            vm.prank(people[i]);
            market.placeBid(next, uint32(100 + seed % 5000), _price((seed >> 32) % (MAX_LEVEL + 1)));
        }
    }

    // ------------------------------------------------------------------ clearing

    /// 1,000 orders: 500 prosumers with a bid and an ask each at random prices (clearing only sees the
    /// per-level totals, so who placed them does not matter).
    function test_gas_clear_1000orders() public {
        _people(500);
        _open(S);
        for (uint256 i = 0; i < 500; ++i) {
            uint256 seed = uint256(keccak256(abi.encode(uint256(2), i)));
            vm.startPrank(people[i]);
            market.placeBid(S, uint32(100 + seed % 5000), _price((seed >> 32) % (MAX_LEVEL + 1)));
            market.placeAsk(S, uint32(100 + (seed >> 64) % 5000), _price((seed >> 96) % (MAX_LEVEL + 1)));
            vm.stopPrank();
        }
        vm.warp(market.gateClosureTime(S));

        uint256 g = gasleft();
        market.clear(S);
        g -= gasleft();
        assertLt(g, 16_777_216, "fits the EIP-7825 per-transaction cap");
        assertLe(g / 1000, 10_000, "at most 10k gas per order");
    }

    // ------------------------------------------------------------------ settlement

    /// 100 participants trade in slot S (random book), every meter reports at the start of the slot and once
    /// inside it (`energyInSlot` reads one word whatever the readings).
    function _settlementSetup() internal {
        _people(100);
        _open(S);
        _book(S, 100, 3);
        vm.warp(market.gateClosureTime(S));
        market.clear(S);
        vm.warp(_start(S) + SLOT);
        for (uint256 i = 0; i < 100; ++i) {
            _read(people[i], 0, 0, uint64(_start(S)));
            _read(people[i], uint64(i * 37 % 4000), uint64(i * 53 % 4000), uint64(_start(S) + 800));
        }
        vm.warp(market.settlementOpensAt(S));
    }

    /// A participant with a filled order whose orders are not at a marginal level (`marginal`) or is (`!marginal`).
    function _pick(bool marginal) internal view returns (address) {
        IEnergyMarket.SlotInfo memory info = market.slotInfo(S);
        for (uint256 i = 0; i < people.length; ++i) {
            (uint64 b, uint64 s) = market.previewFills(S, people[i]);
            if (b == 0 && s == 0) continue;
            IEnergyMarket.Position memory p = market.positionOf(S, people[i]);
            bool atMarginal = (p.bidWh != 0 && p.bidPricePerKWh == _price(info.bidMarginalLevel))
                || (p.askWh != 0 && p.askPricePerKWh == _price(info.askMarginalLevel));
            if (atMarginal == marginal) return people[i];
        }
        revert("no such participant");
    }

    /// One participant with a fully filled order (not at a marginal level) settled alone.
    function test_gas_settle_single_filled() public {
        _settlementSetup();
        address[] memory one = new address[](1);
        one[0] = _pick(false);
        market.settle(S, one);
    }

    /// One participant with an order at a marginal level settled alone: it also updates the slot's shared
    /// pro-rata word.
    function test_gas_settle_single_marginal() public {
        _settlementSetup();
        address[] memory one = new address[](1);
        one[0] = _pick(true);
        market.settle(S, one);
    }

    /// 99 participants settled in one call (the 100th first, alone).
    function test_gas_settle_batch99() public {
        _settlementSetup();
        address[] memory one = new address[](1);
        one[0] = people[0];
        market.settle(S, one);
        address[] memory rest = new address[](99);
        for (uint256 i = 1; i < 100; ++i) {
            rest[i - 1] = people[i];
        }
        market.settle(S, rest);
    }

    /// One participant without orders in the slot, settled against the grid alone (issue 14, part 6): its meter
    /// reported, and its settled-without-orders word exists (created at registration).
    function test_gas_settle_single_withoutOrders() public {
        _people(101);
        _open(S);
        _book(S, 100, 3);
        vm.warp(market.gateClosureTime(S));
        market.clear(S);
        vm.warp(_start(S) + SLOT);
        _read(people[100], 0, 0, uint64(_start(S)));
        _read(people[100], 700, 20, uint64(_start(S) + 800));
        vm.warp(market.settlementOpensAt(S));
        address[] memory one = new address[](1);
        one[0] = people[100];
        market.settle(S, one);
    }

    /// One participant with a filled order settled for a slot before its meter was swapped: the market's copy of
    /// its latest binding starts after the slot, so settlement reads its copy of the binding before it.
    function test_gas_settle_single_afterMeterSwap() public {
        _settlementSetup();
        address p = _pick(false);
        vm.startPrank(operator);
        registry.unbindMeter(meterAddrOf[p]);
        registry.bindMeter(vm.addr(0x300000), p);
        vm.stopPrank();
        address[] memory one = new address[](1);
        one[0] = p;
        market.settle(S, one);
    }

    /// One participant with an order at a marginal level settled for a slot before its meter swap: the marginal
    /// path (header rewrite) and the previous-binding read together.
    function test_gas_settle_single_marginal_afterMeterSwap() public {
        _settlementSetup();
        address p = _pick(true);
        _swap(p, 0x300000);
        address[] memory one = new address[](1);
        one[0] = p;
        market.settle(S, one);
    }

    /// One participant without orders settled for a slot before its meter swap (the costliest lone path).
    function test_gas_settle_single_withoutOrders_afterMeterSwap() public {
        _people(101);
        _open(S);
        _book(S, 100, 3);
        vm.warp(market.gateClosureTime(S));
        market.clear(S);
        vm.warp(_start(S) + SLOT);
        _read(people[100], 0, 0, uint64(_start(S)));
        _read(people[100], 700, 20, uint64(_start(S) + 800));
        vm.warp(market.settlementOpensAt(S));
        _swap(people[100], 0x300000);
        address[] memory one = new address[](1);
        one[0] = people[100];
        market.settle(S, one);
    }

    /// The operator swaps `p`'s meter for the one with key `key` (effective from the next slot).
    function _swap(address p, uint256 key) internal {
        vm.startPrank(operator);
        registry.unbindMeter(registry.meterOf(p));
        registry.bindMeter(vm.addr(key), p);
        vm.stopPrank();
    }

    /// A slot before two binding changes (issue 14, part 8): the second swap would drop the market's copy of the
    /// meter bound in slot S while the participant's position there is unsettled, so the market refuses it
    /// (`BindingStillNeeded`); the operator settles the participant first (the measured `settle`, a slot before one
    /// swap, read from the market's copy of the previous binding) and the swap goes through. Settlement never asks
    /// the registry for a participant the market mirrors.
    function test_gas_settle_single_beforeTwoMeterSwaps() public {
        _settlementSetup();
        address p = _pick(false);
        address m0 = meterAddrOf[p];
        _swap(p, 0x300000);
        vm.warp(block.timestamp + SLOT); // a later slot, so that the second meter's binding covers a slot
        vm.prank(operator);
        registry.unbindMeter(vm.addr(0x300000));
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.BindingStillNeeded.selector, p, S, m0));
        vm.prank(operator);
        registry.bindMeter(vm.addr(0x300001), p);
        address[] memory one = new address[](1);
        one[0] = p;
        market.settle(S, one);
        vm.prank(operator);
        registry.bindMeter(vm.addr(0x300001), p);
        assertEq(registry.meterOf(p), vm.addr(0x300001), "the second swap once S is settled");
    }

    // ------------------------------------------------------------------ slot storage

    /// `openSlot` of a slot whose price-level words a cleared slot `SLOT_RING` earlier used: the words are rewritten,
    /// not created (issue 14, part 7). The report's minimum is this call, its maximum the first use of the words.
    function test_gas_openSlot_reusingWords() public {
        _open(S);
        vm.warp(market.gateClosureTime(S));
        market.clear(S);
        _open(S + uint64(market.SLOT_RING()));
    }

    // ------------------------------------------------------------------ meter readings

    function test_gas_submitReadings_batch100() public {
        _people(100);

        vm.warp(_start(S) + 10);
        IMeterReadings.SignedReading[] memory first = new IMeterReadings.SignedReading[](100);
        IMeterReadings.SignedReading[] memory second = new IMeterReadings.SignedReading[](100);
        for (uint256 i = 0; i < 100; ++i) {
            first[i] = _signed(meterKeyOf[people[i]], 1000, 10, uint64(_start(S) + 1));
            second[i] = _signed(meterKeyOf[people[i]], 1010, 12, uint64(_start(S) + 5));
        }
        readings.submitReadings(first); // first readings of the slot (open slot records)

        readings.submitReadings(second); // steady state: same slot as the previous reading
    }

    /// Has `people[0]`'s meter report one second into `slot` (counters growing by 250 Wh import and 40 Wh export
    /// per slot): directly (`submitReading`, the measured call) or, for set-up, through the batch path's per-item
    /// call (`recordRelayed`, pranked as the contract itself) so that the report's `submitReading` and
    /// `submitReadings` rows show the measured calls alone.
    function _readOncePerSlot(uint64 slot, bool measured) internal {
        uint64 ts = uint64(_start(slot)) + 1;
        vm.warp(ts);
        uint64 imp = 250 * slot;
        uint64 exp = 40 * slot;
        if (measured) {
            _read(people[0], imp, exp, ts);
        } else {
            vm.prank(address(readings));
            readings.recordRelayed(meterAddrOf[people[0]], imp, exp, ts);
        }
    }

    /// A meter that reports once per slot: the first reading of a slot splits the segment from the previous
    /// slot's reading over both slots. Measured twice with `submitReading`: in slot `S + 100` (the meter's 64
    /// reading words are all in use, the slot's energy word is created) and in slot `S + 100 + ENERGY_RING`,
    /// whose energy word slot `S + 100` left (issue 14 part 7: rewritten instead of created). The meter is
    /// silent in between; the two slots before each measured one have readings, so both measured readings take
    /// the same path.
    function test_gas_submitReading_firstOfSlot_energyWordNewThenReused() public {
        _people(1);
        for (uint64 j = S; j < S + 100; ++j) {
            _readOncePerSlot(j, false);
        }
        _readOncePerSlot(S + 100, true); // the slot's energy word is created
        uint64 later = S + 100 + uint64(readings.ENERGY_RING());
        _readOncePerSlot(later - 2, false);
        _readOncePerSlot(later - 1, false);
        _readOncePerSlot(later, true); // the slot's energy word is the one slot S + 100 used
    }

    function test_gas_submitReading_direct() public {
        _people(2);
        vm.warp(_start(S) + 10);
        _read(people[0], 1000, 10, uint64(_start(S) + 1));
        _read(people[0], 1010, 10, uint64(_start(S) + 5));
    }
}
