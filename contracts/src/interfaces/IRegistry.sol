// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title IRegistry
/// @notice Participants, meter bindings, the delivery-slot schedule and grid prices of the P2P energy market.
/// @dev Units used throughout the system:
///      - energy: watt-hours (Wh), unsigned integers;
///      - prices: credit-token base units (1e-18 credit) per kilowatt-hour (kWh). Every price is a whole
///        multiple of 1000, so the cost of any whole number of Wh is an exact integer:
///        `cost = energyWh * pricePerKWh / 1000`;
///      - time: unix seconds; slot `k` covers `[startTime + k * slotLength, startTime + (k + 1) * slotLength)`.
interface IRegistry {
    /// @notice What a participant may do: consumers only buy, prosumers buy and sell.
    enum Role {
        None,
        Consumer,
        Prosumer
    }

    /// @notice One binding of a meter to a participant, in effect for slots `[fromSlot, untilSlot)`; `untilSlot` is
    ///         `type(uint48).max` while the binding lasts. In a meter's history `account` is the participant, in a
    ///         participant's history it is the meter.
    /// @dev One storage word. A change made during slot `k` (or before slot 0, then `k + 1 = 0`) takes effect from
    ///      slot `k + 1`: a slot's energy is one counter difference of one meter, so a slot is never split between
    ///      two bindings.
    struct Binding {
        address account;
        uint48 fromSlot;
        uint48 untilSlot;
    }

    /// @notice Grid prices for one slot, in credit base units per kWh.
    struct Prices {
        uint128 retailPerKWh;
        uint128 feedInPerKWh;
    }

    /// @notice What the operator reports about the microgrid for one delivered slot ({MicrogridReported}): what the
    ///         participants' meters cannot measure (curtailment, shed load, the community storage's state of charge)
    ///         and the flow at the point of common coupling (PCC), the community's one connection to the grid.
    /// @dev Only an event, no storage. Energy in Wh over the slot, power in W, each `uint32`.
    struct MicrogridReport {
        uint32 importWh; // energy imported at the PCC over the slot (islanded: drawn from the community's assets)
        uint32 exportWh; // energy exported at the PCC over the slot
        uint32 peakImportW; // highest one-minute import, W
        uint32 peakExportW; // highest one-minute export, W
        uint32 curtailedWh; // PV curtailed
        uint32 shedWh; // load shed (unserved energy)
        uint32 storageWh; // community storage's state of charge at the slot's end
        uint32 storageCapacityWh; // its capacity (0: no community storage)
        uint32 generatorWh; // dispatchable generation (genset) over the slot
    }

    error NoAdmins();
    error ZeroAddress();
    error InvalidRole();
    error InvalidSchedule(uint256 startTime, uint256 slotLength);
    error InvalidPriceTick(uint256 priceTick);
    error InvalidPrices(uint256 retailPerKWh, uint256 feedInPerKWh);
    error AlreadyRegistered(address account);
    error NotRegistered(address account);
    error MeterAlreadyBound(address meter, address participant);
    error MeterNotBound(address meter);
    error ParticipantHasMeter(address participant, address meter);
    /// @notice The slot a binding change would take effect from does not fit in 48 bits.
    error SlotTooLate(uint256 slot);
    error NoSlotPrices(uint64 slot);
    error RoleListenerAlreadySet(address listener);
    error InvalidOrderHorizon(uint256 horizon);
    /// @notice Imbalance prices must lie beyond the grid prices: both a non-zero multiple of the price tick of at
    ///         most `MAX_IMBALANCE_TICKS` ticks.
    error InvalidImbalancePrices(uint256 shortPremiumPerKWh, uint256 longPenaltyPerKWh);
    /// @notice While islanded, grid prices must lie within the island's band: `priceFloor <= feedInPerKWh` and
    ///         `retailPerKWh <= valueOfLostLoad`.
    error PricesOutsideIslandBand(uint256 retailPerKWh, uint256 feedInPerKWh);
    /// @notice The microgrid is connected to the grid already (nothing to reconnect).
    error NotIslanded();
    /// @notice `slot` has not ended yet: a microgrid report is for a delivered slot only.
    error SlotNotDelivered(uint64 slot);
    /// @notice The report's storage state of charge exceeds the storage capacity.
    error InvalidMicrogridReport();

