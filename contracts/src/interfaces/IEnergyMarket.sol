// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IRegistry} from "./IRegistry.sol";

/// @title IEnergyMarket
/// @notice Escrow accounts, a double auction per delivery slot (its book is public), and metered settlement.
/// @dev Units: energy in Wh; prices in credit base units per kWh (multiples of 1000, on the registry's price
///      tick between the slot's feed-in tariff and retail price); money in credit base units.
interface IEnergyMarket {
    /// @notice How matched orders are priced.
    /// @dev `PayAsClear`: every match trades at the uniform clearing price.
    ///      `PayAsBid`: buyers pay their own limit price and sellers receive their own limit price; the
    ///      difference on matched energy (the bid-ask spread) goes to the grid operator's account.
    enum MarketMode {
        PayAsClear,
        PayAsBid
    }

    enum Side {
        Bid,
        Ask
    }

    /// @notice Life cycle of a slot's auction.
    enum SlotStatus {
        Empty,
        Open,
        Cleared
    }

    /// @notice Public view of a slot's auction state.
    struct SlotInfo {
        SlotStatus status;
        uint256 retailPerKWh;
        uint256 feedInPerKWh;
        uint256 clearingPricePerKWh;
        uint64 clearedWh;
        uint8 bidMarginalLevel;
        uint8 askMarginalLevel;
        uint8 clearingLevel;
        uint256 activeLevels;
        /// @notice While the slot is open: the short imbalance premium over retail its orders lock (per kWh).
        ///         Zero for a slot not yet open or already cleared (orders keep theirs: {positionOf}).
        uint256 shortPremiumPerKWh;
        /// @notice While the slot is open: the long imbalance penalty its bids lock (per kWh).
        uint256 longPenaltyPerKWh;
        /// @notice While the slot is open: the order horizon it was opened with (seconds).
        uint32 orderHorizon;
    }

    /// @notice One participant's orders in one slot (at most one bid and one ask).
    struct Position {
        uint32 bidWh;
        uint256 bidPricePerKWh;
        uint32 askWh;
        uint256 askPricePerKWh;
        bool settled;
        /// @notice The slot's short imbalance premium over retail the ask's collateral covers (per kWh).
        uint256 shortPremiumPerKWh;
        /// @notice The slot's long imbalance penalty the bid's escrow covers (per kWh).
        uint256 longPenaltyPerKWh;
    }

    /// @notice The money and energy of one participant's settlement in one slot.
    struct Settlement {
        uint64 boughtWh;
        uint64 soldWh;
        uint64 importWh;
        uint64 exportWh;
        uint256 credited;
        uint256 debited;
    }

    error ZeroAddress();
    error InvalidSchedule();
    error ZeroAmount();
    error ZeroEnergy();
    error NotParticipant(address account);
    error NotProsumer(address account);
    error GateClosed(uint64 slot);
    error GateOpen(uint64 slot);
    error PriceOutOfRange(uint256 pricePerKWh, uint256 feedInPerKWh, uint256 retailPerKWh);
    error PriceNotOnTick(uint256 pricePerKWh, uint256 tick);
    error OrderExists(uint64 slot, address account, Side side);
    error PositionSlotBusy(address account, uint64 unsettledSlot);
    error NoOrder(uint64 slot, address account, Side side);
    error InsufficientBalance(address account, uint256 needed, uint256 available);
    error OutstandingDebt(address account, uint256 debt);
    error BalanceOverflow(address account);
    error NotRegistry(address caller);
    error NotRoleListener();
    error NotOperator(address caller);
    error SlotAlreadyOpen(uint64 slot);
    /// @notice `slot` cannot be opened yet: its price-level words (set `slot % SLOT_RING`) still belong to `heldBy`,
    ///         which takes orders until its gate closure. The operator opens at most `SLOT_RING` slots ahead.
    error LevelWordsInUse(uint64 slot, uint64 heldBy);
    error NothingToClear(uint64 slot);
    error AlreadyCleared(uint64 slot);
    error SlotNotCleared(uint64 slot);
    error SettlementNotOpen(uint64 slot, uint256 opensAt);
    error NoPosition(uint64 slot, address account);
    error AlreadySettled(uint64 slot, address account);
    error SlotNotOpen(uint64 slot);
    error BeyondHorizon(uint64 slot, uint256 slotStart, uint256 horizon);
    /// @notice The order's volume is more than `account`'s registered capacity allows in one slot (import power
    ///         times slot length for a bid, export for an ask).
    error ExceedsCapacity(address account, Side side, uint256 energyWh, uint256 capacityWh);
    /// @notice Withdrawals wait while the grid account owes `debt` (feed-in it could not pay at settlement).
    error GridInDebt(uint256 debt);
    /// @notice The slot can no longer be settled for an account without orders in it: its settled-without-orders
    ///         record is kept for `POSITION_RING` slots (see {gridSettlementClosesAt}); used as a skip reason.
    error SettlementExpired(uint64 slot, address account);
    /// @notice `slot`'s words cannot be reclaimed before its settlement window closes at `closesAt` (see
    ///         {settlementClosesAt}).
    error SettlementWindowOpen(uint64 slot, uint256 closesAt);
    /// @notice `slot` has no words left to reclaim (never opened, or reclaimed already).
    error NothingToReclaim(uint64 slot);
    /// @notice The registry's binding change for `participant` would drop the market's copy of the binding that
    ///         bound `meter` to it in `slot`, and `slot` can still be settled for it (an unsettled position with
    ///         orders before {settlementClosesAt}, or a slot without orders not yet settled before
    ///         {gridSettlementClosesAt}). Settle `participant` in `slot` first (anyone can, from
    ///         {settlementOpensAt}`(slot)`), then retry the change. Raised through the registry's `bindMeter`.
    error BindingStillNeeded(address participant, uint64 slot, address meter);

