// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Fixture} from "./utils/Fixture.sol";
import {Vm} from "./utils/Vm.sol";
import {EnergyMarket} from "../src/EnergyMarket.sol";
import {MeterReadings} from "../src/MeterReadings.sol";
import {Registry} from "../src/Registry.sol";
import {IEnergyMarket} from "../src/interfaces/IEnergyMarket.sol";
import {IMeterReadings} from "../src/interfaces/IMeterReadings.sol";
import {IRegistry} from "../src/interfaces/IRegistry.sol";

/// Unit tests of the EnergyMarket: escrow, auction and settlement.
contract EnergyMarketTest is Fixture {
    uint64 internal constant S = 2; // the slot most tests trade in (opened by the keeper in setUp)
    uint64 internal constant U = 20; // a slot nobody opened
    uint256 internal constant FUNDS = 100e18;

    address internal alice; // prosumer
    address internal bob; // consumer
    address internal carol; // prosumer
    address internal dave; // consumer

    function setUp() public virtual {
        _deploy(IEnergyMarket.MarketMode.PayAsClear);
        alice = _participant("alice", IRegistry.Role.Prosumer, FUNDS);
        bob = _participant("bob", IRegistry.Role.Consumer, FUNDS);
        carol = _participant("carol", IRegistry.Role.Prosumer, FUNDS);
        dave = _participant("dave", IRegistry.Role.Consumer, FUNDS);
        _fundGrid(1000e18);
        _keeper(S);
        _keeper(S + 1);
    }

    /// Slots opened by the operator's keeper in these tests ({_keeper}).
    mapping(address => mapping(uint64 => bool)) internal _opened; // market => slot => opened

    /// The keeper opens `slot` unless it is open already (orders need an open slot).
    function _keeper(uint64 slot) internal {
        if (_opened[address(market)][slot]) return;
        _opened[address(market)][slot] = true;
        vm.prank(operator);
        market.openSlot(slot);
    }

    function _bid(address p, uint64 slot, uint32 wh, uint256 price) internal {
        _keeper(slot);
        vm.prank(p);
        market.placeBid(slot, wh, price);
    }

    function _ask(address p, uint64 slot, uint32 wh, uint256 price) internal {
        _keeper(slot);
        vm.prank(p);
        market.placeAsk(slot, wh, price);
    }

    function _decimal(uint256 x) internal pure returns (string memory) {
        if (x < 10) return string(abi.encodePacked(bytes1(uint8(48 + x))));
        return string.concat(_decimal(x / 10), _decimal(x % 10));
    }

    function _toGate(uint64 slot) internal {
        vm.warp(market.gateClosureTime(slot));
    }

    function _toSettlement(uint64 slot) internal {
        vm.warp(market.settlementOpensAt(slot));
    }

    function _one(address p) internal pure returns (address[] memory a) {
        a = new address[](1);
        a[0] = p;
    }

    /// Meter of `p` reports `imp`/`exp` Wh over slot `slot` (baseline at its start, final just before the end).
    function _meter(address p, uint64 slot, uint64 imp, uint64 exp) internal {
        uint256 t = block.timestamp;
        vm.warp(_start(slot) + SLOT);
        (uint64 li, uint64 le,,) = readings.latestReading(meterAddrOf[p]);
        _read(p, li, le, uint64(_start(slot)));
        _read(p, li + imp, le + exp, uint64(_start(slot) + SLOT - 1));
        vm.warp(t);
    }

    function _totalMoney() internal view returns (uint256 sum) {
        address[5] memory all = [alice, bob, carol, dave, grid];
        for (uint256 i = 0; i < all.length; ++i) {
            sum += _free(all[i]) + market.lockedOf(S, all[i]);
        }
    }

    // ================================================================== constructor and views

    /// EIP-170: the node deploys the market at genesis through revm, which refuses runtime code over 24,576 bytes
    /// (forge's test EVM does not), so the limit is checked here.
    function test_energyMarket_fitsTheCodeSizeLimit() public view {
        assertLe(address(market).code.length, 24_576, "EIP-170");
    }

    function test_constructor_configuration() public view {
        assertEq(address(market.registry()), address(registry));
        assertEq(address(market.token()), address(token));
        assertEq(address(market.readings()), address(readings));
        assertEq(market.gridAccount(), grid);
        assertEq(market.startTime(), START, "start");
        assertEq(market.slotLength(), SLOT, "slot");
        assertEq(market.gateClosure(), GATE, "gate");
        assertEq(market.gracePeriod(), GRACE, "grace");
        assertTrue(market.mode() == IEnergyMarket.MarketMode.PayAsClear, "mode");
        assertEq(market.slotStart(S), START + 2 * SLOT, "slotStart");
        assertEq(market.gateClosureTime(S), START + 2 * SLOT - GATE, "gate time");
        assertEq(market.settlementOpensAt(S), START + 3 * SLOT + GRACE, "settlement time");
    }

    function test_gateClosureTime_beforeEpoch() public {
        address[] memory admins = new address[](1);
        admins[0] = operator;
        Registry r = new Registry(admins, 0, SLOT, TICK, RETAIL, FEED_IN);
        MeterReadings mr = new MeterReadings(r, GRACE);
        EnergyMarket m = new EnergyMarket(r, token, mr, grid, GATE, GRACE, IEnergyMarket.MarketMode.PayAsClear);
        assertEq(m.gateClosureTime(0), 0, "clamped at zero");
        assertEq(m.gateClosureTime(1), SLOT - GATE, "normal");
    }

    function test_constructor_revertsOnZeroAddress() public {
        vm.expectRevert(IEnergyMarket.ZeroAddress.selector);
        new EnergyMarket(registry, token, readings, address(0), GATE, GRACE, IEnergyMarket.MarketMode.PayAsClear);
    }

    function test_constructor_revertsOnScheduleMismatch() public {
        address[] memory admins = new address[](1);
        admins[0] = operator;
        Registry other = new Registry(admins, START + 1, SLOT, TICK, RETAIL, FEED_IN);
        MeterReadings otherReadings = new MeterReadings(other, GRACE);
        vm.expectRevert(IEnergyMarket.InvalidSchedule.selector);
        new EnergyMarket(registry, token, otherReadings, grid, GATE, GRACE, IEnergyMarket.MarketMode.PayAsClear);
    }

    // ================================================================== role cache

    function test_onRoleChanged_revertsForNonRegistry() public {
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NotRegistry.selector, address(this)));
        market.onRoleChanged(alice, IRegistry.Role.Prosumer);
    }

    function test_syncRole_andUncachedFallback() public {
        // A market that is not the registry's listener asks the registry on every order.
        EnergyMarket m2 =
            new EnergyMarket(registry, token, readings, grid, GATE, GRACE, IEnergyMarket.MarketMode.PayAsClear);
        vm.startPrank(bob);
        token.approve(address(m2), 1e18);
        vm.stopPrank();
        vm.prank(operator);
        token.mint(bob, 1e18);
        vm.prank(operator);
        m2.openSlot(S);
        vm.startPrank(bob);
        m2.deposit(1e18);
        m2.placeBid(S, 10, 200e15);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NotProsumer.selector, bob));
        m2.placeAsk(S, 10, 200e15);
        vm.stopPrank();
        // syncing needs the registry to push later changes to that market
        vm.expectRevert(IEnergyMarket.NotRoleListener.selector);
        m2.syncRole(bob);
    }

    function test_syncRole_cachesRole() public {
        vm.expectEmit(address(market));
        emit IEnergyMarket.RoleSynced(bob, IRegistry.Role.Consumer);
        market.syncRole(bob);
        _bid(bob, S, 10, 200e15);
    }

    function test_removedParticipantCannotTradeAfterPush() public {
        _bid(alice, S, 10, 200e15); // role cached
        vm.prank(operator);
        registry.removeParticipant(alice);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NotParticipant.selector, alice));
        _ask(alice, S, 10, 200e15);
    }

    // ================================================================== meter cache

    function test_onMeterChanged_revertsForNonRegistry() public {
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NotRegistry.selector, address(this)));
        market.onMeterChanged(alice, _packed(address(1), 0, type(uint48).max), 0);
    }

    function test_meterBindingsArePushed() public {
        address eve = makeAddr("eve");
        address meter = makeAddr("eve-meter");
        vm.startPrank(operator);
        registry.registerParticipant(eve, IRegistry.Role.Consumer);
        vm.expectEmit(address(market));
        emit IEnergyMarket.MeterSynced(eve, _packed(meter, 0, type(uint48).max), 0);
        registry.bindMeter(meter, eve);
        // Before slot 0 an unbinding drops the binding: nothing is left.
        vm.expectEmit(address(market));
        emit IEnergyMarket.MeterSynced(eve, 0, 0);
        registry.unbindMeter(meter);
        registry.bindMeter(meter, eve);
        vm.expectEmit(address(market));
        emit IEnergyMarket.MeterSynced(eve, 0, 0);
        vm.expectEmit(address(market));
        emit IEnergyMarket.RoleSynced(eve, IRegistry.Role.None);
        registry.removeParticipant(eve);
        vm.stopPrank();
    }

    function test_settle_usesReboundMeter() public {
        _tradeAliceBob();
        // bob's meter is replaced before delivery; only the new meter's readings count.
        (address newMeter, uint256 newKey) = makeKey("bob-meter-2");
        vm.startPrank(operator);
        registry.unbindMeter(meterAddrOf[bob]);
        registry.bindMeter(newMeter, bob);
        vm.stopPrank();
        meterAddrOf[bob] = newMeter;
        meterKeyOf[bob] = newKey;
        _meter(bob, S, 1000, 0);
        _toSettlement(S);
        market.settle(S, _one(bob));
        assertEq(_free(bob), FUNDS - _cost(1000, 150e15), "bought exactly what it used");
    }

    // ================================================================== storage prepared ahead of orders

    /// @dev Runs `call` on the market and reverts it again; fails if it wrote a storage word that was zero,
    ///      i.e. created storage. Returns how many words it wrote.
    function _writesOnlyExistingWords(address caller, bytes memory call) internal returns (uint256 writes) {
        uint256 snap = vm.snapshotState();
        vm.record();
        vm.prank(caller);
        (bool ok,) = address(market).call(call);
        assertTrue(ok, "call succeeds");
        (, bytes32[] memory written) = vm.accesses(address(market));
        vm.revertToState(snap);
        for (uint256 i = 0; i < written.length; ++i) {
            assertTrue(vm.load(address(market), written[i]) != bytes32(0), "no storage word created");
        }
        return written.length;
    }

    function _countCreatedWords(address caller, bytes memory call) internal returns (uint256 created) {
        uint256 snap = vm.snapshotState();
        vm.record();
        vm.prank(caller);
        (bool ok,) = address(market).call(call);
        assertTrue(ok, "call succeeds");
        (, bytes32[] memory written) = vm.accesses(address(market));
        vm.revertToState(snap);
        for (uint256 i = 0; i < written.length; ++i) {
            if (vm.load(address(market), written[i]) == bytes32(0)) created++;
        }
    }

    function _openSlot(uint64 slot) internal {
        _opened[address(market)][slot] = true;
        vm.prank(operator);
        market.openSlot(slot);
    }

    function test_registerParticipant_initialisesPositionRing() public {
        address eve = makeAddr("eve");
        vm.expectEmit(address(market));
        emit IEnergyMarket.RoleSynced(eve, IRegistry.Role.Prosumer);
        vm.expectEmit(address(market));
        emit IEnergyMarket.PositionsInitialised(eve, market.POSITION_RING() + 2);
        vm.prank(operator);
        registry.registerParticipant(eve, IRegistry.Role.Prosumer);
    }

    function test_registerParticipant_againKeepsRing() public {
        _bid(bob, S, 10, 200e15);
        vm.startPrank(operator);
        registry.removeParticipant(bob);
        vm.recordLogs();
        registry.registerParticipant(bob, IRegistry.Role.Consumer);
        vm.stopPrank();
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i = 0; i < logs.length; ++i) {
            assertTrue(logs[i].topics[0] != IEnergyMarket.PositionsInitialised.selector, "not initialised twice");
        }
        assertEq(market.positionOf(S, bob).bidWh, 10, "open position kept");
        _bid(bob, S + 1, 10, 200e15);
    }

    function test_openSlot() public {
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotOpened(U, RETAIL, FEED_IN, PREMIUM, PREMIUM, 1 days);
        _openSlot(U);
        IEnergyMarket.SlotInfo memory info = market.slotInfo(U);
        assertTrue(info.status == IEnergyMarket.SlotStatus.Open, "open");
        assertEq(info.activeLevels, 0, "no orders");
        (uint64 b, uint64 a) = market.levelVolumes(U, 0);
        assertEq(b + a, 0, "empty level");
        // The prices are fixed at opening, as by a first order.
        vm.prank(operator);
        registry.setSlotPrices(U, 350e15, 100e15);
        assertEq(market.slotInfo(U).retailPerKWh, RETAIL, "snapshot");
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.PriceOutOfRange.selector, 310e15, FEED_IN, RETAIL));
        _bid(bob, U, 10, 310e15);
    }

    function test_openSlot_tradesAndSettles() public {
        _tradeAliceBob();
        IEnergyMarket.SlotInfo memory info = market.slotInfo(S);
        assertEq(info.clearedWh, 1000, "cleared");
        assertEq(info.clearingPricePerKWh, 150e15, "k = 1/2 of the clearing interval [0.10, 0.20]");
        assertEq(info.activeLevels, (uint256(1) << 20) | (uint256(1) << 120), "active levels");
        _meter(alice, S, 0, 1000);
        _meter(bob, S, 1000, 0);
        _toSettlement(S);
        address[] memory both = new address[](2);
        both[0] = alice;
        both[1] = bob;
        market.settle(S, both);
        assertEq(_free(alice), FUNDS + _cost(1000, 150e15), "alice");
        assertEq(_free(bob), FUNDS - _cost(1000, 150e15), "bob");
    }

    function test_openSlot_emptySlotClearsToNothing() public {
        _openSlot(U);
        _toGate(U);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotCleared(U, 0, 0, 0, 0);
        market.clear(U);
    }

    function test_openSlot_revertsForNonOperator() public {
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NotOperator.selector, bob));
        vm.prank(bob);
        market.openSlot(U);
    }

    function test_openSlot_revertsAfterGateClosure() public {
        _toGate(U);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.GateClosed.selector, U));
        vm.prank(operator);
        market.openSlot(U);
    }

    function test_openSlot_revertsWhenOpen() public {
        _openSlot(U);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.SlotAlreadyOpen.selector, U));
        vm.prank(operator);
        market.openSlot(U);
    }

    /// In an opened slot, no order of a registered participant creates a storage word: not the slot's first
    /// order, not an account's first order, not the first order at a price level, not an ask, not a cancel.
    function test_ordersCreateNoStorageInOpenedSlot() public {
        bytes memory firstBid = abi.encodeCall(market.placeBid, (S, 1500, 200e15));
        assertEq(_writesOnlyExistingWords(bob, firstBid), 3, "account, position, level");
        _bid(bob, S, 1500, 200e15);
        _writesOnlyExistingWords(alice, abi.encodeCall(market.placeAsk, (S, 700, 100e15)));
        _ask(alice, S, 700, 100e15);
        _writesOnlyExistingWords(alice, abi.encodeCall(market.placeBid, (S, 10, RETAIL)));
        _writesOnlyExistingWords(dave, abi.encodeCall(market.placeBid, (S, 10, 200e15)));
        _writesOnlyExistingWords(bob, abi.encodeCall(market.cancelOrder, (S, IEnergyMarket.Side.Bid)));
        // a participant registered after the slot was opened
        address eve = _participant("eve", IRegistry.Role.Prosumer, FUNDS);
        _writesOnlyExistingWords(eve, abi.encodeCall(market.placeAsk, (S, 10, FEED_IN)));
    }

    /// Reusing a settled ring entry, 256 slots later, rewrites it too.
    function test_ringReuseCreatesNoStorage() public {
        _tradeAliceBob();
        _meter(bob, S, 1000, 0);
        _toSettlement(S);
        market.settle(S, _one(bob));
        uint64 next = S + uint64(market.POSITION_RING());
        _openSlot(next);
        _writesOnlyExistingWords(bob, abi.encodeCall(market.placeBid, (next, 10, 200e15)));
    }

    /// Issue 14, part 3: an order never opens a slot, so it cannot fix the slot's prices.
    function test_placeBid_revertsWhenSlotNotOpen() public {
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.SlotNotOpen.selector, U));
        vm.prank(bob);
        market.placeBid(U, 10, 200e15);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.SlotNotOpen.selector, U));
        vm.prank(alice);
        market.placeAsk(U, 10, 100e15);
        assertTrue(market.slotInfo(U).status == IEnergyMarket.SlotStatus.Empty, "still empty");
    }

    /// Issue 14, part 3: the freeze. An account with no credits tries to open every future slot within the
    /// horizon; none opens, the operator's time-of-use prices for a slot apply when the keeper opens it, and the
    /// keeper's `openSlot` succeeds.
    function test_freeze_accountWithoutCreditsCannotFreezeFutureSlots() public {
        address eve = _participant("eve", IRegistry.Role.Prosumer, 0);
        uint64 first = S + 2;
        uint64 last = uint64((block.timestamp + market.orderHorizon() - START) / SLOT); // within the horizon
        assertTrue(last - first > 80, "many slots");
        for (uint64 k = first; k <= last; ++k) {
            vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.SlotNotOpen.selector, k));
            vm.prank(eve);
            market.placeBid(k, 1, FEED_IN);
            vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.SlotNotOpen.selector, k));
            vm.prank(eve);
            market.placeAsk(k, 1, RETAIL);
            assertTrue(market.slotInfo(k).status == IEnergyMarket.SlotStatus.Empty, "not frozen");
        }
        // The operator's schedule for a slot that is not open yet applies when the keeper opens it.
        vm.prank(operator);
        registry.setSlotPrices(U, 350e15, 100e15);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotOpened(U, 350e15, 100e15, PREMIUM, PREMIUM, 1 days);
        _openSlot(U);
        IEnergyMarket.SlotInfo memory info = market.slotInfo(U);
        assertEq(info.retailPerKWh, 350e15, "retail from the schedule");
        assertEq(info.feedInPerKWh, 100e15, "feed-in from the schedule");
        // and orders in it use those prices
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.PriceOutOfRange.selector, FEED_IN, 100e15, 350e15));
        _bid(bob, U, 10, FEED_IN);
        _bid(bob, U, 10, 340e15);
        assertEq(market.positionOf(U, bob).bidPricePerKWh, 340e15, "order at the scheduled range");
    }

    function test_orderHorizon_defaultIsOneDay() public view {
        assertEq(registry.orderHorizon(), 1 days, "registry");
        assertEq(market.orderHorizon(), 1 days, "market copy");
    }

    /// An order for a slot starting just under, at and just over the horizon from now.
    function test_orderHorizon_underAtOver() public {
        uint32 horizon = 2 hours;
        vm.prank(operator);
        registry.setOrderHorizon(horizon);
        _openSlot(U);
        uint256 start = _start(U);
        vm.warp(start - horizon - 1); // over by one second
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.BeyondHorizon.selector, U, start, uint256(horizon)));
        _bid(bob, U, 10, 200e15);
        vm.warp(start - horizon); // at the horizon
        _bid(bob, U, 10, 200e15);
        vm.warp(start - horizon + 1); // just under
        _ask(alice, U, 10, 100e15);
        assertEq(market.positionOf(U, bob).bidWh, 10, "bid at the horizon");
        assertEq(market.positionOf(U, alice).askWh, 10, "ask under the horizon");
    }

    function test_orderHorizon_beyondDefaultReverts() public {
        uint64 far = uint64((block.timestamp + 1 days - START) / SLOT) + 1; // starts later than a day from now
        _openSlot(far); // the operator may open ahead; orders still wait for the horizon
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.BeyondHorizon.selector, far, _start(far), 1 days));
        _bid(bob, far, 10, 200e15);
    }

    function test_setOrderHorizon_pushesToMarket() public {
        vm.expectEmit(address(registry));
        emit IRegistry.OrderHorizonSet(3 hours);
        vm.expectEmit(address(market));
        emit IEnergyMarket.OrderHorizonSynced(3 hours);
        vm.prank(operator);
        registry.setOrderHorizon(3 hours);
        assertEq(market.orderHorizon(), 3 hours, "market copy");
    }

    function test_setOrderHorizon_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(IRegistry.InvalidOrderHorizon.selector, 0));
        vm.prank(operator);
        registry.setOrderHorizon(0);
        vm.expectRevert();
        vm.prank(bob);
        registry.setOrderHorizon(1 hours);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NotRegistry.selector, bob));
        vm.prank(bob);
        market.onOrderHorizonChanged(1);
    }

    /// A horizon change made before the market became the registry's listener is picked up by
    /// `syncOrderHorizon`.
    function test_syncOrderHorizon() public {
        address[] memory admins = new address[](1);
        admins[0] = operator;
        Registry r = new Registry(admins, START, SLOT, TICK, RETAIL, FEED_IN);
        MeterReadings mr = new MeterReadings(r, GRACE);
        EnergyMarket m = new EnergyMarket(r, token, mr, grid, GATE, GRACE, IEnergyMarket.MarketMode.PayAsClear);
        vm.prank(operator);
        r.setOrderHorizon(5 hours);
        assertEq(m.orderHorizon(), 1 days, "stale");
        vm.expectEmit(address(m));
        emit IEnergyMarket.OrderHorizonSynced(5 hours);
        m.syncOrderHorizon();
        assertEq(m.orderHorizon(), 5 hours, "synced");
    }

    /// An account registered before the market became the registry's listener: orders work through registry
    /// calls (and create their position words); `syncRole` caches its role and meter and creates the rest of its
    /// ring without touching the words in use.
    function test_syncRole_initialisesRing_settlementFindsMeterInRegistry() public {
        address[] memory admins = new address[](1);
        admins[0] = operator;
        Registry r = new Registry(admins, START, SLOT, TICK, RETAIL, FEED_IN);
        MeterReadings mr = new MeterReadings(r, GRACE);
        EnergyMarket m = new EnergyMarket(r, token, mr, grid, GATE, GRACE, IEnergyMarket.MarketMode.PayAsClear);
        (address meter,) = makeKey("eve-meter");
        address eve = makeAddr("eve");
        vm.startPrank(operator);
        r.registerParticipant(eve, IRegistry.Role.Consumer);
        r.bindMeter(meter, eve);
        token.mint(eve, 10e18);
        token.mint(operator, 10e18);
        token.approve(address(m), 10e18);
        m.depositFor(grid, 10e18);
        m.openSlot(S);
        vm.stopPrank();
        vm.startPrank(eve);
        token.approve(address(m), 10e18);
        m.deposit(10e18);
        m.placeBid(S, 100, 200e15);
        vm.stopPrank();

        vm.prank(operator);
        r.setRoleListener(address(m));
        vm.expectEmit(address(m));
        emit IEnergyMarket.RoleSynced(eve, IRegistry.Role.Consumer);
        vm.expectEmit(address(m));
        emit IEnergyMarket.PositionsInitialised(eve, m.POSITION_RING() + 2);
        m.syncRole(eve); // no meter copy: settlement reads the registry's history until a binding change is pushed
        assertEq(m.positionOf(S, eve).bidWh, 100, "position in use kept");

        // Settlement finds the meter (cached now): 100 Wh bought, nothing matched, 100 Wh used from the grid.
        vm.warp(_start(S) + SLOT);
        vm.startPrank(meter);
        mr.submitReading(0, 0, uint64(_start(S)));
        mr.submitReading(100, 0, uint64(_start(S) + SLOT - 1));
        vm.stopPrank();
        vm.warp(m.gateClosureTime(S) > block.timestamp ? m.gateClosureTime(S) : block.timestamp);
        m.clear(S);
        vm.warp(m.settlementOpensAt(S));
        m.settle(S, _one(eve));
        (uint256 free,) = m.accountOf(eve);
        assertEq(free, 10e18 - _cost(100, RETAIL), "paid the grid for what it used");
    }

    /// Settlement of a market that is not the registry's listener asks the registry for the meter.
    function test_settle_uncachedMeterFromRegistry() public {
        EnergyMarket m2 =
            new EnergyMarket(registry, token, readings, grid, GATE, GRACE, IEnergyMarket.MarketMode.PayAsClear);
        vm.startPrank(operator);
        token.mint(bob, 1e18);
        token.mint(operator, 1e18);
        token.approve(address(m2), 1e18);
        m2.depositFor(grid, 1e18);
        m2.openSlot(S);
        vm.stopPrank();
        vm.startPrank(bob);
        token.approve(address(m2), 1e18);
        m2.deposit(1e18);
        m2.placeBid(S, 100, 200e15);
        vm.stopPrank();
        _meter(bob, S, 40, 0);
        vm.warp(m2.gateClosureTime(S));
        m2.clear(S);
        vm.warp(m2.settlementOpensAt(S));
        m2.settle(S, _one(bob));
        (uint256 free,) = m2.accountOf(bob);
        assertEq(free, 1e18 - _cost(40, RETAIL), "used 40 Wh from the grid");
    }

    // ================================================================== escrow

    function test_deposit() public {
        vm.prank(operator);
        token.mint(alice, 5e18);
        vm.startPrank(alice);
        token.approve(address(market), 5e18);
        vm.expectEmit(address(market));
        emit IEnergyMarket.Deposited(alice, alice, 5e18);
        market.deposit(5e18);
        vm.stopPrank();
        assertEq(_free(alice), FUNDS + 5e18, "free");
        assertEq(token.balanceOf(address(market)), 4 * FUNDS + 1000e18 + 5e18, "held");
    }

    function test_deposit_revertsOnZero() public {
        vm.expectRevert(IEnergyMarket.ZeroAmount.selector);
        vm.prank(alice);
        market.deposit(0);
    }

    function test_deposit_revertsOnBalanceOverflow() public {
        uint256 big = uint256(type(uint128).max);
        vm.prank(operator);
        token.mint(alice, big);
        vm.startPrank(alice);
        token.approve(address(market), big);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.BalanceOverflow.selector, alice));
        market.deposit(big);
        vm.stopPrank();
    }

    function test_depositFor() public {
        vm.startPrank(operator);
        token.mint(operator, 3e18);
        token.approve(address(market), 3e18);
        vm.expectEmit(address(market));
        emit IEnergyMarket.Deposited(bob, operator, 3e18);
        market.depositFor(bob, 3e18);
        vm.stopPrank();
        assertEq(_free(bob), FUNDS + 3e18, "credited to bob");
    }

    function test_depositFor_revertsOnZeroAddress() public {
        vm.expectRevert(IEnergyMarket.ZeroAddress.selector);
        vm.prank(operator);
        market.depositFor(address(0), 1);
    }

    function test_depositWithPermit() public {
        (address eve, uint256 eveKey) = makeKey("eve");
        vm.prank(operator);
        token.mint(eve, 2e18);
        uint256 deadline = block.timestamp + 600;
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01",
                token.DOMAIN_SEPARATOR(),
                keccak256(
                    abi.encode(
                        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                        eve,
                        address(market),
                        2e18,
                        uint256(0),
                        deadline
                    )
                )
            )
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(eveKey, digest);
        // Someone front-runs the permit; the deposit still goes through on the resulting allowance.
        token.permit(eve, address(market), 2e18, deadline, v, r, s);
        vm.prank(eve);
        market.depositWithPermit(2e18, deadline, v, r, s);
        assertEq(_free(eve), 2e18, "deposited");
        assertEq(token.balanceOf(eve), 0, "pulled");
    }

    function test_depositWithPermit_freshSignature() public {
        (address eve, uint256 eveKey) = makeKey("eve");
        vm.prank(operator);
        token.mint(eve, 1e18);
        uint256 deadline = block.timestamp + 600;
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01",
                token.DOMAIN_SEPARATOR(),
                keccak256(
                    abi.encode(
                        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                        eve,
                        address(market),
                        1e18,
                        uint256(0),
                        deadline
                    )
                )
            )
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(eveKey, digest);
        vm.prank(eve);
        market.depositWithPermit(1e18, deadline, v, r, s);
        assertEq(_free(eve), 1e18, "deposited");
    }

    function test_withdraw() public {
        vm.expectEmit(address(market));
        emit IEnergyMarket.Withdrawn(alice, 40e18);
        vm.prank(alice);
        market.withdraw(40e18);
        assertEq(_free(alice), FUNDS - 40e18, "free");
        assertEq(token.balanceOf(alice), 40e18, "paid out");
    }

    function test_withdraw_revertsOnZero() public {
        vm.expectRevert(IEnergyMarket.ZeroAmount.selector);
        vm.prank(alice);
        market.withdraw(0);
    }

    function test_withdraw_revertsWhenInsufficient() public {
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.InsufficientBalance.selector, alice, FUNDS + 1, FUNDS));
        vm.prank(alice);
        market.withdraw(FUNDS + 1);
    }

    // ================================================================== placing orders

    function test_placeBid_escrowsAndAggregates() public {
        uint256 price = 200e15;
        vm.expectEmit(address(market));
        // The bid's worst case: it pays its full limit price and, using none of it, the long imbalance penalty.
        uint256 worst = _cost(1500, price) + _cost(1500, PREMIUM);
        emit IEnergyMarket.OrderPlaced(S, bob, IEnergyMarket.Side.Bid, price, 1500, worst);
        _bid(bob, S, 1500, price);
        assertEq(_free(bob), FUNDS - worst, "escrowed");
        assertEq(market.lockedOf(S, bob), worst, "locked");
        (uint64 b, uint64 a) = market.levelVolumes(S, 120);
        assertEq(b, 1500, "level bid volume");
        assertEq(a, 0, "no ask");
        IEnergyMarket.SlotInfo memory info = market.slotInfo(S);
        assertTrue(info.status == IEnergyMarket.SlotStatus.Open, "open");
        assertEq(info.activeLevels, uint256(1) << 120, "bitmap");
        IEnergyMarket.Position memory p = market.positionOf(S, bob);
        assertEq(p.bidWh, 1500, "position wh");
        assertEq(p.bidPricePerKWh, price, "position price");
        // a second bid at the same level aggregates
        _bid(dave, S, 500, price);
        (b,) = market.levelVolumes(S, 120);
        assertEq(b, 2000, "aggregated");
    }

    function test_placeAsk_locksCollateral() public {
        uint256 price = 100e15;
        // Worst case: nothing delivered, all 1000 Wh bought at retail + premium, at least 0.10 earned for them.
        uint256 collateral = _cost(1000, RETAIL + PREMIUM) - _cost(1000, price);
        vm.expectEmit(address(market));
        emit IEnergyMarket.OrderPlaced(S, alice, IEnergyMarket.Side.Ask, price, 1000, collateral);
        _ask(alice, S, 1000, price);
        assertEq(_free(alice), FUNDS - collateral, "collateral");
        (, uint64 a) = market.levelVolumes(S, 20);
        assertEq(a, 1000, "ask volume");
        IEnergyMarket.Position memory p = market.positionOf(S, alice);
        assertEq(p.askWh, 1000, "ask wh");
        assertEq(p.askPricePerKWh, price, "ask price");
    }

    /// Issue 14, part 2: an ask at retail used to lock nothing. Its worst case is now the short premium.
    function test_placeAsk_atRetailLocksTheShortPremium() public {
        _ask(alice, S, 1000, RETAIL);
        assertEq(_free(alice), FUNDS - _cost(1000, PREMIUM), "premium locked");
        assertEq(market.positionOf(S, alice).shortPremiumPerKWh, PREMIUM, "premium recorded");
    }

    function test_placeOrders_bothSides() public {
        _bid(alice, S, 100, 150e15);
        _ask(alice, S, 200, 100e15);
        IEnergyMarket.Position memory p = market.positionOf(S, alice);
        assertEq(p.bidWh, 100, "bid");
        assertEq(p.askWh, 200, "ask");
    }

    function test_placeBid_revertsOnZeroEnergy() public {
        vm.expectRevert(IEnergyMarket.ZeroEnergy.selector);
        _bid(bob, S, 0, 200e15);
    }

    function test_placeBid_revertsAfterGateClosure() public {
        _toGate(S);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.GateClosed.selector, S));
        _bid(bob, S, 100, 200e15);
        vm.warp(block.timestamp - 1);
        _bid(bob, S, 100, 200e15); // one second earlier is fine
    }

    function test_placeBid_revertsForNonParticipant() public {
        address eve = makeAddr("eve");
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NotParticipant.selector, eve));
        _bid(eve, S, 100, 200e15);
    }

    function test_placeBid_revertsForRemovedParticipant() public {
        vm.prank(operator);
        registry.removeParticipant(bob);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NotParticipant.selector, bob));
        _bid(bob, S, 100, 200e15);
    }

    function test_placeAsk_revertsForConsumer() public {
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NotProsumer.selector, bob));
        _ask(bob, S, 100, 200e15);
    }

    function test_placeBid_revertsOutsideGridPrices() public {
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.PriceOutOfRange.selector, RETAIL + TICK, FEED_IN, RETAIL));
        _bid(bob, S, 100, RETAIL + TICK);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.PriceOutOfRange.selector, FEED_IN - TICK, FEED_IN, RETAIL));
        _ask(alice, S, 100, FEED_IN - TICK);
        // the bounds themselves are accepted
        _bid(bob, S, 100, RETAIL);
        _ask(alice, S, 100, FEED_IN);
    }

    function test_placeBid_revertsOffTick() public {
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.PriceNotOnTick.selector, 200e15 + 1000, TICK));
        _bid(bob, S, 100, 200e15 + 1000);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.PriceNotOnTick.selector, 200e15 + 1, TICK));
        _bid(bob, S, 100, 200e15 + 1);
    }

    function test_placeBid_revertsWhenOrderExists() public {
        _bid(bob, S, 100, 200e15);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.OrderExists.selector, S, bob, IEnergyMarket.Side.Bid));
        _bid(bob, S, 100, 210e15);
        _ask(alice, S, 100, 200e15);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.OrderExists.selector, S, alice, IEnergyMarket.Side.Ask));
        _ask(alice, S, 100, 210e15);
    }

    function test_placeBid_revertsWhenInsufficientBalance() public {
        vm.prank(operator);
        registry.setCapacity(bob, type(uint32).max, 0);
        uint32 wh = uint32(uint256(type(uint32).max) * SLOT / 3600);
        uint256 need = _cost(wh, RETAIL) + _cost(wh, PREMIUM);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.InsufficientBalance.selector, bob, need, FUNDS));
        _bid(bob, S, wh, RETAIL);
    }

    function test_placeBid_usesTimeOfUsePricesSnapshot() public {
        vm.prank(operator);
        registry.setSlotPrices(U, 350e15, 100e15);
        _openSlot(U); // the keeper opens it after the operator's schedule: the schedule applies
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.PriceOutOfRange.selector, 90e15, 100e15, 350e15));
        _bid(bob, U, 100, 90e15);
        _bid(bob, U, 100, 340e15);
        // Later price changes do not affect an opened slot.
        vm.prank(operator);
        registry.setSlotPrices(U, 200e15, 50e15);
        _bid(dave, U, 100, 340e15);
        IEnergyMarket.SlotInfo memory info = market.slotInfo(U);
        assertEq(info.retailPerKWh, 350e15, "snapshot retail");
        assertEq(info.feedInPerKWh, 100e15, "snapshot feed-in");
        // an untouched slot reports the registry's prices
        info = market.slotInfo(U + 1);
        assertTrue(info.status == IEnergyMarket.SlotStatus.Empty, "empty");
        assertEq(info.retailPerKWh, RETAIL, "default retail");
    }

    function test_placeBid_reusesSettledRingEntry() public {
        _tradeAliceBob();
        uint64 next = S + uint64(market.POSITION_RING());
        _keeper(next);
        // The ring entry of slot S is still awaiting settlement.
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.PositionSlotBusy.selector, bob, S));
        _bid(bob, next, 10, 200e15);
        _toSettlement(S);
        market.settle(S, _one(bob));
        _bid(bob, next, 10, 200e15);
        assertEq(market.positionOf(next, bob).bidWh, 10, "new position");
        assertEq(market.positionOf(S, bob).bidWh, 0, "old slot no longer visible");
        assertEq(market.lockedOf(S, bob), 0, "old slot locks nothing");
    }

    function test_placeBid_reusesCancelledRingEntry() public {
        _bid(bob, S, 10, 200e15);
        vm.prank(bob);
        market.cancelOrder(S, IEnergyMarket.Side.Bid);
        _bid(bob, S + uint64(market.POSITION_RING()), 10, 200e15);
    }

    // ================================================================== cancelling

    function test_cancelOrder_bidRefunds() public {
        _bid(bob, S, 1500, 200e15);
        vm.expectEmit(address(market));
        emit IEnergyMarket.OrderCancelled(S, bob, IEnergyMarket.Side.Bid, 1500, _cost(1500, 200e15 + PREMIUM));
        vm.prank(bob);
        market.cancelOrder(S, IEnergyMarket.Side.Bid);
        assertEq(_free(bob), FUNDS, "refunded");
        (uint64 b,) = market.levelVolumes(S, 120);
        assertEq(b, 0, "level emptied");
        assertEq(market.slotInfo(S).activeLevels, 0, "bitmap cleared");
        assertEq(market.positionOf(S, bob).bidWh, 0, "position cleared");
        // can place again
        _bid(bob, S, 10, 200e15);
    }

    function test_cancelOrder_askRefundsAndKeepsSharedLevel() public {
        _ask(alice, S, 1000, 100e15);
        _bid(bob, S, 300, 100e15);
        vm.prank(alice);
        market.cancelOrder(S, IEnergyMarket.Side.Ask);
        assertEq(_free(alice), FUNDS, "refunded");
        (uint64 b, uint64 a) = market.levelVolumes(S, 20);
        assertEq(a, 0, "ask gone");
        assertEq(b, 300, "bid stays");
        assertEq(market.slotInfo(S).activeLevels, uint256(1) << 20, "level still active");
    }

    function test_cancelOrder_revertsWithoutOrder() public {
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NoOrder.selector, S, bob, IEnergyMarket.Side.Bid));
        vm.prank(bob);
        market.cancelOrder(S, IEnergyMarket.Side.Bid);
    }

    function test_cancelOrder_revertsAfterGateClosure() public {
        _bid(bob, S, 100, 200e15);
        _toGate(S);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.GateClosed.selector, S));
        vm.prank(bob);
        market.cancelOrder(S, IEnergyMarket.Side.Bid);
    }

    // ================================================================== clearing

    function test_clear_priceAtMiddleOfClearingInterval() public {
        // Nothing is rejected, so the clearing interval is [ma, mb] = [0.10, 0.20]; k = 1/2 gives 0.15.
        _ask(alice, S, 1000, 100e15); // level 20
        _bid(bob, S, 1000, 200e15); // level 120
        _toGate(S);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotCleared(S, 150e15, 1000, 200e15, 100e15);
        market.clear(S);
        IEnergyMarket.SlotInfo memory info = market.slotInfo(S);
        assertTrue(info.status == IEnergyMarket.SlotStatus.Cleared, "cleared");
        assertEq(info.clearedWh, 1000, "volume");
        assertEq(info.clearingPricePerKWh, 150e15, "price");
        assertEq(info.bidMarginalLevel, 120, "mb");
        assertEq(info.askMarginalLevel, 20, "ma");
        assertEq(info.clearingLevel, 70, "level");
    }

    /// Issue 14, first case: the bid marginal level is rationed. The old midpoint rule priced this book at
    /// 0.18 (between ma = 0.13 and mb = 0.23), where 1500 Wh of bids at 0.23 met 1000 Wh of asks: 500 Wh of
    /// bids willing to pay 0.23 were rejected at a price of 0.18. Their unfilled volume pins the price to 0.23.
    function test_clear_rationedBidLevelPinsPrice() public {
        _ask(alice, S, 1000, 130e15); // level 50
        _bid(bob, S, 1000, 230e15); // level 150
        _bid(dave, S, 500, 230e15); // level 150
        _toGate(S);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotCleared(S, 230e15, 1000, 230e15, 130e15);
        market.clear(S);
        IEnergyMarket.SlotInfo memory info = market.slotInfo(S);
        assertEq(info.clearingLevel, 150, "level = mb");
        (uint64 bobFill,) = market.previewFills(S, bob);
        (uint64 daveFill,) = market.previewFills(S, dave);
        assertLt(bobFill, 1000, "bob rationed");
        assertLt(daveFill, 500, "dave rationed");
        (, uint64 aliceFill) = market.previewFills(S, alice);
        assertEq(aliceFill, 1000, "the ask fills");
        _meter(alice, S, 0, 1000);
        _meter(bob, S, 0, 0);
        _toSettlement(S);
        market.settle(S, _one(alice));
        assertEq(_free(alice), FUNDS + _cost(1000, 230e15), "the seller is paid the pinned price");
    }

    /// Issue 14, mirror case (the simulator's midday book): asks at 0.089 are rationed while the old rule
    /// priced the slot at 0.137, the middle of [0.089, 0.185]: sellers asking 0.089 stayed unsold below the
    /// price. Their unfilled volume pins the price to 0.089, the only price at which no rejected ask is undercut.
    function test_clear_rationedAskLevelPinsPrice() public {
        _ask(alice, S, 700, 89e15); // level 9
        _ask(carol, S, 500, 89e15); // level 9
        _bid(bob, S, 800, 185e15); // level 105
        _toGate(S);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotCleared(S, 89e15, 800, 185e15, 89e15);
        market.clear(S);
        assertEq(market.slotInfo(S).clearingLevel, 9, "level = ma");
        (, uint64 aliceFill) = market.previewFills(S, alice);
        (, uint64 carolFill) = market.previewFills(S, carol);
        assertLt(aliceFill, 700, "alice rationed");
        assertLt(carolFill, 500, "carol rationed");
        _meter(bob, S, 800, 0);
        _toSettlement(S);
        uint256 before = _free(bob);
        market.settle(S, _one(bob));
        assertEq(_free(bob), before + _cost(800, 185e15 + PREMIUM) - _cost(800, 89e15), "escrow back, paid 0.089");
    }

    /// Rejected orders strictly between the marginal levels narrow the interval: a bid at 0.19 and an ask at
    /// 0.22 get nothing, so the interval is [0.19, 0.22] inside [ma, mb] = [0.10, 0.25]. The old midpoint
    /// 0.175 was below the rejected bid.
    function test_clear_rejectedOrdersBetweenMarginalLevelsNarrowInterval() public {
        _ask(alice, S, 1000, 100e15); // level 20, ma
        _ask(carol, S, 400, 220e15); // level 140, rejected
        _bid(bob, S, 1000, 250e15); // level 170, mb
        _bid(dave, S, 300, 190e15); // level 110, rejected
        _toGate(S);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotCleared(S, 205e15, 1000, 250e15, 100e15);
        market.clear(S);
        (uint64 daveFill,) = market.previewFills(S, dave);
        (, uint64 carolFill) = market.previewFills(S, carol);
        assertEq(daveFill + carolFill, 0, "both rejected");
    }

    /// An odd number of ticks in the interval [0.12, 0.131]: k = 1/2 rounds down onto the tick, to 0.125.
    function test_clear_roundsDownOntoTheTick() public {
        _ask(alice, S, 1000, 100e15); // level 20, ma
        _ask(carol, S, 400, 131e15); // level 51, rejected
        _bid(bob, S, 1000, 250e15); // level 170, mb
        _bid(dave, S, 300, 120e15); // level 40, rejected
        _toGate(S);
        market.clear(S);
        // Interval [level 40, level 51]: 40 + floor(11 / 2) = 45.
        assertEq(market.slotInfo(S).clearingPricePerKWh, 125e15, "rounded down");
    }

    /// Equal marginal levels: the interval is the single level ma = mb whatever else is in the book.
    function test_clear_equalMarginalLevels() public {
        _ask(alice, S, 500, 120e15);
        _bid(bob, S, 500, 120e15);
        _ask(carol, S, 300, 200e15); // rejected, above
        _bid(dave, S, 300, 90e15); // rejected, below
        _toGate(S);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotCleared(S, 120e15, 500, 120e15, 120e15);
        market.clear(S);
    }

    function test_clear_noCrossing() public {
        _ask(alice, S, 1000, 200e15);
        _bid(bob, S, 1000, 100e15);
        _toGate(S);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SlotCleared(S, 0, 0, 0, 0);
        market.clear(S);
        assertEq(market.slotInfo(S).clearedWh, 0, "nothing");
        assertEq(market.slotInfo(S).clearingPricePerKWh, 0, "no price");
    }

    function test_clear_onlyBids() public {
        _bid(bob, S, 1000, 100e15);
        _toGate(S);
        market.clear(S);
        assertEq(market.slotInfo(S).clearedWh, 0, "nothing");
    }

    function test_clear_meritOrderWithRationing() public {
        // Supply: 400 @ 0.09 (alice), 700 @ 0.12 (carol). Demand: 500 @ 0.25 (bob), 500 @ 0.12 (dave).
        _ask(alice, S, 400, 90e15); // level 10
        _ask(carol, S, 700, 120e15); // level 40
        _bid(bob, S, 500, 250e15); // level 170
        _bid(dave, S, 500, 120e15); // level 40
        _toGate(S);
        market.clear(S);
        IEnergyMarket.SlotInfo memory info = market.slotInfo(S);
        // At 0.12 demand is 1000 and supply 1100: Q = 1000, asks rationed at level 40, bids at level 40 filled.
        assertEq(info.clearedWh, 1000, "Q");
        assertEq(info.askMarginalLevel, 40, "ma");
        assertEq(info.bidMarginalLevel, 40, "mb");
        assertEq(info.clearingPricePerKWh, 120e15, "price");
        (uint64 bf, uint64 bv, uint64 af, uint64 av) = market.marginalState(S);
        assertEq(bf, 500, "bid marginal fill");
        assertEq(bv, 500, "bid marginal volume");
        assertEq(af, 600, "ask marginal fill");
        assertEq(av, 700, "ask marginal volume");
    }

    function test_clear_revertsWhenNotOpen() public {
        _toGate(U);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.NothingToClear.selector, U));
        market.clear(U);
    }

    function test_clear_revertsBeforeGateClosure() public {
        _bid(bob, S, 100, 200e15);
        vm.warp(market.gateClosureTime(S) - 1);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.GateOpen.selector, S));
        market.clear(S);
    }

    function test_clear_revertsWhenCleared() public {
        _bid(bob, S, 100, 200e15);
        _toGate(S);
        market.clear(S);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.AlreadyCleared.selector, S));
        market.clear(S);
    }

    function test_clear_allCancelledClearsEmpty() public {
        _bid(bob, S, 100, 200e15);
        vm.prank(bob);
        market.cancelOrder(S, IEnergyMarket.Side.Bid);
        _toGate(S);
        market.clear(S);
        assertEq(market.slotInfo(S).clearedWh, 0, "nothing");
    }

    // ================================================================== settlement

    function _tradeAliceBob() internal {
        _ask(alice, S, 1000, 100e15);
        _bid(bob, S, 1000, 200e15);
        _toGate(S);
        market.clear(S); // 1000 Wh at 0.15
    }

    function test_settle_sellerShortBuyerOver() public {
        _tradeAliceBob();
        _meter(alice, S, 0, 800); // delivered 200 Wh less than sold
        _meter(bob, S, 1300, 0); // used 300 Wh more than bought
        _toSettlement(S);
        uint256 gridBefore = _free(grid);
        address[] memory both = new address[](2);
        both[0] = alice;
        both[1] = bob;
        vm.expectEmit(address(market));
        emit IEnergyMarket.ParticipantSettled(
            S, alice, 0, 1000, 0, 800, _cost(1000, 250e15) + _cost(1000, 150e15), _cost(200, RETAIL + PREMIUM)
        );
        market.settle(S, both);
        // alice: receives 1000 Wh at 0.15, buys 200 Wh at the short imbalance price for her shortfall.
        assertEq(_free(alice), FUNDS + _cost(1000, 150e15) - _cost(200, 350e15), "alice");
        // bob: pays 1000 Wh at 0.15 plus 300 Wh at retail (using more than bought is plain grid supply).
        assertEq(_free(bob), FUNDS - _cost(1000, 150e15) - _cost(300, RETAIL), "bob");
        assertEq(_free(grid), gridBefore + _cost(200, 350e15) + _cost(300, RETAIL), "grid");
        assertTrue(market.positionOf(S, alice).settled, "settled");
        assertEq(market.lockedOf(S, bob), 0, "nothing locked");
    }

    function test_settle_sellerSurplusBuyerUnder() public {
        _tradeAliceBob();
        _meter(alice, S, 0, 1250); // 250 Wh more than sold
        _meter(bob, S, 600, 0); // 400 Wh less than bought
        _toSettlement(S);
        uint256 gridBefore = _free(grid);
        market.settle(S, _one(bob));
        market.settle(S, _one(alice));
        assertEq(_free(alice), FUNDS + _cost(1000, 150e15) + _cost(250, FEED_IN), "alice surplus at feed-in");
        // bob's 400 unused Wh: feed-in 0.08 less the long penalty 0.05, i.e. 0.03 per kWh.
        assertEq(_free(bob), FUNDS - _cost(1000, 150e15) + _cost(400, 30e15), "bob unused at feed-in less penalty");
        assertEq(_free(grid), gridBefore - _cost(650, FEED_IN) + _cost(400, PREMIUM), "grid pays feed-in");
    }

    function test_settle_noReadingIsZeroDelivery() public {
        _tradeAliceBob();
        _toSettlement(S);
        uint256 gridBefore = _free(grid);
        address[] memory both = new address[](2);
        both[0] = alice;
        both[1] = bob;
        market.settle(S, both);
        // alice delivered nothing: buys all 1000 Wh at retail + premium (0.35); bob used nothing: sells back at
        // feed-in less the penalty (0.03).
        assertEq(_free(alice), FUNDS + _cost(1000, 150e15) - _cost(1000, 350e15), "alice");
        assertEq(_free(bob), FUNDS - _cost(1000, 150e15) + _cost(1000, 30e15), "bob");
        assertEq(_free(grid), gridBefore + _cost(1000, 350e15) - _cost(1000, 30e15), "grid");
    }

    function test_settle_withoutMeterIsZeroDelivery() public {
        _tradeAliceBob();
        vm.prank(operator);
        registry.unbindMeter(meterAddrOf[alice]);
        _toSettlement(S);
        market.settle(S, _one(alice));
        assertEq(_free(alice), FUNDS + _cost(1000, 150e15) - _cost(1000, 350e15), "alice");
    }

    function test_settle_lateReadingAfterGraceIgnored() public {
        _tradeAliceBob();
        _toSettlement(S);
        market.settle(S, _one(alice));
        // A reading for the slot arriving after settlement is refused: the slot is final (MeterReadings'
        // finality delay is the grace period), and the settled position stays as it is.
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeterReadings.SlotFinal.selector, meterAddrOf[alice], uint64(_start(S) + 10), uint64(_start(S + 1))
            )
        );
        _read(alice, 0, 1000, uint64(_start(S) + 10));
        uint256 free = _free(alice);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SettlementSkipped(S, alice, IEnergyMarket.AlreadySettled.selector);
        market.settle(S, _one(alice));
        assertEq(_free(alice), free, "unchanged");
    }

    function test_settle_unmatchedOrdersRefunded() public {
        _ask(alice, S, 1000, 250e15);
        _bid(bob, S, 1000, 200e15);
        _toGate(S);
        market.clear(S);
        _meter(bob, S, 500, 0);
        _toSettlement(S);
        market.settle(S, _one(bob));
        // no trade: bob's whole import came from the grid at retail
        assertEq(_free(bob), FUNDS - _cost(500, RETAIL), "bob");
    }

    function test_settle_marginalProRata() public {
        _ask(alice, S, 500, 100e15);
        _ask(carol, S, 700, 100e15);
        _bid(bob, S, 1000, 200e15);
        _toGate(S);
        market.clear(S);
        (, uint64 carolPreview) = market.previewFills(S, carol);
        assertEq(carolPreview, 583, "carol pro-rata preview");
        _toSettlement(S);
        market.settle(S, _one(alice));
        (, uint64 sold) = market.previewFills(S, carol);
        assertEq(sold, 584, "carol gets the rest");
        market.settle(S, _one(carol));
        (uint64 bf, uint64 bv, uint64 af, uint64 av) = market.marginalState(S);
        assertEq(af, 0, "all ask fill allocated");
        assertEq(av, 0, "all ask volume settled");
        assertEq(bf + bv, 2000, "bid marginal untouched");
        (uint64 b,) = market.previewFills(S, alice);
        assertEq(b, 0, "settled positions preview zero");
    }

    /// A marginal level of 2^38 Wh or more does not fit the compact header: its pro-rata state keeps its own word,
    /// and clearing, the views and settlement behave exactly as with a compact header.
    function test_settle_hugeMarginalLevel_usesMarginalWord() public {
        // The largest capacity the registry holds (2^32 - 1 W) allows 1,073,741,823 Wh per 900 s slot.
        uint32 big = uint32(uint256(type(uint32).max) * SLOT / 3600);
        address[] memory sellers = new address[](257); // 257 * big Wh > 2^38 Wh
        for (uint256 i = 0; i < sellers.length; ++i) {
            // Asks at retail lock the short premium only.
            sellers[i] = _participant(string.concat("big-seller-", _decimal(i)), IRegistry.Role.Prosumer, 0);
            vm.prank(operator);
            registry.setCapacity(sellers[i], type(uint32).max, type(uint32).max);
            _fund(sellers[i], _cost(big, PREMIUM));
            _ask(sellers[i], S, big, RETAIL);
        }
        _bid(bob, S, 1000, RETAIL);
        _toGate(S);
        market.clear(S);

        IEnergyMarket.SlotInfo memory info = market.slotInfo(S);
        assertTrue(info.status == IEnergyMarket.SlotStatus.Cleared, "cleared");
        assertEq(info.clearedWh, 1000, "Q");
        (uint64 bf, uint64 bv, uint64 af, uint64 av) = market.marginalState(S);
        assertEq(bf, 1000, "bid marginal fill");
        assertEq(bv, 1000, "bid marginal volume");
        assertEq(af, 1000, "ask marginal fill");
        assertEq(av, uint256(big) * 257, "ask marginal volume above 2^38");
        assertGt(av, uint256(1) << 38, "does not fit the compact header");

        _toSettlement(S);
        uint256 gridBefore = _free(grid);
        market.settle(S, _one(bob));
        market.settle(S, sellers);
        uint256 sold;
        uint256 premiumsPaid;
        for (uint256 i = 0; i < sellers.length; ++i) {
            // No reading: the shortfall is bought back at retail + premium; the sale at retail earned retail.
            premiumsPaid += _cost(big, PREMIUM) - _free(sellers[i]);
            assertEq(_debt(sellers[i]), 0, "no debt");
            sold += market.positionOf(S, sellers[i]).settled ? 1 : 0;
        }
        assertEq(sold, sellers.length, "all settled");
        assertEq(premiumsPaid, _cost(1000, PREMIUM), "the sellers' 1000 Wh short cost them the premium");
        (bf, bv, af, av) = market.marginalState(S);
        assertEq(af, 0, "all ask fill allocated");
        assertEq(av, 0, "all ask volume settled");
        assertEq(bf + bv, 0, "bid marginal allocated");
        // The grid bought bob's unused 1000 Wh at feed-in less the penalty and sold the sellers' 1000 Wh
        // shortfall at retail plus the premium.
        assertEq(
            _free(grid),
            gridBefore - _cost(1000, FEED_IN) + _cost(1000, PREMIUM) + _cost(1000, RETAIL + PREMIUM),
            "grid flows"
        );
    }

    function test_settle_payAsBid() public {
        _deploy(IEnergyMarket.MarketMode.PayAsBid);
        alice = _participant("alice2", IRegistry.Role.Prosumer, FUNDS);
        bob = _participant("bob2", IRegistry.Role.Consumer, FUNDS);
        _fundGrid(1000e18);
        _tradeAliceBob();
        _meter(alice, S, 0, 1000);
        _meter(bob, S, 1000, 0);
        _toSettlement(S);
        uint256 gridBefore = _free(grid);
        address[] memory both = new address[](2);
        both[0] = alice;
        both[1] = bob;
        market.settle(S, both);
        assertEq(_free(alice), FUNDS + _cost(1000, 100e15), "seller gets her ask");
        assertEq(_free(bob), FUNDS - _cost(1000, 200e15), "buyer pays his bid");
        assertEq(_free(grid), gridBefore + _cost(1000, 100e15), "spread to the grid");
    }

    function test_settle_debtWhenBuyerCannotPay() public {
        // dave spends almost everything on other slots, then imports far more than he bought.
        _bid(dave, S, 1000, 200e15);
        _ask(alice, S, 1000, 100e15);
        uint256 daveFree = _free(dave);
        vm.prank(dave);
        market.withdraw(daveFree);
        _toGate(S);
        market.clear(S);
        _meter(dave, S, 1_000_000, 0); // 1 MWh
        _toSettlement(S);
        uint256 gridBefore = _free(grid);
        uint256 release = _cost(1000, 200e15 + PREMIUM);
        uint256 owed = _cost(1000, 150e15) + _cost(999_000, RETAIL);
        vm.expectEmit(address(market));
        emit IEnergyMarket.DebtIncurred(dave, owed - release);
        market.settle(S, _one(dave));
        assertEq(_free(dave), 0, "nothing left");
        assertEq(_debt(dave), owed - release, "debt");
        assertEq(_free(grid), gridBefore + _cost(999_000, RETAIL) - (owed - release), "grid got what was paid");
        // with debt, dave cannot trade or withdraw
        _keeper(S + 10);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.OutstandingDebt.selector, dave, owed - release));
        _bid(dave, S + 10, 1, 200e15);
        // a deposit repays the debt to the grid first
        uint256 debt = owed - release;
        uint256 g = _free(grid);
        vm.prank(operator);
        token.mint(dave, debt + 1e18);
        vm.startPrank(dave);
        token.approve(address(market), debt + 1e18);
        vm.expectEmit(address(market));
        emit IEnergyMarket.DebtRepaid(dave, debt);
        market.deposit(debt + 1e18);
        vm.stopPrank();
        assertEq(_debt(dave), 0, "repaid");
        assertEq(_free(dave), 1e18, "rest is free");
        assertEq(_free(grid), g + debt, "grid repaid");
    }

    function test_settle_gainRepaysDebt() public {
        // First dave runs into debt in slot S.
        _bid(dave, S, 1000, 200e15);
        _ask(alice, S, 1000, 100e15);
        // and sells... dave is a consumer; use carol as the debtor instead for a later gain.
        vm.prank(dave);
        market.cancelOrder(S, IEnergyMarket.Side.Bid);
        _bid(carol, S, 1000, 200e15);
        _ask(carol, S + 1, 1000, 100e15); // carol also sells in the next slot
        _bid(bob, S + 1, 1000, 200e15);
        uint256 carolFree = _free(carol);
        vm.prank(carol);
        market.withdraw(carolFree);
        _toGate(S + 1);
        market.clear(S);
        market.clear(S + 1);
        _meter(carol, S, 2000, 0); // 1000 Wh excess import in S
        _meter(carol, S + 1, 0, 1000); // delivers in S + 1
        _toSettlement(S + 1);
        market.settle(S, _one(carol));
        uint256 debt = _debt(carol);
        assertGt(debt, 0, "in debt");
        uint256 g = _free(grid);
        vm.expectEmit(address(market));
        emit IEnergyMarket.DebtRepaid(carol, debt);
        market.settle(S + 1, _one(carol));
        assertEq(_debt(carol), 0, "repaid from the gain");
        uint256 gain = _cost(1000, RETAIL + PREMIUM - 100e15) + _cost(1000, 150e15);
        assertEq(_free(carol), gain - debt, "rest free");
        assertEq(_free(grid), g + debt, "grid received the repayment");
    }

    function test_settle_inParts() public {
        _ask(alice, S, 500, 100e15);
        _ask(carol, S, 500, 100e15);
        _bid(bob, S, 500, 200e15);
        _bid(dave, S, 500, 200e15);
        _toGate(S);
        market.clear(S);
        _toSettlement(S);
        uint256 before = _totalMoney();
        address[] memory first = new address[](2);
        first[0] = alice;
        first[1] = bob;
        address[] memory second = new address[](2);
        second[0] = carol;
        second[1] = dave;
        market.settle(S, first);
        market.settle(S, second);
        assertEq(_totalMoney(), before, "conserved across parts");
    }

    function test_settle_revertsWhenNotCleared() public {
        _bid(bob, S, 100, 200e15);
        _toSettlement(S);
        vm.expectRevert(abi.encodeWithSelector(IEnergyMarket.SlotNotCleared.selector, S));
        market.settle(S, _one(bob));
    }

    function test_settle_revertsBeforeGraceEnds() public {
        _tradeAliceBob();
        vm.warp(market.settlementOpensAt(S) - 1);
        vm.expectRevert(
            abi.encodeWithSelector(IEnergyMarket.SettlementNotOpen.selector, S, market.settlementOpensAt(S))
        );
        market.settle(S, _one(bob));
    }

    /// Issue 14, part 6: an account with neither orders nor a meter in the slot is skipped, not reverted on.
    function test_settle_skipsWithoutPositionOrMeter() public {
        _tradeAliceBob();
        _toSettlement(S);
        address stranger = makeAddr("stranger");
        uint256 gridFree = _free(grid);
        vm.expectEmit(address(market));
        emit IEnergyMarket.SettlementSkipped(S, stranger, IEnergyMarket.NoPosition.selector);
        market.settle(S, _one(stranger));
        assertEq(_free(grid), gridFree, "grid unchanged");
        assertFalse(market.settledWithoutOrders(S, stranger), "nothing recorded");
    }

    function test_settle_skipsWhenSettledTwice() public {
        _tradeAliceBob();
        _toSettlement(S);
        market.settle(S, _one(bob));
        uint256 free = _free(bob);
        uint256 gridFree = _free(grid);
        vm.recordLogs();
        market.settle(S, _one(bob));
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 1, "only the skip");
        assertEq(logs[0].topics[0], IEnergyMarket.SettlementSkipped.selector, "skip event");
        assertEq(_free(bob), free, "bob unchanged");
        assertEq(_free(grid), gridFree, "grid unchanged");
    }

    /// Issue 14, part 6: a settle of one participant that front-runs the settler's batch (or two overlapping
    /// batches, or a participant listed twice) cannot make the batch revert, and nobody is settled twice.
    function test_settle_overlappingBatchesBothSucceed() public {
        _ask(alice, S, 1000, 100e15);
        _ask(carol, S, 500, 120e15);
        _bid(bob, S, 1000, 200e15);
        _bid(dave, S, 800, 180e15);
        _toGate(S);
        market.clear(S);
        _meter(alice, S, 0, 900);
        _meter(carol, S, 0, 500);
        _meter(bob, S, 1100, 0);
        _meter(dave, S, 700, 0);
        _toSettlement(S);
        uint256 held = token.balanceOf(address(market));
        uint256 total = _free(alice) + _free(bob) + _free(carol) + _free(dave) + _free(grid);

        address[] memory first = new address[](3);
        (first[0], first[1], first[2]) = (bob, alice, bob); // bob twice in one batch
        address[] memory second = new address[](4);
        (second[0], second[1], second[2], second[3]) = (alice, carol, bob, dave);
        vm.recordLogs();
        market.settle(S, first); // front-runs the settler
        market.settle(S, second);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 settled;
        uint256 skipped;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].topics[0] == IEnergyMarket.ParticipantSettled.selector) settled++;
            if (logs[i].topics[0] == IEnergyMarket.SettlementSkipped.selector) {
                skipped++;
                assertEq(bytes4(abi.decode(logs[i].data, (bytes32))), IEnergyMarket.AlreadySettled.selector, "reason");
            }
        }
        assertEq(settled, 4, "each participant settled once");
        assertEq(skipped, 3, "bob again in the first batch, alice and bob in the second");
        assertTrue(market.positionOf(S, carol).settled && market.positionOf(S, dave).settled, "rest of batch");
        // Money is conserved: nothing left the market, and with every position settled each credit it holds is
        // in some free balance again (the grid account took the imbalances).
        assertTrue(total < held, "escrow was locked before settlement");
        assertEq(token.balanceOf(address(market)), held, "held");
        assertEq(_free(alice) + _free(bob) + _free(carol) + _free(dave) + _free(grid), held, "sum");
    }

    // ================================================================== fuzz

    function testFuzz_placeAndCancelRestoresBalance(uint32 wh, uint256 level, bool isBid) public {
        wh = uint32(bound(wh, 1, CAPACITY_WH));
        level = bound(level, 0, MAX_LEVEL);
        uint256 price = _price(level);
        if (isBid) _bid(alice, S, wh, price);
        else _ask(alice, S, wh, price);
        assertEq(_free(alice) + market.lockedOf(S, alice), FUNDS, "escrow accounted");
        vm.prank(alice);
        market.cancelOrder(S, isBid ? IEnergyMarket.Side.Bid : IEnergyMarket.Side.Ask);
        assertEq(_free(alice), FUNDS, "restored");
        assertEq(market.slotInfo(S).activeLevels, 0, "book empty");
    }

    /// Two-party trade with arbitrary prices and meter readings conserves money, the grid included.
    function testFuzz_settlementConservesMoney(
        uint32 askWh,
        uint32 bidWh,
        uint256 askLevel,
        uint256 bidLevel,
        uint32 exported,
        uint32 imported,
        bool payAsBid
    ) public {
        if (payAsBid) {
            _deploy(IEnergyMarket.MarketMode.PayAsBid);
            alice = _participant("alice4", IRegistry.Role.Prosumer, FUNDS);
            bob = _participant("bob4", IRegistry.Role.Consumer, FUNDS);
            _fundGrid(1000e18);
        }
        askWh = uint32(bound(askWh, 1, CAPACITY_WH));
        bidWh = uint32(bound(bidWh, 1, CAPACITY_WH));
        askLevel = bound(askLevel, 0, MAX_LEVEL);
        bidLevel = bound(bidLevel, 0, MAX_LEVEL);
        exported = uint32(bound(exported, 0, 200_000));
        imported = uint32(bound(imported, 0, 200_000));
        _ask(alice, S, askWh, _price(askLevel));
        _bid(bob, S, bidWh, _price(bidLevel));
        _toGate(S);
        market.clear(S);
        uint256 q = market.slotInfo(S).clearedWh;
        assertEq(q, bidLevel >= askLevel ? (askWh < bidWh ? askWh : bidWh) : 0, "volume");
        _meter(alice, S, 0, exported);
        _meter(bob, S, imported, 0);
        _toSettlement(S);
        uint256 total = _free(alice) + _free(bob) + _free(grid) + market.lockedOf(S, alice) + market.lockedOf(S, bob);
        address[] memory both = new address[](2);
        both[0] = bob;
        both[1] = alice;
        market.settle(S, both);
        assertEq(_free(alice) + _free(bob) + _free(grid), total, "money conserved incl. grid");
        assertEq(_debt(bob), 0, "funds suffice, no debt");
        uint256 others = payAsBid ? 0 : 2 * FUNDS; // carol and dave in the default deployment
        assertEq(token.balanceOf(address(market)), _free(alice) + _free(bob) + _free(grid) + others, "backed");
    }
}