    event RoleListenerSet(address indexed listener);
    event ParticipantRegistered(address indexed account, Role role);
    event ParticipantRemoved(address indexed account);
    /// @notice `meter` counts for `participant` from slot `fromSlot` on (the slot after the one the binding was made
    ///         in).
    event MeterBound(address indexed meter, address indexed participant, uint64 fromSlot);
    /// @notice `meter` counts for `participant` no more from slot `untilSlot` on (the slot after the one the
    ///         unbinding or removal was made in); the slots before stay billed to `participant`. `untilSlot` equal
    ///         to the binding's `fromSlot` means a binding cancelled before it took effect (dropped from the history).
    event MeterUnbound(address indexed meter, address indexed participant, uint64 untilSlot);
    event DefaultPricesSet(uint256 retailPerKWh, uint256 feedInPerKWh);
    event SlotPricesSet(uint64 indexed slot, uint256 retailPerKWh, uint256 feedInPerKWh);
    event SlotPricesCleared(uint64 indexed slot);
    event OrderHorizonSet(uint256 horizon);
    /// @notice The imbalance prices of slots opened from now on: a seller short of what it sold pays
    ///         `retail + shortPremiumPerKWh` per missing kWh; a buyer who used less than it bought receives
    ///         `feedIn - longPenaltyPerKWh` per unused kWh (it pays when that is negative).
    event ImbalancePricesSet(uint256 shortPremiumPerKWh, uint256 longPenaltyPerKWh);
    /// @notice `account`'s registered connection capacity (watts): it may bid for at most `importW * slotLength`
    ///         and ask for at most `exportW * slotLength` per slot.
    event CapacitySet(address indexed account, uint32 importW, uint32 exportW);
    /// @notice Capacity given to participants registered from now on (watts).
    event DefaultCapacitySet(uint32 importW, uint32 exportW);
    /// @notice The import and export limits (watts; `type(uint32).max`: none; 0: no flow that way) of the community's connection at the point of
    ///         common coupling.
    event ConnectionLimitsSet(uint32 importW, uint32 exportW);
    /// @notice The microgrid is islanded: grid prices must lie within `[floorPerKWh, vollPerKWh]` (the default prices
    ///         are set to that band, with a {DefaultPricesSet}).
    event IslandedSet(uint256 floorPerKWh, uint256 vollPerKWh);
    /// @notice The microgrid is connected to the grid again; the island's price band no longer applies.
    event GridConnectedSet();
    /// @notice The operator's report on the microgrid in delivered `slot`; a later report for the same slot replaces
    ///         an earlier one (readers take the last).
    event MicrogridReported(uint64 indexed slot, MicrogridReport report);

    /// @notice The role that administers participants, meters and prices.
    function OPERATOR_ROLE() external view returns (bytes32);

    /// @notice The contract told about every participant role and meter change (the market), or the zero address.
    function roleListener() external view returns (address);

    /// @notice Whether `account` holds the operator role.
    function isOperator(address account) external view returns (bool);

    /// @notice The role of `account` (`None` if not registered).
    function roleOf(address account) external view returns (Role);

    /// @notice The participant of `meter`'s latest binding while the meter's readings are still wanted: the binding
    ///         is in effect or pending, or it ended at most one slot ago (so the readings that close its last slot
    ///         can still arrive); else the zero address. `MeterReadings` accepts readings only while it is non-zero.
    function participantOf(address meter) external view returns (address);

