// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Vm} from "../utils/Vm.sol";
import {CreditToken} from "../../src/CreditToken.sol";
import {EnergyMarket} from "../../src/EnergyMarket.sol";
import {MeterReadings} from "../../src/MeterReadings.sol";
import {Registry} from "../../src/Registry.sol";
import {IEnergyMarket} from "../../src/interfaces/IEnergyMarket.sol";
import {IMeterReadings} from "../../src/interfaces/IMeterReadings.sol";

/// Drives random valid sequences of market actions and keeps ghost totals for the invariants.
contract MarketHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    EnergyMarket public market;
    CreditToken public token;
    MeterReadings public readings;
    address public operator;
    address public grid;
    uint64 public immutable firstSlot;
    uint64 public constant SLOTS = 4;
    /// The registry's imbalance premiums at deployment (50 ticks of 0.001 credit/kWh).
    uint256 internal constant PREMIUM = 50e15;

    address[] public actors;
    address[] public meters;
    bool[] public prosumer;

    /// Credits the market owes to sellers minus what buyers paid at the clearing price (clearing-house float).
    int256 public ghostFloat;
    mapping(uint64 => uint256) public ghostBought;
    mapping(uint64 => uint256) public ghostSold;
    mapping(uint64 => uint256) public ghostSettledCount;
    mapping(uint64 => int256) public ghostMeteredNet; // sum(import) - sum(export) of settled participants
    mapping(uint64 => int256) public ghostGridNet; // grid supply - grid absorption at settlement
    uint256 public priceViolations;
    uint256 public calls;
    uint256 public settledWithTrade;
    /// Batches of already-settled participants that changed a balance (must stay 0).
    uint256 public doubleSettlements;
    uint256 public skippedBatches;
    /// Settlements whose grid or participant balance change differed from the flows computed here from fills,
    /// meter data, grid prices and imbalance premiums (must stay 0).
    uint256 public flowMismatches;
    /// Settlements in which a short seller or a long buyer came out ahead of its trade (must stay 0).
    uint256 public imbalanceProfits;
    /// Participants settled against the grid alone (a meter, no order in the slot; issue 14, part 6).
    uint256 public settledWithoutOrder;
    /// Settle calls that left the grid account in debt (it could not pay the feed-in).
    uint256 public gridDebtSettlements;
    /// Meter swaps made by {swapMeter}.
    uint256 public meterSwaps;
    /// Swaps the market refused first (`BindingStillNeeded`: a slot of the binding the change drops could still be
    /// settled), and of those the ones made after settling that slot.
    uint256 public swapsRefused;
    uint256 public swapsAfterSettling;

    /// Fills each settled participant got (previewFills reads zero once a position is settled).
    mapping(uint64 => mapping(address => uint256)) public ghostBidFill;
    mapping(uint64 => mapping(address => uint256)) public ghostAskFill;

    mapping(uint64 => mapping(address => uint256)) public meterImp;
    mapping(uint64 => mapping(address => uint256)) public meterExp;

    constructor(
        EnergyMarket market_,
        CreditToken token_,
        MeterReadings readings_,
        address operator_,
        address grid_,
        address[] memory actors_,
        address[] memory meters_,
        bool[] memory prosumer_,
        uint64 firstSlot_
    ) {
        market = market_;
        token = token_;
        readings = readings_;
        operator = operator_;
        grid = grid_;
        actors = actors_;
        meters = meters_;
        prosumer = prosumer_;
        firstSlot = firstSlot_;
    }

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function _slot(uint256 seed) internal view returns (uint64) {
        return firstSlot + uint64(seed % SLOTS);
    }

    // ------------------------------------------------------------------ actions

    function deposit(uint256 who, uint256 amount) external {
        address a = actors[who % actors.length];
        amount = 1 + amount % 50e18;
        vm.prank(operator);
        token.mint(a, amount);
        vm.startPrank(a);
        token.approve(address(market), amount);
        market.deposit(amount);
        vm.stopPrank();
        calls++;
    }

    function withdraw(uint256 who, uint256 amount) external {
        address a = actors[who % actors.length];
        (uint256 free,) = market.accountOf(a);
        (, uint256 gridDebt) = market.accountOf(grid);
        if (free == 0 || gridDebt != 0) return; // withdrawals wait while the grid is in debt
        amount = 1 + amount % free;
        vm.prank(a);
        market.withdraw(amount);
        calls++;
    }

    /// The operator swaps actor `who`'s meter for a fresh one (effective from the next slot): settlement must keep
    /// billing each slot from the meter bound in it, which the flow checks compute from the registry's history.
    /// A swap that would drop the market's copy of a binding still needed by a settleable slot is refused
    /// (`BindingStillNeeded`, the unbinding rolled back with it): the handler then settles the actor in that slot,
    /// as the operator would, and retries; if the slot cannot be settled yet, the swap waits (nothing changes).
    function swapMeter(uint256 who) external {
        uint256 i = who % actors.length;
        address fresh = address(uint160(uint256(keccak256(abi.encode("swapped meter", i, meterSwaps)))));
        for (uint256 attempt = 0; attempt < 8; ++attempt) {
            try this.swapAsOperator(meters[i], fresh, actors[i]) {
                meters[i] = fresh;
                meterSwaps++;
                if (attempt != 0) swapsAfterSettling++;
                calls++;
                return;
            } catch (bytes memory err) {
                bytes4 selector;
                uint64 slot;
                address participant;
                assembly ("memory-safe") {
                    selector := mload(add(err, 0x20))
                    participant := mload(add(err, 0x24))
                    slot := mload(add(err, 0x44))
                }
                // Only the market's refusal is expected; anything else fails the run.
                if (selector != IEnergyMarket.BindingStillNeeded.selector || participant != actors[i]) {
                    assembly ("memory-safe") {
                        revert(add(err, 0x20), mload(err))
                    }
                }
                if (attempt == 0) swapsRefused++;
                IEnergyMarket.SlotInfo memory info = market.slotInfo(slot);
                if (info.status == IEnergyMarket.SlotStatus.Open && block.timestamp >= market.gateClosureTime(slot)) {
                    market.clear(slot);
                }
                if (market.slotInfo(slot).status != IEnergyMarket.SlotStatus.Cleared) return;
                if (block.timestamp < market.settlementOpensAt(slot)) return;
                _settle(actors[i], slot);
            }
        }
        revert("swap still refused after settling");
    }

    /// The operator's unbinding of `old` and binding of `fresh` to `account`, in one call so that a refused binding
    /// rolls the unbinding back too. Only the handler itself swaps (the fuzzer's direct calls do nothing).
    function swapAsOperator(address old, address fresh, address account) external {
        if (msg.sender != address(this)) return;
        Registry r = Registry(address(market.registry()));
        vm.prank(operator);
        r.unbindMeter(old);
        vm.prank(operator);
        r.bindMeter(fresh, account);
    }

    /// The operator funds the grid account (repaying its debt first).
    function fundGrid(uint256 amount) external {
        amount = 1 + amount % 20e18;
        vm.startPrank(operator);
        token.mint(operator, amount);
        token.approve(address(market), amount);
        market.depositFor(grid, amount);
        vm.stopPrank();
        calls++;
    }

    /// The grid account withdraws all it has, so that later feed-in can only become grid debt.
    function drainGrid() external {
        (uint256 free, uint256 debt) = market.accountOf(grid);
        if (free == 0 || debt != 0) return;
        vm.prank(grid);
        market.withdraw(free);
        calls++;
    }

    function place(uint256 who, uint256 slotSeed, uint256 wh, uint256 level, bool bid) external {
        uint256 i = who % actors.length;
        address a = actors[i];
        uint64 slot = _slot(slotSeed);
        if (block.timestamp >= market.gateClosureTime(slot)) return;
        if (!bid && !prosumer[i]) bid = true;
        IEnergyMarket.SlotInfo memory info = market.slotInfo(slot);
        if (info.status == IEnergyMarket.SlotStatus.Empty) {
            // The operator's keeper opens the slot (orders never open one).
            vm.prank(operator);
            market.openSlot(slot);
        }
        uint256 levels = (info.retailPerKWh - info.feedInPerKWh) / 1e15;
        uint256 price = info.feedInPerKWh + (level % (levels + 1)) * 1e15;
        wh = 1 + wh % 5000;
        IEnergyMarket.Position memory p = market.positionOf(slot, a);
        if (bid ? p.bidWh != 0 : p.askWh != 0) return;
        // Worst cases (issue 14, part 2): a bid pays its limit and the long penalty; an ask buys it all at the
        // short imbalance price, less its limit. The premiums are the registry's at deployment.
        uint256 lock = bid ? wh * (price + PREMIUM) / 1000 : wh * (info.retailPerKWh + PREMIUM - price) / 1000;
        (uint256 free, uint256 debt) = market.accountOf(a);
        if (debt != 0 || free < lock) return;
        vm.prank(a);
        if (bid) market.placeBid(slot, uint32(wh), price);
        else market.placeAsk(slot, uint32(wh), price);
        calls++;
    }

    function cancel(uint256 who, uint256 slotSeed, bool bid) external {
        address a = actors[who % actors.length];
        uint64 slot = _slot(slotSeed);
        if (block.timestamp >= market.gateClosureTime(slot)) return;
        IEnergyMarket.Position memory p = market.positionOf(slot, a);
        if (bid ? p.bidWh == 0 : p.askWh == 0) return;
        vm.prank(a);
        market.cancelOrder(slot, bid ? IEnergyMarket.Side.Bid : IEnergyMarket.Side.Ask);
        calls++;
    }

    function advance(uint256 dt) external {
        vm.warp(block.timestamp + 1 + dt % 1800);
        calls++;
    }

    function meter(uint256 who, uint256 dImp, uint256 dExp) external {
        uint256 i = who % actors.length;
        (uint64 li, uint64 le, uint64 lt,) = readings.latestReading(meters[i]);
        if (block.timestamp <= lt) return;
        vm.prank(meters[i]);
        readings.submitReading(li + uint64(dImp % 2000), le + uint64(dExp % 2000), uint64(block.timestamp));
        calls++;
    }

    /// Clears every slot whose gate has closed.
    function clear() external {
        for (uint64 slot = firstSlot; slot < firstSlot + SLOTS; ++slot) {
            IEnergyMarket.SlotInfo memory info = market.slotInfo(slot);
            if (info.status != IEnergyMarket.SlotStatus.Open) continue;
            if (block.timestamp < market.gateClosureTime(slot)) continue;
            market.clear(slot);
            calls++;
        }
    }

    /// Settles up to `count` unsettled participants, starting at actor `who`, in the slot chosen by `slotSeed`.
    function settle(uint256 who, uint256 slotSeed, uint256 count) external {
        count = 1 + count % actors.length;
        for (uint256 k = 0; k < count; ++k) {
            _settle(actors[(who % actors.length + k) % actors.length], _slot(slotSeed));
        }
    }

    function _settle(address a, uint64 slot) internal {
        IEnergyMarket.SlotInfo memory info = market.slotInfo(slot);
        if (info.status != IEnergyMarket.SlotStatus.Cleared) return;
        if (block.timestamp < market.settlementOpensAt(slot)) return;
        IEnergyMarket.Position memory p = market.positionOf(slot, a);
        if (p.settled) return;
        if (p.bidWh == 0 && p.askWh == 0) {
            _settleWithoutOrder(a, slot);
            return;
        }
        // The grid may lack the feed-in ({fundGrid}, {drainGrid}): the rest becomes its debt, nothing reverts.

        (uint64 b, uint64 s) = market.previewFills(slot, a);
        uint256 c = info.clearingPricePerKWh / 1000;
        if (b != 0 && p.bidPricePerKWh < info.clearingPricePerKWh) priceViolations++;
        if (s != 0 && p.askPricePerKWh > info.clearingPricePerKWh) priceViolations++;
        ghostFloat += int256(uint256(b) * c) - int256(uint256(s) * c);
        ghostBought[slot] += b;
        ghostSold[slot] += s;
        ghostBidFill[slot][a] = b;
        ghostAskFill[slot][a] = s;
        IMeterReadings.SlotEnergy memory e = _energy(a, slot);
        ghostMeteredNet[slot] += int256(uint256(e.importWh)) - int256(uint256(e.exportWh));
        int256 bi = int256(uint256(b));
        int256 si = int256(uint256(s));
        int256 im = int256(uint256(e.importWh));
        int256 ex = int256(uint256(e.exportWh));
        ghostGridNet[slot] += _pos(im - bi) + _pos(si - ex) - _pos(bi - im) - _pos(ex - si);
        ghostSettledCount[slot]++;
        if (b != 0 || s != 0) settledWithTrade++;

        _settleAndCheckFlows(a, slot, b, s);
        calls++;
    }

    /// A participant with a meter and no order: settled against the grid alone (import at retail, export at
    /// feed-in), checked like any other settlement; skipped (nothing changes) once its record has closed.
    function _settleWithoutOrder(address a, uint64 slot) internal {
        if (market.settledWithoutOrders(slot, a)) return;
        if (block.timestamp >= market.gridSettlementClosesAt(slot)) return;
        address m = market.registry().meterAt(a, slot);
        if (m == address(0)) return; // skipped by the market (NoPosition)
        IMeterReadings.SlotEnergy memory e = readings.energyInSlot(m, slot);
        int256 im = int256(uint256(e.importWh));
        int256 ex = int256(uint256(e.exportWh));
        ghostMeteredNet[slot] += im - ex;
        ghostGridNet[slot] += im - ex;
        ghostSettledCount[slot]++;
        settledWithoutOrder++;
        _settleAndCheckFlows(a, slot, 0, 0);
        calls++;
    }

    /// Settles `a` alone and checks its and the grid's balance change against the flows computed independently:
    /// the grid gets `max(I-B,0) * r + max(S-E,0) * (r + ps) + max(B-I,0) * pl` and pays
    /// `(max(B-I,0) + max(E-S,0)) * f`; the participant gets its escrow back and the trade at the clearing price
    /// and pays the grid's net. Debt incurred or repaid moves between the two.
    function _settleAndCheckFlows(address a, uint64 slot, uint256 b, uint256 s) internal {
        IEnergyMarket.SlotInfo memory info = market.slotInfo(slot);
        int256 toGrid = _toGrid(a, slot, info, b, s);
        int256 trade = (int256(s) - int256(b)) * int256(info.clearingPricePerKWh / 1000);
        int256 released = int256(market.lockedOf(slot, a));
        int256 netA = _net(a);
        int256 netG = _net(grid);
        (, uint256 gridDebt) = market.accountOf(grid);

        address[] memory one = new address[](1);
        one[0] = a;
        market.settle(slot, one);

        // Net positions (free minus debt): what the participant owes the grid moves between the two, and so
        // does what the grid could not pay.
        if (_net(grid) - netG != toGrid) flowMismatches++;
        if (_net(a) - netA != released + trade - toGrid) flowMismatches++;
        (, uint256 gridDebt2) = market.accountOf(grid);
        if (gridDebt2 > gridDebt) gridDebtSettlements++;
    }

    /// `account`'s free balance minus its debt.
    function _net(address account) internal view returns (int256) {
        (uint256 free, uint256 debt) = market.accountOf(account);
        return int256(free) - int256(debt);
    }

    /// The grid's net receipt from settling `a` (see {_settleAndCheckFlows}); counts imbalances that paid.
    function _toGrid(address a, uint64 slot, IEnergyMarket.SlotInfo memory info, uint256 b, uint256 s)
        internal
        returns (int256 toGrid)
    {
        IEnergyMarket.Position memory p = market.positionOf(slot, a);
        IMeterReadings.SlotEnergy memory e = _energy(a, slot);
        {
            uint256 r = info.retailPerKWh;
            uint256 over = e.importWh > b ? e.importWh - b : 0;
            uint256 short = s > e.exportWh ? s - e.exportWh : 0;
            uint256 long = b > e.importWh ? b - e.importWh : 0;
            uint256 surplus = e.exportWh > s ? e.exportWh - s : 0;
            toGrid = int256((over * r + short * (r + p.shortPremiumPerKWh) + long * p.longPenaltyPerKWh) / 1000)
                - int256((long + surplus) * info.feedInPerKWh / 1000);
            // An imbalance never pays: the short seller's trade plus shortfall, the long buyer's trade plus
            // resale, are each a loss.
            if (short != 0 && short * info.clearingPricePerKWh >= short * (r + p.shortPremiumPerKWh)) {
                imbalanceProfits++;
            }
            if (long != 0 && long * (info.feedInPerKWh) >= long * (info.clearingPricePerKWh + p.longPenaltyPerKWh)) {
                imbalanceProfits++;
            }
        }
    }

    /// A batch that overlaps earlier settlements (a front-run, or a settler's retry): every participant in it
    /// whose position is already settled is skipped, and nothing changes for them.
    function resettle(uint256 who, uint256 slotSeed, uint256 count) external {
        uint64 slot = _slot(slotSeed);
        if (market.slotInfo(slot).status != IEnergyMarket.SlotStatus.Cleared) return;
        if (block.timestamp < market.settlementOpensAt(slot)) return;
        count = 1 + count % actors.length;
        address[] memory batch = new address[](count);
        uint256 n;
        for (uint256 k = 0; k < count; ++k) {
            address a = actors[(who % actors.length + k) % actors.length];
            if (market.positionOf(slot, a).settled || market.settledWithoutOrders(slot, a)) batch[n++] = a;
        }
        if (n == 0) return;
        assembly ("memory-safe") {
            mstore(batch, n)
        }
        uint256[] memory before = new uint256[](n);
        for (uint256 k = 0; k < n; ++k) {
            (before[k],) = market.accountOf(batch[k]);
        }
        (uint256 gridBefore,) = market.accountOf(grid);
        market.settle(slot, batch);
        for (uint256 k = 0; k < n; ++k) {
            (uint256 free,) = market.accountOf(batch[k]);
            if (free != before[k]) doubleSettlements++;
        }
        (uint256 gridAfter,) = market.accountOf(grid);
        if (gridAfter != gridBefore) doubleSettlements++;
        skippedBatches++;
        calls++;
    }

    /// The energy of the meter bound to `a` in `slot` (issue 14, part 4: not the meter bound now); zero if none.
    function _energy(address a, uint64 slot) internal view returns (IMeterReadings.SlotEnergy memory e) {
        address m = market.registry().meterAt(a, slot);
        if (m != address(0)) e = readings.energyInSlot(m, slot);
    }

    function _pos(int256 x) internal pure returns (int256) {
        return x > 0 ? x : int256(0);
    }
}
