// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Fixture} from "./utils/Fixture.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";
import {IMeterReadings} from "../src/interfaces/IMeterReadings.sol";
import {IRegistry} from "../src/interfaces/IRegistry.sol";

/// Gas benchmarks behind BENCHMARKS.md ("## Contracts gas"). Run:
///   forge test --match-contract GasBench --gas-report
/// Set-up work is excluded from metering so the report shows the measured calls.
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
            address p = address(uint160(0x100000 + i));
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

    function test_gas_placeOrders_100() public {
        _people(100);
        _book(S, 100, 1);
    }

    /// Orders in a slot 256 slots after a settled one reuse the accounts' ring words (steady state).
    /// The first round uses only asks and the second only bids, so `placeBid` in this test's gas report
    /// measures steady-state orders alone.
    function test_gas_placeOrders_steadyState_1000() public {
        _people(1000);
        for (uint256 i = 0; i < 1000; ++i) {
            vm.prank(people[i]);
            market.placeAsk(S, 1000, _price(i % (MAX_LEVEL + 1)));
        }
        vm.warp(market.settlementOpensAt(S));
        market.clear(S);
        market.settle(S, people);
        for (uint256 i = 0; i < 1000; ++i) {
            uint256 seed = uint256(keccak256(abi.encode(i)));
            vm.prank(people[i]);
            market.placeBid(S + 256, uint32(100 + seed % 5000), _price((seed >> 32) % (MAX_LEVEL + 1)));
        }
    }

    function test_gas_clear_1000orders() public {
        _people(1000);

        _book(S, 1000, 2);
        vm.warp(market.gateClosureTime(S));

        uint256 g = gasleft();
        market.clear(S);
        g -= gasleft();
        assertLt(g, 16_777_216, "fits the EIP-7825 per-transaction cap");
        assertLe(g / 1000, 10_000, "at most 10k gas per order");
    }

    function test_gas_settle_100participants() public {
        _people(100);

        _book(S, 100, 3);
        vm.warp(market.gateClosureTime(S));
        market.clear(S);
        vm.warp(_start(S) + SLOT);
        for (uint256 i = 0; i < 100; ++i) {
            _read(people[i], 0, 0, uint64(_start(S) - 5));
            _read(people[i], uint64(i * 37 % 4000), uint64(i * 53 % 4000), uint64(_start(S) + 800));
        }
        vm.warp(market.settlementOpensAt(S));

        // one participant alone, then the other 99 in one call
        address[] memory one = new address[](1);
        one[0] = people[0];
        market.settle(S, one);
        address[] memory rest = new address[](99);
        for (uint256 i = 1; i < 100; ++i) {
            rest[i - 1] = people[i];
        }
        market.settle(S, rest);
    }

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

    function test_gas_submitReading_direct() public {
        _people(2);
        vm.warp(_start(S) + 10);
        _read(people[0], 1000, 10, uint64(_start(S) + 1));
        _read(people[0], 1010, 10, uint64(_start(S) + 5));
    }
}