    /// @notice The meter bound to `participant` now or from the next slot on (its open binding), or the zero address.
    function meterOf(address participant) external view returns (address);

    /// @notice The meter that counted for `participant` in `slot`, or the zero address (at most one per slot).
    function meterAt(address participant, uint64 slot) external view returns (address);

    /// @notice The participant `meter` counted for in `slot`, or the zero address.
    function participantAt(address meter, uint64 slot) external view returns (address);

    /// @notice `participant`'s latest binding (`account` = its meter), ended or not; zeros if it never had a meter.
    function latestBinding(address participant) external view returns (Binding memory);

    /// @notice Every binding `meter` ever had, oldest first (`account` = the participant).
    function meterBindings(address meter) external view returns (Binding[] memory);

    /// @notice Every binding `participant` ever had, oldest first (`account` = the meter).
    function participantBindings(address participant) external view returns (Binding[] memory);

    /// @notice How many accounts ever had a meter bound (see {meteredAccounts}).
    function meteredAccountCount() external view returns (uint256);

    /// @notice Up to `limit` accounts that ever had a meter bound, from index `offset`, in order of their first
    ///         binding: with {meterAt}, what a settler needs to list everyone metered in a slot.
    function meteredAccounts(uint256 offset, uint256 limit) external view returns (address[] memory);

    /// @notice Start of slot 0 (unix seconds).
    function startTime() external view returns (uint64);

    /// @notice Length of every slot in seconds.
    function slotLength() external view returns (uint32);

    /// @notice Granularity of limit prices, in credit base units per kWh (a multiple of 1000).
    function priceTick() external view returns (uint256);

    /// @notice How far ahead orders are accepted, in seconds: an order for a slot that starts later than
    ///         `block.timestamp + orderHorizon()` is refused (`EnergyMarket.BeyondHorizon`).
    function orderHorizon() external view returns (uint32);

    /// @notice The grid prices that apply to `slot` (its time-of-use override, else the default).
    function pricesAt(uint64 slot) external view returns (uint256 retailPerKWh, uint256 feedInPerKWh);

    /// @notice The imbalance premiums (credit base units per kWh) a slot gets when the operator opens it: a short
    ///         seller pays `retail + shortPremiumPerKWh` per kWh it sold but did not deliver, a long buyer pays
    ///         `longPenaltyPerKWh` per kWh it bought but did not use (on top of getting feed-in for it).
    function imbalancePrices() external view returns (uint256 shortPremiumPerKWh, uint256 longPenaltyPerKWh);

    /// @notice `account`'s connection capacity in watts (import bounds its bids, export its asks, per slot:
    ///         power times slot length).
    function capacityOf(address account) external view returns (uint32 importW, uint32 exportW);
}

/// @title IRoleListener
/// @notice Receives participant role and meter-binding changes from the {IRegistry} (the market caches both so
///         that orders and settlement need no registry call, and prepares a new participant's storage).
interface IRoleListener {
    /// @notice `account` now has `role` (`None` after removal).
    function onRoleChanged(address account, IRegistry.Role role) external;

    /// @notice `participant`'s latest binding is now `latest`, and `previous` the binding before it in the
    ///         participant's history, each packed as `meter | fromSlot << 160 | untilSlot << 208` (the meter for slots
    ///         `[fromSlot, untilSlot)`, `untilSlot` = `type(uint48).max` while it lasts; zero where there is none).
    ///         The listener may revert to refuse the change (the market's `BindingStillNeeded`); the registry's call
    ///         then reverts with it.
    function onMeterChanged(address participant, uint256 latest, uint256 previous) external;

    /// @notice The operator set the order horizon to `horizon` seconds.
    function onOrderHorizonChanged(uint32 horizon) external;

    /// @notice `account`'s connection capacity is now `importW` / `exportW` watts (zero after removal).
    function onCapacityChanged(address account, uint32 importW, uint32 exportW) external;
}
