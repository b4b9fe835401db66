// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "./Test.sol";
import {CreditToken} from "../../src/CreditToken.sol";
import {EnergyMarket} from "../../src/EnergyMarket.sol";
import {MeterReadings} from "../../src/MeterReadings.sol";
import {Registry} from "../../src/Registry.sol";
import {IEnergyMarket} from "../../src/interfaces/IEnergyMarket.sol";
import {IMeterReadings} from "../../src/interfaces/IMeterReadings.sol";
import {IRegistry} from "../../src/interfaces/IRegistry.sol";

/// @notice Deploys the four contracts with test defaults and offers helpers to set up participants.
abstract contract Fixture is Test {
    uint64 internal constant START = 1_000_000;
    uint32 internal constant SLOT = 900;
    uint32 internal constant GATE = 300;
    uint32 internal constant GRACE = 300;
    uint256 internal constant TICK = 1e15; // 0.001 credit per kWh
    uint256 internal constant RETAIL = 300e15; // 0.30 credit per kWh
    uint256 internal constant FEED_IN = 80e15; // 0.08 credit per kWh
    uint256 internal constant MAX_LEVEL = (RETAIL - FEED_IN) / TICK; // 220
    /// @dev The registry's imbalance premiums at deployment (short over retail, long below feed-in).
    uint256 internal constant PREMIUM = 50 * TICK;
    /// @dev The registry's capacity at registration, watts, and what it allows per 900 s slot.
    uint32 internal constant CAPACITY_W = 25_000;
    uint256 internal constant CAPACITY_WH = uint256(CAPACITY_W) * SLOT / 3600; // 6,250 Wh

    address internal operator = makeAddr("operator");
    address internal grid = makeAddr("grid");

    Registry internal registry;
    CreditToken internal token;
    MeterReadings internal readings;
    EnergyMarket internal market;

    mapping(address => uint256) internal meterKeyOf;
    mapping(address => address) internal meterAddrOf;

    function _deploy(IEnergyMarket.MarketMode mode) internal {
        address[] memory admins = new address[](1);
        admins[0] = operator;
        registry = new Registry(admins, START, SLOT, TICK, RETAIL, FEED_IN);
        token = new CreditToken("P2P Energy Credit", "PEC", admins);
        readings = new MeterReadings(registry, GRACE);
        market = new EnergyMarket(registry, token, readings, grid, GATE, GRACE, mode);
        vm.prank(operator);
        registry.setRoleListener(address(market));
        vm.label(address(registry), "Registry");
        vm.label(address(token), "CreditToken");
        vm.label(address(readings), "MeterReadings");
        vm.label(address(market), "EnergyMarket");
        vm.warp(START - 3600);
    }

    /// @dev Registers `name` with a bound meter and deposits `credits` into its market account.
    function _participant(string memory name, IRegistry.Role role, uint256 credits) internal returns (address p) {
        p = makeAddr(name);
        (address meter, uint256 key) = makeKey(string.concat(name, "-meter"));
        meterKeyOf[p] = key;
        meterAddrOf[p] = meter;
        vm.startPrank(operator);
        registry.registerParticipant(p, role);
        registry.bindMeter(meter, p);
        vm.stopPrank();
        if (credits != 0) _fund(p, credits);
    }

    function _fund(address p, uint256 credits) internal {
        vm.prank(operator);
        token.mint(p, credits);
        vm.startPrank(p);
        token.approve(address(market), credits);
        market.deposit(credits);
        vm.stopPrank();
    }

    function _fundGrid(uint256 credits) internal {
        vm.startPrank(operator);
        token.mint(operator, credits);
        token.approve(address(market), credits);
        market.depositFor(grid, credits);
        vm.stopPrank();
    }

    function _free(address a) internal view returns (uint256 free) {
        (free,) = market.accountOf(a);
    }

    function _debt(address a) internal view returns (uint256 debt) {
        (, debt) = market.accountOf(a);
    }

    function _start(uint64 slot) internal pure returns (uint256) {
        return uint256(START) + uint256(slot) * SLOT;
    }

    /// @dev Has `p`'s meter report cumulative counters at time `ts` (direct submission).
    function _read(address p, uint64 imp, uint64 exp, uint64 ts) internal {
        vm.prank(meterAddrOf[p]);
        readings.submitReading(imp, exp, ts);
    }

    function _signed(uint256 key, uint64 imp, uint64 exp, uint64 ts)
        internal
        view
        returns (IMeterReadings.SignedReading memory r)
    {
        address meter = vm.addr(key);
        bytes32 structHash = keccak256(abi.encode(readings.READING_TYPEHASH(), meter, imp, exp, ts));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", readings.domainSeparator(), structHash));
        (bytes32 rr, bytes32 vs) = vm.signCompact(key, digest);
        r = IMeterReadings.SignedReading(meter, imp, exp, ts, rr, vs);
    }

    /// @dev Cost in credit base units of `wh` Wh at `pricePerKWh`.
    function _cost(uint256 wh, uint256 pricePerKWh) internal pure returns (uint256) {
        return wh * pricePerKWh / 1000;
    }

    /// @dev A meter binding packed as the registry pushes it to the market (`IRoleListener.onMeterChanged`).
    function _packed(address meter, uint256 fromSlot, uint256 untilSlot) internal pure returns (uint256) {
        return uint256(uint160(meter)) | (fromSlot << 160) | (untilSlot << 208);
    }

    function _price(uint256 level) internal pure returns (uint256) {
        return FEED_IN + level * TICK;
    }
}