    event RoleSynced(address indexed account, IRegistry.Role role);
    /// @notice The market created `words` position words of `account` (its ring) ahead of its orders.
    event PositionsInitialised(address indexed account, uint256 words);
    /// @notice The market's copy of `participant`'s latest meter binding and of the one before it, each packed as
    ///         `meter | fromSlot << 160 | untilSlot << 208` (the meter for slots `[fromSlot, untilSlot)`, `untilSlot`
    ///         = 2^48 - 1 while open; zero: none).
    event MeterSynced(address indexed participant, uint256 latest, uint256 previous);
    /// @notice Settling `slot` the grid account owed `amount` more feed-in than it had; the rest was credited to the
    ///         participants anyway and recorded as the grid account's debt, repaid from its next credits.
    event GridDebtIncurred(uint64 indexed slot, uint256 amount);
    event Deposited(address indexed account, address indexed from, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event DebtIncurred(address indexed account, uint256 amount);
    event DebtRepaid(address indexed account, uint256 amount);
    /// @notice The operator opened `slot` and fixed its terms: grid prices, imbalance premiums (per kWh) and the
    ///         order horizon (seconds: orders are accepted from `slotStart - orderHorizon`).
    event SlotOpened(
        uint64 indexed slot,
        uint256 retailPerKWh,
        uint256 feedInPerKWh,
        uint256 shortPremiumPerKWh,
        uint256 longPenaltyPerKWh,
        uint256 orderHorizon
    );
    /// @notice The market's copy of `account`'s capacity: at most `importWh` Wh bid and `exportWh` Wh asked per
    ///         slot.
    event CapacitySynced(address indexed account, uint256 importWh, uint256 exportWh);
    /// @notice The market's copy of the registry's order horizon (seconds) is now `horizon`.
    event OrderHorizonSynced(uint256 horizon);
    /// @notice `settle` left `account` out of the batch; `reason` is the selector of the matching error:
    ///         `AlreadySettled`, `NoPosition` (neither orders nor a meter in the slot) or `SettlementExpired`.
    event SettlementSkipped(uint64 indexed slot, address indexed account, bytes4 reason);
    /// @notice `account`'s position with orders in `slot` (`bidWh` bought at most, `askWh` sold at most) was not
    ///         settled before the slot's settlement window closed ({settlementClosesAt}): it is closed without a
    ///         settlement, its escrow and collateral are forfeited (they stay in the market, backing what the
    ///         position owed its counterparties), and its position word is free again.
    event PositionExpired(uint64 indexed slot, address indexed account, uint32 bidWh, uint32 askWh);
    /// @notice `slot`'s header and cleared-volume words were deleted: its settlement window has closed, so nothing
    ///         reads them any more. {slotInfo} reports the slot as `Empty` from now on (the events keep its result).
    event SlotWordsReclaimed(uint64 indexed slot);
    event OrderPlaced(
        uint64 indexed slot, address indexed account, Side side, uint256 pricePerKWh, uint32 energyWh, uint256 locked
    );
    event OrderCancelled(uint64 indexed slot, address indexed account, Side side, uint32 energyWh, uint256 refunded);
    event SlotCleared(
        uint64 indexed slot,
        uint256 clearingPricePerKWh,
        uint64 clearedWh,
        uint256 bidMarginalPricePerKWh,
        uint256 askMarginalPricePerKWh
    );
    event ParticipantSettled(
        uint64 indexed slot,
        address indexed account,
        uint64 boughtWh,
        uint64 soldWh,
        uint64 importWh,
        uint64 exportWh,
        uint256 credited,
        uint256 debited
    );

    /// @notice Deposits `amount` credits from the caller into the caller's market account.
    function deposit(uint256 amount) external;

    /// @notice Places a bid (buy) for `energyWh` in `slot` at limit `pricePerKWh`; escrows the maximum cost and the
    ///         long imbalance penalty.
    function placeBid(uint64 slot, uint32 energyWh, uint256 pricePerKWh) external;

    /// @notice Places an ask (sell) for `energyWh` in `slot` at limit `pricePerKWh`; locks collateral for buying
    ///         it all back at the short imbalance price.
    function placeAsk(uint64 slot, uint32 energyWh, uint256 pricePerKWh) external;

    /// @notice Opens `slot` ahead of its first order (operator keeper): snapshots its grid prices and creates
    ///         its price-level words, so that no order in the slot creates storage.
    function openSlot(uint64 slot) external;

    /// @notice Cancels the caller's order on `side` in `slot` before gate closure and returns its escrow.
    function cancelOrder(uint64 slot, Side side) external;

    /// @notice Clears `slot` after gate closure (anyone may call).
    function clear(uint64 slot) external;

    /// @notice Settles `participants` in `slot` after the slot's end plus the grace period (anyone may call); from
    ///         {settlementClosesAt} on it closes their positions with orders as expired instead ({PositionExpired}).
    function settle(uint64 slot, address[] calldata participants) external;

    /// @notice Until when positions with orders in `slot` can be settled (unix seconds, exclusive): the settlement
    ///         opening of slot `slot + SETTLEMENT_WINDOW`. Later, a position left unsettled is closed as expired.
    function settlementClosesAt(uint64 slot) external view returns (uint256);

    /// @notice Deletes `slot`'s header and cleared-volume words once its settlement window has closed (anyone may
    ///         call; {openSlot} does it for slot `slot - SLOT_WORDS_KEPT`).
    function reclaimSlot(uint64 slot) external;
}
