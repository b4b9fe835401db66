// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {Fixture} from "./utils/Fixture.sol";
import {Registry} from "../src/Registry.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";
import {IRegistry} from "../src/interfaces/IRegistry.sol";

contract RegistryTest is Fixture {
    address internal alice = makeAddr("alice");
    address internal meterA = makeAddr("meterA");
    address internal stranger = makeAddr("stranger");

    function setUp() public {
        _deploy(IEnergyMarket.MarketMode.PayAsClear);
    }

    function _admins(address a) internal pure returns (address[] memory admins) {
        admins = new address[](1);
        admins[0] = a;
    }

    // ------------------------------------------------------------------ constructor

    function test_constructor_setsConfiguration() public view {
        assertTrue(registry.hasRole(registry.DEFAULT_ADMIN_ROLE(), operator), "admin role");
        assertTrue(registry.isOperator(operator), "operator role");
        assertFalse(registry.isOperator(stranger), "stranger not operator");
        assertEq(registry.startTime(), START, "start");
        assertEq(registry.slotLength(), SLOT, "slot length");
        assertEq(registry.priceTick(), TICK, "tick");
        (uint256 r, uint256 f) = registry.pricesAt(0);
        assertEq(r, RETAIL, "retail");
        assertEq(f, FEED_IN, "feed-in");
    }

    function test_constructor_multipleAdmins() public {
        address[] memory admins = new address[](2);
        admins[0] = operator;
        admins[1] = stranger;
        Registry r = new Registry(admins, START, SLOT, TICK, RETAIL, FEED_IN);
        assertTrue(r.isOperator(operator) && r.isOperator(stranger), "both operators");
    }

    function test_constructor_revertsWithoutAdmins() public {
        vm.expectRevert(IRegistry.NoAdmins.selector);
        new Registry(new address[](0), START, SLOT, TICK, RETAIL, FEED_IN);
    }

    function test_constructor_revertsOnZeroAdmin() public {
        vm.expectRevert(IRegistry.ZeroAddress.selector);
        new Registry(new address[](1), START, SLOT, TICK, RETAIL, FEED_IN);
    }

    function test_constructor_revertsOnShortSlot() public {
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidSchedule.selector, START, 4));
        new Registry(_admins(operator), START, 4, TICK, RETAIL, FEED_IN);
    }

    function test_constructor_revertsOnBadTick() public {
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPriceTick.selector, 0));
        new Registry(_admins(operator), START, SLOT, 0, RETAIL, FEED_IN);
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPriceTick.selector, 1500));
        new Registry(_admins(operator), START, SLOT, 1500, RETAIL, FEED_IN);
    }

    function test_constructor_revertsOnBadPrices() public {
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, FEED_IN, RETAIL));
        new Registry(_admins(operator), START, SLOT, TICK, FEED_IN, RETAIL);
    }

    // ------------------------------------------------------------------ role listener

    function test_setRoleListener_pushesRoleChanges() public {
        // the fixture made the market the listener
        assertEq(registry.roleListener(), address(market));
        vm.expectEmit(address(market));
        emit IEnergyMarket.RoleSynced(alice, IRegistry.Role.Prosumer);
        vm.prank(operator);
        registry.registerParticipant(alice, IRegistry.Role.Prosumer);
        vm.expectEmit(address(market));
        emit IEnergyMarket.RoleSynced(alice, IRegistry.Role.None);
        vm.prank(operator);
        registry.removeParticipant(alice);
    }

    function test_setRoleListener_revertsWhenSet() public {
        vm.expectRevert(abi.encodeWithSelector(IRegistry.RoleListenerAlreadySet.selector, address(market)));
        vm.prank(operator);
        registry.setRoleListener(stranger);
    }

    function test_setRoleListener_revertsOnZero() public {
        Registry r = new Registry(_admins(operator), START, SLOT, TICK, RETAIL, FEED_IN);
        vm.expectRevert(IRegistry.ZeroAddress.selector);
        vm.prank(operator);
        r.setRoleListener(address(0));
    }

    function test_setRoleListener_revertsForNonAdmin() public {
        Registry r = new Registry(_admins(operator), START, SLOT, TICK, RETAIL, FEED_IN);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, r.DEFAULT_ADMIN_ROLE()
            )
        );
        vm.prank(stranger);
        r.setRoleListener(stranger);
    }

    function test_setRoleListener_event() public {
        Registry r = new Registry(_admins(operator), START, SLOT, TICK, RETAIL, FEED_IN);
        vm.expectEmit(address(r));
        emit IRegistry.RoleListenerSet(stranger);
        vm.prank(operator);
        r.setRoleListener(stranger);
    }

    // ------------------------------------------------------------------ participants

    function test_registerParticipant() public {
        vm.expectEmit(address(registry));
        emit IRegistry.ParticipantRegistered(alice, IRegistry.Role.Prosumer);
        vm.prank(operator);
        registry.registerParticipant(alice, IRegistry.Role.Prosumer);
        assertTrue(registry.roleOf(alice) == IRegistry.Role.Prosumer, "role");
    }

    function test_registerParticipant_revertsForNonOperator() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, registry.OPERATOR_ROLE()
            )
        );
        vm.prank(stranger);
        registry.registerParticipant(alice, IRegistry.Role.Consumer);
    }

    function test_registerParticipant_revertsOnZeroAddress() public {
        vm.expectRevert(IRegistry.ZeroAddress.selector);
        vm.prank(operator);
        registry.registerParticipant(address(0), IRegistry.Role.Consumer);
    }

    function test_registerParticipant_revertsOnNoneRole() public {
        vm.expectRevert(IRegistry.InvalidRole.selector);
        vm.prank(operator);
        registry.registerParticipant(alice, IRegistry.Role.None);
    }

    function test_registerParticipant_revertsWhenRegistered() public {
        vm.startPrank(operator);
        registry.registerParticipant(alice, IRegistry.Role.Consumer);
        vm.expectRevert(abi.encodeWithSelector(IRegistry.AlreadyRegistered.selector, alice));
        registry.registerParticipant(alice, IRegistry.Role.Prosumer);
        vm.stopPrank();
    }

    function test_removeParticipant_unbindsMeter() public {
        vm.startPrank(operator);
        registry.registerParticipant(alice, IRegistry.Role.Consumer);
        registry.bindMeter(meterA, alice);
        vm.expectEmit(address(registry));
        emit IRegistry.MeterUnbound(meterA, alice, 0); // before slot 0: the binding is dropped
        vm.expectEmit(address(registry));
        emit IRegistry.ParticipantRemoved(alice);
        registry.removeParticipant(alice);
        vm.stopPrank();
        assertTrue(registry.roleOf(alice) == IRegistry.Role.None, "removed");
        assertEq(registry.meterOf(alice), address(0));
        assertEq(registry.participantOf(meterA), address(0));
    }

    function test_removeParticipant_withoutMeter() public {
        vm.startPrank(operator);
        registry.registerParticipant(alice, IRegistry.Role.Consumer);
        registry.removeParticipant(alice);
        vm.stopPrank();
        assertTrue(registry.roleOf(alice) == IRegistry.Role.None, "removed");
    }

    function test_removeParticipant_revertsWhenNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(IRegistry.NotRegistered.selector, alice));
        vm.prank(operator);
        registry.removeParticipant(alice);
    }

    // ------------------------------------------------------------------ meters

    function test_bindMeter() public {
        vm.startPrank(operator);
        registry.registerParticipant(alice, IRegistry.Role.Consumer);
        vm.expectEmit(address(registry));
        emit IRegistry.MeterBound(meterA, alice, 0); // before the schedule starts: from slot 0
        registry.bindMeter(meterA, alice);
        vm.stopPrank();
        assertEq(registry.participantOf(meterA), alice);
        assertEq(registry.meterOf(alice), meterA);
    }

    function test_bindMeter_revertsOnZeroMeter() public {
        vm.startPrank(operator);
        registry.registerParticipant(alice, IRegistry.Role.Consumer);
        vm.expectRevert(IRegistry.ZeroAddress.selector);
        registry.bindMeter(address(0), alice);
        vm.stopPrank();
    }

    function test_bindMeter_revertsForUnregistered() public {
        vm.expectRevert(abi.encodeWithSelector(IRegistry.NotRegistered.selector, alice));
        vm.prank(operator);
        registry.bindMeter(meterA, alice);
    }

    function test_bindMeter_revertsWhenMeterBound() public {
        vm.startPrank(operator);
        registry.registerParticipant(alice, IRegistry.Role.Consumer);
        registry.registerParticipant(stranger, IRegistry.Role.Consumer);
        registry.bindMeter(meterA, alice);
        vm.expectRevert(abi.encodeWithSelector(IRegistry.MeterAlreadyBound.selector, meterA, alice));
        registry.bindMeter(meterA, stranger);
        vm.stopPrank();
    }

    function test_bindMeter_revertsWhenParticipantHasMeter() public {
        vm.startPrank(operator);
        registry.registerParticipant(alice, IRegistry.Role.Consumer);
        registry.bindMeter(meterA, alice);
        vm.expectRevert(abi.encodeWithSelector(IRegistry.ParticipantHasMeter.selector, alice, meterA));
        registry.bindMeter(stranger, alice);
        vm.stopPrank();
    }

    function test_bindMeter_revertsForNonOperator() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, registry.OPERATOR_ROLE()
            )
        );
        vm.prank(stranger);
        registry.bindMeter(meterA, alice);
    }

    function test_unbindMeter() public {
        vm.startPrank(operator);
        registry.registerParticipant(alice, IRegistry.Role.Consumer);
        registry.bindMeter(meterA, alice);
        vm.expectEmit(address(registry));
        emit IRegistry.MeterUnbound(meterA, alice, 0);
        registry.unbindMeter(meterA);
        // the participant can get a new meter afterwards
        registry.bindMeter(stranger, alice);
        vm.stopPrank();
        assertEq(registry.participantOf(meterA), address(0));
        assertEq(registry.meterOf(alice), stranger);
    }

    function test_unbindMeter_revertsWhenNotBound() public {
        vm.expectRevert(abi.encodeWithSelector(IRegistry.MeterNotBound.selector, meterA));
        vm.prank(operator);
        registry.unbindMeter(meterA);
    }

    // ------------------------------------------------------------------ prices

    function test_setDefaultPrices() public {
        vm.expectEmit(address(registry));
        emit IRegistry.DefaultPricesSet(250e15, 50e15);
        vm.prank(operator);
        registry.setDefaultPrices(250e15, 50e15);
        (uint256 r, uint256 f) = registry.pricesAt(42);
        assertEq(r, 250e15, "retail");
        assertEq(f, 50e15, "feed-in");
        (uint128 dr, uint128 df) = registry.defaultPrices();
        assertEq(dr, 250e15, "default retail");
        assertEq(df, 50e15, "default feed-in");
    }

    function test_setDefaultPrices_equalPricesAllowed() public {
        vm.prank(operator);
        registry.setDefaultPrices(100e15, 100e15);
        (uint256 r, uint256 f) = registry.pricesAt(0);
        assertEq(r, f, "single level");
    }

    function test_setDefaultPrices_revertsOnInvalid() public {
        vm.startPrank(operator);
        // retail zero
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, 0, 0));
        registry.setDefaultPrices(0, 0);
        // feed-in above retail
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, 1e15, 2e15));
        registry.setDefaultPrices(1e15, 2e15);
        // feed-in not a multiple of 1000
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, 3e15 + 1500, 1500));
        registry.setDefaultPrices(3e15 + 1500, 1500);
        // spread not on the tick
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, 3e15 + 1000, 1e15));
        registry.setDefaultPrices(3e15 + 1000, 1e15);
        // too many levels
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, 256e15, 0));
        registry.setDefaultPrices(256e15, 0);
        // retail above 64 bits
        uint256 huge = (uint256(type(uint64).max) / TICK + 1) * TICK;
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, huge, huge));
        registry.setDefaultPrices(huge, huge);
        vm.stopPrank();
    }

    function test_setDefaultPrices_revertsForNonOperator() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, registry.OPERATOR_ROLE()
            )
        );
        vm.prank(stranger);
        registry.setDefaultPrices(RETAIL, FEED_IN);
    }

    function test_setSlotPrices_timeOfUse() public {
        vm.expectEmit(address(registry));
        emit IRegistry.SlotPricesSet(7, 350e15, 100e15);
        vm.prank(operator);
        registry.setSlotPrices(7, 350e15, 100e15);
        (uint256 r, uint256 f) = registry.pricesAt(7);
        assertEq(r, 350e15, "tou retail");
        assertEq(f, 100e15, "tou feed-in");
        (r, f) = registry.pricesAt(8);
        assertEq(r, RETAIL, "other slot default");
        (r, f) = registry.slotPrices(7);
        assertEq(f, 100e15, "override view");
    }

    function test_setSlotPrices_revertsOnInvalid() public {
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, 1e15, 2e15));
        vm.prank(operator);
        registry.setSlotPrices(7, 1e15, 2e15);
    }

    function test_clearSlotPrices() public {
        vm.startPrank(operator);
        registry.setSlotPrices(7, 350e15, 100e15);
        vm.expectEmit(address(registry));
        emit IRegistry.SlotPricesCleared(7);
        registry.clearSlotPrices(7);
        vm.stopPrank();
        (uint256 r,) = registry.pricesAt(7);
        assertEq(r, RETAIL, "back to default");
    }

    function test_clearSlotPrices_revertsWithoutOverride() public {
        vm.expectRevert(abi.encodeWithSelector(IRegistry.NoSlotPrices.selector, 7));
        vm.prank(operator);
        registry.clearSlotPrices(7);
    }

    function testFuzz_setDefaultPrices_validityRule(uint256 retail, uint256 feedIn) public {
        retail = bound(retail, 0, 1e18);
        feedIn = bound(feedIn, 0, 1e18);
        bool valid = retail != 0 && feedIn <= retail && feedIn % 1000 == 0 && (retail - feedIn) % TICK == 0
            && (retail - feedIn) / TICK <= 255;
        vm.prank(operator);
        if (!valid) vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, retail, feedIn));
        registry.setDefaultPrices(retail, feedIn);
        if (valid) {
            (uint256 r, uint256 f) = registry.pricesAt(0);
            assertEq(r, retail, "retail");
            assertEq(f, feedIn, "feed-in");
        }
    }
}
