// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {Fixture} from "./utils/Fixture.sol";
import {Registry} from "../src/Registry.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";
import {IRegistry} from "../src/interfaces/IRegistry.sol";

/// @notice The microgrid's parameters in the registry: connection limits at the point of common coupling, islanded
///         operation with its price band, and the operator's per-slot microgrid report.
contract MicrogridTest is Fixture {
    address internal stranger = makeAddr("stranger");

    /// @dev The island band used by most tests: 250 ticks wide.
    uint256 internal constant FLOOR = 50e15;
    uint256 internal constant VOLL = 300e15;

    function setUp() public {
        _deploy(IEnergyMarket.MarketMode.PayAsClear);
    }

    function _admins(address a) internal pure returns (address[] memory admins) {
        admins = new address[](1);
        admins[0] = a;
    }

    function _expectNotOperator() internal {
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, registry.OPERATOR_ROLE()
            )
        );
    }

    function _island() internal {
        vm.prank(operator);
        registry.setIslanded(FLOOR, VOLL);
    }

    function _report(uint32 storageWh, uint32 capacityWh) internal pure returns (IRegistry.MicrogridReport memory r) {
        r = IRegistry.MicrogridReport({
            importWh: 1200,
            exportWh: 300,
            peakImportW: 6000,
            peakExportW: 2500,
            curtailedWh: 40,
            shedWh: 7,
            storageWh: storageWh,
            storageCapacityWh: capacityWh,
            generatorWh: 900
        });
    }

    // ------------------------------------------------------------------ connection limits

    function test_connectionLimits_noneAtDeployment() public view {
        assertEq(registry.pccImportLimitW(), registry.NO_CONNECTION_LIMIT(), "import: no limit");
        assertEq(registry.pccExportLimitW(), registry.NO_CONNECTION_LIMIT(), "export: no limit");
        assertEq(registry.NO_CONNECTION_LIMIT(), type(uint32).max);
    }

    function test_setConnectionLimits() public {
        vm.expectEmit(address(registry));
        emit IRegistry.ConnectionLimitsSet(250_000, 150_000);
        vm.prank(operator);
        registry.setConnectionLimits(250_000, 150_000);
        assertEq(registry.pccImportLimitW(), 250_000, "import");
        assertEq(registry.pccExportLimitW(), 150_000, "export");
    }

    function test_setConnectionLimits_zeroAndMaxAccepted() public {
        vm.startPrank(operator);
        registry.setConnectionLimits(type(uint32).max, type(uint32).max);
        assertEq(registry.pccImportLimitW(), type(uint32).max, "max import");
        assertEq(registry.pccExportLimitW(), type(uint32).max, "max export");
        vm.expectEmit(address(registry));
        emit IRegistry.ConnectionLimitsSet(0, 0);
        registry.setConnectionLimits(0, 0);
        vm.stopPrank();
        assertEq(registry.pccImportLimitW(), 0, "no import at all");
        assertEq(registry.pccExportLimitW(), 0, "zero export");
    }

    function test_setConnectionLimits_revertsForNonOperator() public {
        _expectNotOperator();
        vm.prank(stranger);
        registry.setConnectionLimits(1, 1);
    }

    // ------------------------------------------------------------------ islanded

    function test_gridConnectedAtDeployment() public view {
        assertFalse(registry.islanded(), "connected");
        assertEq(registry.priceFloor(), 0, "no floor");
        assertEq(registry.valueOfLostLoad(), 0, "no voll");
    }

    function test_setIslanded_setsBandAndDefaultPrices() public {
        vm.expectEmit(address(registry));
        emit IRegistry.IslandedSet(FLOOR, VOLL);
        vm.expectEmit(address(registry));
        emit IRegistry.DefaultPricesSet(VOLL, FLOOR);
        _island();
        assertTrue(registry.islanded(), "islanded");
        assertEq(registry.priceFloor(), FLOOR, "floor");
        assertEq(registry.valueOfLostLoad(), VOLL, "voll");
        (uint128 dr, uint128 df) = registry.defaultPrices();
        assertEq(dr, VOLL, "default retail = voll");
        assertEq(df, FLOOR, "default feed-in = floor");
        (uint256 r, uint256 f) = registry.pricesAt(42);
        assertEq(r, VOLL, "pricesAt retail");
        assertEq(f, FLOOR, "pricesAt feed-in");
    }

    function test_setIslanded_againSetsANewBand() public {
        _island();
        vm.expectEmit(address(registry));
        emit IRegistry.IslandedSet(100e15, 200e15);
        vm.prank(operator);
        registry.setIslanded(100e15, 200e15);
        assertEq(registry.priceFloor(), 100e15, "new floor");
        assertEq(registry.valueOfLostLoad(), 200e15, "new voll");
        (uint256 r, uint256 f) = registry.pricesAt(0);
        assertEq(r, 200e15, "retail");
        assertEq(f, 100e15, "feed-in");
    }

    function test_setIslanded_revertsForNonOperator() public {
        _expectNotOperator();
        vm.prank(stranger);
        registry.setIslanded(FLOOR, VOLL);
    }

    function test_setIslanded_revertsOnInvalidPair() public {
        vm.startPrank(operator);
        // floor above voll
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, FLOOR, VOLL));
        registry.setIslanded(VOLL, FLOOR);
        // voll zero
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, 0, 0));
        registry.setIslanded(0, 0);
        // not multiples of 1000
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, VOLL + 1500, FLOOR + 1500));
        registry.setIslanded(FLOOR + 1500, VOLL + 1500);
        // width not on the tick
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, VOLL + 1000, FLOOR));
        registry.setIslanded(FLOOR, VOLL + 1000);
        vm.stopPrank();
        assertFalse(registry.islanded(), "still connected");
        (uint128 dr,) = registry.defaultPrices();
        assertEq(dr, RETAIL, "defaults untouched");
    }

    /// @dev The band's width: 254, 255 ticks accepted, 256 refused (the market's 256 price levels).
    function test_setIslanded_width_underAtOver() public {
        vm.startPrank(operator);
        registry.setIslanded(VOLL - 254 * TICK, VOLL);
        assertEq(registry.priceFloor(), VOLL - 254 * TICK, "254 ticks");
        registry.setIslanded(VOLL - 255 * TICK, VOLL);
        assertEq(registry.priceFloor(), VOLL - 255 * TICK, "255 ticks");
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, VOLL, VOLL - 256 * TICK));
        registry.setIslanded(VOLL - 256 * TICK, VOLL);
        vm.stopPrank();
        assertEq(registry.priceFloor(), VOLL - 255 * TICK, "last valid band kept");
    }

    /// @dev A value of lost load of several credits per kWh needs a coarse price tick: 5 credits/kWh over a zero floor
    ///      is 5,000 ticks at 0.001 (refused) and 250 ticks at 0.02 (accepted).
    function test_setIslanded_highVoll_needsCoarseTick() public {
        uint256 voll = 5e18;
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, voll, 0));
        vm.prank(operator);
        registry.setIslanded(0, voll);

        uint256 coarse = 20e15; // 0.02 credit/kWh
        Registry r = new Registry(_admins(operator), START, SLOT, coarse, RETAIL, FEED_IN);
        vm.prank(operator);
        r.setIslanded(0, voll);
        (uint256 retail, uint256 feedIn) = r.pricesAt(0);
        assertEq(retail, voll, "voll as retail");
        assertEq(feedIn, 0, "floor as feed-in");
        assertEq((retail - feedIn) / coarse, 250, "levels");
    }

    function test_setGridConnected() public {
        _island();
        vm.expectEmit(address(registry));
        emit IRegistry.GridConnectedSet();
        vm.prank(operator);
        registry.setGridConnected();
        assertFalse(registry.islanded(), "connected");
        assertEq(registry.priceFloor(), 0, "floor cleared");
        assertEq(registry.valueOfLostLoad(), 0, "voll cleared");
        // Default prices are left as the band set them; the operator sets grid prices next, unconstrained.
        (uint128 dr, uint128 df) = registry.defaultPrices();
        assertEq(dr, VOLL, "default retail left");
        assertEq(df, FLOOR, "default feed-in left");
        vm.prank(operator);
        registry.setDefaultPrices(VOLL + 2 * TICK, FLOOR - 2 * TICK);
        (uint256 r, uint256 f) = registry.pricesAt(0);
        assertEq(r, VOLL + 2 * TICK, "grid retail above the old band");
        assertEq(f, FLOOR - 2 * TICK, "grid feed-in below the old band");
    }

    function test_setGridConnected_revertsWhenNotIslanded() public {
        vm.expectRevert(IRegistry.NotIslanded.selector);
        vm.prank(operator);
        registry.setGridConnected();
        _island();
        vm.startPrank(operator);
        registry.setGridConnected();
        vm.expectRevert(IRegistry.NotIslanded.selector);
        registry.setGridConnected();
        vm.stopPrank();
    }

    function test_setGridConnected_revertsForNonOperator() public {
        _island();
        _expectNotOperator();
        vm.prank(stranger);
        registry.setGridConnected();
    }

    // ------------------------------------------------------------------ the island's price band

    function test_band_setDefaultPrices_edges() public {
        _island();
        vm.startPrank(operator);
        // feed-in at the floor and retail at the VoLL: accepted
        vm.expectEmit(address(registry));
        emit IRegistry.DefaultPricesSet(VOLL, FLOOR);
        registry.setDefaultPrices(VOLL, FLOOR);
        // inside the band: accepted
        registry.setDefaultPrices(VOLL - TICK, FLOOR + TICK);
        (uint256 r, uint256 f) = registry.pricesAt(0);
        assertEq(r, VOLL - TICK, "inside retail");
        assertEq(f, FLOOR + TICK, "inside feed-in");
        // feed-in one tick below the floor: refused
        vm.expectRevert(abi.encodeWithSelector(IRegistry.PricesOutsideIslandBand.selector, VOLL, FLOOR - TICK));
        registry.setDefaultPrices(VOLL, FLOOR - TICK);
        // retail one tick above the VoLL: refused
        vm.expectRevert(abi.encodeWithSelector(IRegistry.PricesOutsideIslandBand.selector, VOLL + TICK, FLOOR));
        registry.setDefaultPrices(VOLL + TICK, FLOOR);
        // invalid prices are refused as such first
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, FLOOR, VOLL));
        registry.setDefaultPrices(FLOOR, VOLL);
        vm.stopPrank();
        (r, f) = registry.pricesAt(0);
        assertEq(r, VOLL - TICK, "refusals changed nothing");
    }

    function test_band_setSlotPrices_edges() public {
        _island();
        vm.startPrank(operator);
        vm.expectEmit(address(registry));
        emit IRegistry.SlotPricesSet(7, VOLL, FLOOR);
        registry.setSlotPrices(7, VOLL, FLOOR);
        (uint256 r, uint256 f) = registry.pricesAt(7);
        assertEq(r, VOLL, "retail at voll");
        assertEq(f, FLOOR, "feed-in at floor");
        vm.expectRevert(abi.encodeWithSelector(IRegistry.PricesOutsideIslandBand.selector, VOLL, FLOOR - TICK));
        registry.setSlotPrices(8, VOLL, FLOOR - TICK);
        vm.expectRevert(abi.encodeWithSelector(IRegistry.PricesOutsideIslandBand.selector, VOLL + TICK, FLOOR));
        registry.setSlotPrices(8, VOLL + TICK, FLOOR);
        vm.stopPrank();
        (r,) = registry.slotPrices(8);
        assertEq(r, 0, "no override for the refused slot");
    }

    /// @dev Grid-connected, prices outside any band are accepted (the band applies only while islanded).
    function test_band_notAppliedWhenGridConnected() public {
        vm.startPrank(operator);
        registry.setDefaultPrices(VOLL + TICK, FLOOR - TICK);
        registry.setSlotPrices(3, VOLL + TICK, FLOOR - TICK);
        vm.stopPrank();
        (uint256 r, uint256 f) = registry.pricesAt(3);
        assertEq(r, VOLL + TICK, "retail");
        assertEq(f, FLOOR - TICK, "feed-in");
    }

    /// @dev A time-of-use override set before islanding is not re-checked: `pricesAt` still returns it.
    function test_band_overrideSetBeforeIslanding_notRechecked() public {
        vm.prank(operator);
        registry.setSlotPrices(9, VOLL + 2 * TICK, FLOOR - 2 * TICK);
        _island();
        (uint256 r, uint256 f) = registry.pricesAt(9);
        assertEq(r, VOLL + 2 * TICK, "old override retail");
        assertEq(f, FLOOR - 2 * TICK, "old override feed-in");
        (r, f) = registry.pricesAt(10);
        assertEq(r, VOLL, "other slots: the band");
        vm.prank(operator);
        registry.clearSlotPrices(9);
        (r, f) = registry.pricesAt(9);
        assertEq(r, VOLL, "cleared: the band");
        assertEq(f, FLOOR, "cleared: the band");
    }

    /// @dev The market snapshots the island's prices when the keeper opens a slot, and takes orders up to the VoLL.
    function test_band_marketOpensSlotWithIslandPrices() public {
        _island();
        uint64 slot = 2;
        vm.prank(operator);
        market.openSlot(slot);
        IEnergyMarket.SlotInfo memory info = market.slotInfo(slot);
        assertEq(info.retailPerKWh, VOLL, "market retail = voll");
        assertEq(info.feedInPerKWh, FLOOR, "market feed-in = floor");
    }

    function testFuzz_band_setDefaultPrices(uint256 retailTicks, uint256 feedInTicks) public {
        _island();
        // Prices on the tick from 0 to 0.4 credit/kWh: around and inside the band [0.05, 0.30].
        uint256 retail = bound(retailTicks, 1, 400) * TICK;
        uint256 feedIn = bound(feedInTicks, 0, 400) * TICK;
        bool valid = feedIn <= retail && (retail - feedIn) / TICK <= 255;
        bool inBand = feedIn >= FLOOR && retail <= VOLL;
        vm.prank(operator);
        if (!valid) vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidPrices.selector, retail, feedIn));
        else if (!inBand) {
            vm.expectRevert(abi.encodeWithSelector(IRegistry.PricesOutsideIslandBand.selector, retail, feedIn));
        }
        registry.setDefaultPrices(retail, feedIn);
        (uint256 r, uint256 f) = registry.pricesAt(0);
        if (valid && inBand) {
            assertEq(r, retail, "accepted retail");
            assertEq(f, feedIn, "accepted feed-in");
        } else {
            assertEq(r, VOLL, "refused: retail unchanged");
            assertEq(f, FLOOR, "refused: feed-in unchanged");
        }
    }

    // ------------------------------------------------------------------ microgrid report

    function test_reportMicrogrid_event() public {
        IRegistry.MicrogridReport memory rep = _report(5000, 10_000);
        vm.warp(_start(4));
        vm.expectEmit(address(registry));
        emit IRegistry.MicrogridReported(3, rep);
        vm.prank(operator);
        registry.reportMicrogrid(3, rep);
    }

    function test_reportMicrogrid_revertsForNonOperator() public {
        vm.warp(_start(4));
        _expectNotOperator();
        vm.prank(stranger);
        registry.reportMicrogrid(3, _report(0, 0));
    }

    /// @dev Slot 3 ends at `_start(4)`: one second before it is refused, at it and after it accepted; the current
    ///      slot and later ones are refused.
    function test_reportMicrogrid_deliveredSlot_underAtOver() public {
        IRegistry.MicrogridReport memory rep = _report(0, 0);
        vm.startPrank(operator);
        vm.warp(_start(4) - 1);
        vm.expectRevert(abi.encodeWithSelector(IRegistry.SlotNotDelivered.selector, 3));
        registry.reportMicrogrid(3, rep);
        vm.warp(_start(4));
        registry.reportMicrogrid(3, rep);
        // the current slot (4) has not ended
        vm.expectRevert(abi.encodeWithSelector(IRegistry.SlotNotDelivered.selector, 4));
        registry.reportMicrogrid(4, rep);
        vm.warp(_start(4) + 1);
        registry.reportMicrogrid(3, rep);
        vm.expectRevert(abi.encodeWithSelector(IRegistry.SlotNotDelivered.selector, 4));
        registry.reportMicrogrid(4, rep);
        vm.stopPrank();
    }

    function test_reportMicrogrid_beforeScheduleStarts_refused() public {
        // The fixture leaves the clock an hour before slot 0.
        vm.expectRevert(abi.encodeWithSelector(IRegistry.SlotNotDelivered.selector, 0));
        vm.prank(operator);
        registry.reportMicrogrid(0, _report(0, 0));
    }

    function test_reportMicrogrid_farFutureSlot_refused() public {
        vm.warp(_start(4));
        uint64 slot = type(uint64).max;
        vm.expectRevert(abi.encodeWithSelector(IRegistry.SlotNotDelivered.selector, slot));
        vm.prank(operator);
        registry.reportMicrogrid(slot, _report(0, 0));
    }

    function test_reportMicrogrid_storage_atAndOverCapacity() public {
        vm.warp(_start(4));
        vm.startPrank(operator);
        registry.reportMicrogrid(3, _report(10_000, 10_000));
        registry.reportMicrogrid(3, _report(0, 0));
        vm.expectRevert(IRegistry.InvalidMicrogridReport.selector);
        registry.reportMicrogrid(3, _report(10_001, 10_000));
        vm.expectRevert(IRegistry.InvalidMicrogridReport.selector);
        registry.reportMicrogrid(3, _report(1, 0));
        vm.stopPrank();
    }

    /// @dev A second report for the same slot is another event; readers take the last.
    function test_reportMicrogrid_laterReportForSameSlot() public {
        vm.warp(_start(10));
        IRegistry.MicrogridReport memory first = _report(4000, 10_000);
        IRegistry.MicrogridReport memory second = _report(4500, 10_000);
        second.shedWh = 0;
        vm.startPrank(operator);
        vm.expectEmit(address(registry));
        emit IRegistry.MicrogridReported(3, first);
        registry.reportMicrogrid(3, first);
        vm.expectEmit(address(registry));
        emit IRegistry.MicrogridReported(3, second);
        registry.reportMicrogrid(3, second);
        vm.stopPrank();
    }
}
