// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IRegistry, IRoleListener} from "./interfaces/IRegistry.sol";

/// @title Registry
/// @notice Who may trade, which meter speaks for whom, when slots start and what the grid charges.
/// @dev Operators (accounts with `OPERATOR_ROLE`, set at deployment) register and remove participants,
///      bind meters and set grid prices. Accounts with `DEFAULT_ADMIN_ROLE` (the same list at deployment)
///      can grant and revoke operator rights later. See {IRegistry} for units.
contract Registry is IRegistry, AccessControl {
    /// @inheritdoc IRegistry
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");

    /// @notice Most price levels a slot may have: `(retail - feedIn) / priceTick <= MAX_LEVEL`.
    uint256 public constant MAX_LEVEL = 255;
    /// @notice Order horizon at deployment: one day (see {setOrderHorizon}).
    uint32 public constant DEFAULT_ORDER_HORIZON = 1 days;
    /// @notice Shortest accepted slot length in seconds.
    uint32 public constant MIN_SLOT_LENGTH = 5;
    /// @notice Imbalance premiums at deployment, in price ticks (0.05 credit/kWh at a 0.001 tick): see
    ///         {setImbalancePrices}.
    uint256 public constant DEFAULT_IMBALANCE_TICKS = 50;
    /// @notice Largest imbalance premium, in price ticks (the market keeps it in 16 bits of each position).
    uint256 public constant MAX_IMBALANCE_TICKS = type(uint16).max;
    /// @notice Import and export capacity of a participant registered before the operator sets another default
    ///         ({setDefaultCapacity}): 25 kW, a three-phase 40 A household connection.
    uint32 public constant DEFAULT_CAPACITY_W = 25_000;
    /// @notice A PCC limit meaning "no limit" (the deployment's value). Zero is a real limit: many connections
    ///         may not export at all.
    uint32 public constant NO_CONNECTION_LIMIT = type(uint32).max;

    /// @inheritdoc IRegistry
    uint64 public immutable startTime;
    /// @inheritdoc IRegistry
    uint32 public immutable slotLength;
    /// @inheritdoc IRegistry
    uint256 public immutable priceTick;

    /// @inheritdoc IRegistry
    mapping(address account => Role) public roleOf;
    /// @notice `untilSlot` of a binding that has not ended.
    uint48 public constant OPEN = type(uint48).max;

    /// @dev Each meter's bindings, oldest first (`account` = participant); at most one open, the last.
    mapping(address meter => Binding[]) private _meterBindings;
    /// @dev Each participant's bindings, oldest first (`account` = meter); at most one open, the last.
    mapping(address participant => Binding[]) private _participantBindings;
    /// @dev Every account that ever had a meter bound, in order of its first binding.
    address[] private _metered;
    mapping(address account => bool) private _isMetered;

    /// @inheritdoc IRegistry
    address public roleListener;

    /// @inheritdoc IRegistry
    uint32 public orderHorizon;

    /// @notice Short imbalance premium over retail, credit base units per kWh ({setImbalancePrices}).
    uint256 public imbalanceShortPremium;
    /// @notice Long imbalance penalty below feed-in, credit base units per kWh ({setImbalancePrices}).
    uint256 public imbalanceLongPenalty;

    /// @notice A participant's connection capacity in watts.
    struct Capacity {
        uint32 importW;
        uint32 exportW;
    }

    /// @inheritdoc IRegistry
    mapping(address account => Capacity) public capacityOf;
    /// @notice Capacity given to each participant at registration (see {setDefaultCapacity}).
    Capacity public defaultCapacity;

    /// @notice Prices used for slots without a time-of-use override.
    Prices public defaultPrices;
    mapping(uint64 slot => Prices) private _slotPrices;

    /// @notice Import limit of the community's connection at the point of common coupling (PCC), watts;
    ///         {NO_CONNECTION_LIMIT} (as at deployment) for none, 0 for a connection that may not import
    ///         ({setConnectionLimits}).
    uint32 public pccImportLimitW;
    /// @notice Export limit of the community's connection at the PCC, watts; {NO_CONNECTION_LIMIT} for none, 0 for
    ///         a zero-export connection ({setConnectionLimits}).
    uint32 public pccExportLimitW;
    /// @notice Whether the microgrid runs islanded, without the grid ({setIslanded}, {setGridConnected}).
    bool public islanded;
    /// @notice While islanded, the lowest feed-in price (credit base units per kWh); 0 when grid-connected.
    uint256 public priceFloor;
    /// @notice While islanded, the value of lost load: the highest retail price (credit base units per kWh); 0 when
    ///         grid-connected.
    uint256 public valueOfLostLoad;

    /// @param admins Accounts that receive both `DEFAULT_ADMIN_ROLE` and `OPERATOR_ROLE` (at least one).
    /// @param startTime_ Unix time at which slot 0 starts.
    /// @param slotLength_ Slot length in seconds (900 = 15 minutes), at least 5 (short slots serve
    ///        simulations that compress a day into minutes).
    /// @param priceTick_ Limit-price granularity in credit base units per kWh; a non-zero multiple of 1000.
    /// @param retailPerKWh Default retail price (grid sells), credit base units per kWh.
    /// @param feedInPerKWh Default feed-in tariff (grid buys), credit base units per kWh.
    constructor(
        address[] memory admins,
        uint64 startTime_,
        uint32 slotLength_,
        uint256 priceTick_,
        uint256 retailPerKWh,
        uint256 feedInPerKWh
    ) {
        if (admins.length == 0) revert NoAdmins();
        if (slotLength_ < MIN_SLOT_LENGTH) revert InvalidSchedule(startTime_, slotLength_);
        if (priceTick_ == 0 || priceTick_ % 1000 != 0 || priceTick_ > type(uint64).max) {
            revert InvalidPriceTick(priceTick_);
        }
        startTime = startTime_;
        slotLength = slotLength_;
        priceTick = priceTick_;
        for (uint256 i = 0; i < admins.length; ++i) {
            if (admins[i] == address(0)) revert ZeroAddress();
            _grantRole(DEFAULT_ADMIN_ROLE, admins[i]);
            _grantRole(OPERATOR_ROLE, admins[i]);
        }
        _checkPrices(retailPerKWh, feedInPerKWh);
        defaultPrices = Prices(uint128(retailPerKWh), uint128(feedInPerKWh));
        emit DefaultPricesSet(retailPerKWh, feedInPerKWh);
        orderHorizon = DEFAULT_ORDER_HORIZON;
        emit OrderHorizonSet(DEFAULT_ORDER_HORIZON);
        uint256 premium = DEFAULT_IMBALANCE_TICKS * priceTick_;
        (imbalanceShortPremium, imbalanceLongPenalty) = (premium, premium);
        emit ImbalancePricesSet(premium, premium);
        defaultCapacity = Capacity(DEFAULT_CAPACITY_W, DEFAULT_CAPACITY_W);
        emit DefaultCapacitySet(DEFAULT_CAPACITY_W, DEFAULT_CAPACITY_W);
        (pccImportLimitW, pccExportLimitW) = (NO_CONNECTION_LIMIT, NO_CONNECTION_LIMIT);
        emit ConnectionLimitsSet(NO_CONNECTION_LIMIT, NO_CONNECTION_LIMIT);
    }

    // ------------------------------------------------------------------ participants

    /// @notice Sets, once, the contract told about every later role and meter-binding change (the
    ///         {EnergyMarket}, which caches roles and meters so that orders and settlement need no call to the
    ///         registry, and creates a new participant's position storage when it is registered).
    /// @dev Admin only (`DEFAULT_ADMIN_ROLE`). Set it before registering participants; accounts registered
    ///      earlier can be synced with `EnergyMarket.syncRole`. With the market as listener, registering a
    ///      participant costs about 1.5M gas (the market creates the 64 storage words of its positions; the
    ///      chain charges no gas fees), well within the 16,777,216 per-transaction cap.
    function setRoleListener(address listener) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (listener == address(0)) revert ZeroAddress();
        if (roleListener != address(0)) revert RoleListenerAlreadySet(roleListener);
        roleListener = listener;
        emit RoleListenerSet(listener);
    }

    /// @notice Registers `account` as a participant with `role` (`Consumer` or `Prosumer`) and the default
    ///         connection capacity ({defaultCapacity}; change it with {setCapacity}).
    /// @dev Operator only. Reverts with {AlreadyRegistered} if the account is registered. Tells the role
    ///      listener ({IRoleListener-onRoleChanged}), which creates the participant's position storage the first
    ///      time (see {setRoleListener}), and its capacity ({IRoleListener-onCapacityChanged}).
    function registerParticipant(address account, Role role) external onlyRole(OPERATOR_ROLE) {
        if (account == address(0)) revert ZeroAddress();
        if (role == Role.None) revert InvalidRole();
        if (roleOf[account] != Role.None) revert AlreadyRegistered(account);
        roleOf[account] = role;
        Capacity memory cap = defaultCapacity;
        capacityOf[account] = cap;
        emit ParticipantRegistered(account, role);
        emit CapacitySet(account, cap.importW, cap.exportW);
        _notify(account, role);
        _notifyCapacity(account, cap);
    }

    /// @notice Sets `account`'s connection capacity in watts: per slot it may bid for at most
    ///         `importW * slotLength / 3600` Wh and ask for at most `exportW * slotLength / 3600` Wh.
    /// @dev Operator only, for a registered participant. Why: an order's volume is a claim on the auction's
    ///      pro-rata share; bounded by what the connection can physically carry, no account can inflate its
    ///      order to crowd out others with volume it could never deliver or take. Applies to orders placed from
    ///      now on. Tells the role listener. Emits {CapacitySet}.
    function setCapacity(address account, uint32 importW, uint32 exportW) external onlyRole(OPERATOR_ROLE) {
        if (roleOf[account] == Role.None) revert NotRegistered(account);
        Capacity memory cap = Capacity(importW, exportW);
        capacityOf[account] = cap;
        emit CapacitySet(account, importW, exportW);
        _notifyCapacity(account, cap);
    }

    /// @notice Sets the capacity given to participants registered from now on (watts).
    /// @dev Operator only. Does not change registered participants ({setCapacity}). Emits {DefaultCapacitySet}.
    function setDefaultCapacity(uint32 importW, uint32 exportW) external onlyRole(OPERATOR_ROLE) {
        defaultCapacity = Capacity(importW, exportW);
        emit DefaultCapacitySet(importW, exportW);
    }

    /// @notice Removes participant `account` and unbinds its meter, if any, from the next slot on.
    /// @dev Operator only. Orders already placed stay valid and are settled normally; new orders are refused. The
    ///      meter's binding ends like {unbindMeter}'s: the slots up to and including the current one stay billed
    ///      to `account` (removal never cancels obligations already incurred). Tells the role listener about the
    ///      ended binding and the removed role.
    function removeParticipant(address account) external onlyRole(OPERATOR_ROLE) {
        if (roleOf[account] == Role.None) revert NotRegistered(account);
        delete roleOf[account];
        delete capacityOf[account];
        address meter = meterOf(account);
        if (meter != address(0)) _unbind(meter, account);
        emit ParticipantRemoved(account);
        emit CapacitySet(account, 0, 0);
        if (meter != address(0)) _notifyMeter(account);
        _notify(account, Role.None);
        _notifyCapacity(account, Capacity(0, 0));
    }

    // ------------------------------------------------------------------ meters

    /// @notice Binds `meter` (the address of the meter's signing key) to registered `participant` from the next
    ///         slot on (from slot 0 before the schedule starts).
    /// @dev Operator only. A meter has at most one open binding, and a participant at most one open binding (one
    ///      meter per slot: the meter at its connection point, see the README). Why from the next slot: a slot's
    ///      energy is the difference of one meter's counters over the whole slot, so the slot being delivered when
    ///      the change is made stays with the binding it started with; a meter swap mid-day then bills every slot
    ///      up to the swap to the old meter and every later slot to the new one. Records the binding in both
    ///      histories, emits {MeterBound} with the first slot and tells the role listener
    ///      ({IRoleListener-onMeterChanged}). The market (the listener) refuses the binding, and this reverts with its
    ///      `BindingStillNeeded(participant, slot, meter)`, while it would drop the market's copy of an older binding
    ///      of `participant` that a slot which can still be settled needs: settle the participant in that slot first
    ///      (anyone can, once the slot's settlement opens), then retry. Unbinding and removal are never refused.
    function bindMeter(address meter, address participant) external onlyRole(OPERATOR_ROLE) {
        if (meter == address(0)) revert ZeroAddress();
        if (roleOf[participant] == Role.None) revert NotRegistered(participant);
        Binding[] storage mh = _meterBindings[meter];
        if (mh.length != 0 && mh[mh.length - 1].untilSlot == OPEN) {
            revert MeterAlreadyBound(meter, mh[mh.length - 1].account);
        }
        Binding[] storage ph = _participantBindings[participant];
        if (ph.length != 0 && ph[ph.length - 1].untilSlot == OPEN) {
            revert ParticipantHasMeter(participant, ph[ph.length - 1].account);
        }
        uint48 from = _changeSlot();
        mh.push(Binding(participant, from, OPEN));
        ph.push(Binding(meter, from, OPEN));
        if (!_isMetered[participant]) {
            _isMetered[participant] = true;
            _metered.push(participant);
        }
        emit MeterBound(meter, participant, from);
        _notifyMeter(participant);
    }

    /// @notice Unbinds `meter` from its participant from the next slot on; the slots before stay billed to that
    ///         participant (see {bindMeter} for why). A binding that has not taken effect yet is dropped.
    /// @dev Operator only. The meter's readings are still accepted during the rest of the current slot and the next
    ///      one ({participantOf}), so the readings that close its last slot can arrive. Emits {MeterUnbound} and
    ///      tells the role listener the participant's latest binding.
    function unbindMeter(address meter) external onlyRole(OPERATOR_ROLE) {
        Binding[] storage mh = _meterBindings[meter];
        if (mh.length == 0 || mh[mh.length - 1].untilSlot != OPEN) revert MeterNotBound(meter);
        address participant = mh[mh.length - 1].account;
        _unbind(meter, participant);
        _notifyMeter(participant);
    }

    // ------------------------------------------------------------------ prices

    /// @notice Sets the default grid prices (credit base units per kWh) for slots without an override.
    /// @dev Operator only. `feedIn <= retail`, both multiples of 1000, `retail - feedIn` a multiple of
    ///      {priceTick} and at most `MAX_LEVEL` ticks. The market snapshots a slot's prices when the operator's
    ///      keeper opens it (`EnergyMarket.openSlot`); later changes do not apply to an open slot.
    ///      While islanded ({setIslanded}) they must also lie within the island's band, `priceFloor <= feedIn` and
    ///      `retail <= valueOfLostLoad`, else {PricesOutsideIslandBand}.
    function setDefaultPrices(uint256 retailPerKWh, uint256 feedInPerKWh) external onlyRole(OPERATOR_ROLE) {
        _checkPrices(retailPerKWh, feedInPerKWh);
        _checkIslandBand(retailPerKWh, feedInPerKWh);
        defaultPrices = Prices(uint128(retailPerKWh), uint128(feedInPerKWh));
        emit DefaultPricesSet(retailPerKWh, feedInPerKWh);
    }

    /// @notice Sets time-of-use grid prices for one `slot` (same rules as {setDefaultPrices}, including the island's
    ///         band while islanded).
    /// @dev Operator only. Applies when the operator's keeper opens the slot (`EnergyMarket.openSlot`); has no
    ///      effect on a slot that is already open. Orders cannot open a slot, so nobody else can freeze its prices.
    ///      The operator's keeper also uses it for scarcity and surplus prices in slots whose forecast flow at the
    ///      point of common coupling exceeds {pccImportLimitW} or {pccExportLimitW}.
    function setSlotPrices(uint64 slot, uint256 retailPerKWh, uint256 feedInPerKWh) external onlyRole(OPERATOR_ROLE) {
        _checkPrices(retailPerKWh, feedInPerKWh);
        _checkIslandBand(retailPerKWh, feedInPerKWh);
        _slotPrices[slot] = Prices(uint128(retailPerKWh), uint128(feedInPerKWh));
        emit SlotPricesSet(slot, retailPerKWh, feedInPerKWh);
    }

    /// @notice Removes the time-of-use override of `slot`, so the default prices apply again.
    /// @dev Operator only. Reverts with {NoSlotPrices} if there is no override.
    function clearSlotPrices(uint64 slot) external onlyRole(OPERATOR_ROLE) {
        if (_slotPrices[slot].retailPerKWh == 0) revert NoSlotPrices(slot);
        delete _slotPrices[slot];
        emit SlotPricesCleared(slot);
    }

    // ------------------------------------------------------------------ microgrid

    /// @notice Sets the import and export limits (watts; {NO_CONNECTION_LIMIT}: none; 0: no flow that way) of the community's one connection to the grid
    ///         at the point of common coupling (PCC): its rating.
    /// @dev Operator only. Informational: the operator's keeper (or the simulator) reads them to price slots whose
    ///      forecast PCC flow exceeds them (scarcity or surplus prices with {setSlotPrices}), and the dApp shows the
    ///      PCC flow against them. The market does not enforce them: settlement is metered, and metered flows never
    ///      exceed what the connection physically carries. Emits {ConnectionLimitsSet}.
    function setConnectionLimits(uint32 importW, uint32 exportW) external onlyRole(OPERATOR_ROLE) {
        (pccImportLimitW, pccExportLimitW) = (importW, exportW);
        emit ConnectionLimitsSet(importW, exportW);
    }

    /// @notice Marks the microgrid islanded (no grid) with the price band `[floorPerKWh, vollPerKWh]` (credit base
    ///         units per kWh), and makes the band the default prices: retail = the value of lost load, feed-in = the
    ///         floor.
    /// @dev Operator only; also while islanded (a new band). The pair is checked as grid prices are
    ///      ({setDefaultPrices}: `floor <= voll`, multiples of 1000, `voll - floor` a multiple of {priceTick} and at
    ///      most `MAX_LEVEL` ticks, `voll` at most 64 bits), else {InvalidPrices}`(voll, floor)`; so a value of lost
    ///      load of several credits per kWh needs a registry deployed with a coarse enough price tick (at 0.001
    ///      credit/kWh the band is at most 0.255 credit/kWh wide). Islanded, the market's grid account stands for the
    ///      community's balancing account, whose counterparties are the community's own assets (battery, genset, PV
    ///      plant) registered as metered participants; retail is what unbought import costs (energy the community
    ///      had to find at any price) and feed-in the least surplus earns. Until {setGridConnected},
    ///      {setDefaultPrices} and {setSlotPrices} keep prices within the band ({PricesOutsideIslandBand});
    ///      time-of-use overrides set before are not re-checked (clear them with {clearSlotPrices}), and a slot
    ///      already opened keeps its prices. Emits {IslandedSet} and {DefaultPricesSet}.
    function setIslanded(uint256 floorPerKWh, uint256 vollPerKWh) external onlyRole(OPERATOR_ROLE) {
        _checkPrices(vollPerKWh, floorPerKWh);
        islanded = true;
        (priceFloor, valueOfLostLoad) = (floorPerKWh, vollPerKWh);
        defaultPrices = Prices(uint128(vollPerKWh), uint128(floorPerKWh));
        emit IslandedSet(floorPerKWh, vollPerKWh);
        emit DefaultPricesSet(vollPerKWh, floorPerKWh);
    }

    /// @notice Marks the microgrid connected to the grid again and clears the island's price band.
    /// @dev Operator only; reverts with {NotIslanded} if it is not islanded. The default prices stay as they are
    ///      (the band's): the operator sets the grid's prices next ({setDefaultPrices}). Emits {GridConnectedSet}.
    function setGridConnected() external onlyRole(OPERATOR_ROLE) {
        if (!islanded) revert NotIslanded();
        islanded = false;
        (priceFloor, valueOfLostLoad) = (0, 0);
        emit GridConnectedSet();
    }

    /// @notice Reports what the meters cannot measure about the microgrid in delivered `slot`: the flow at the
    ///         point of common coupling, curtailed PV, shed load, the community storage's state of charge and the
    ///         genset's generation ({MicrogridReport}).
    /// @dev Operator only. Only an event ({MicrogridReported}), no storage. `slot` must have ended:
    ///      `block.timestamp >= startTime + (slot + 1) * slotLength`, else {SlotNotDelivered}; `storageWh` at most
    ///      `storageCapacityWh`, else {InvalidMicrogridReport}. A later report for the same slot replaces an earlier
    ///      one for readers (they take the last).
    function reportMicrogrid(uint64 slot, MicrogridReport calldata report) external onlyRole(OPERATOR_ROLE) {
        if (block.timestamp < uint256(startTime) + (uint256(slot) + 1) * slotLength) revert SlotNotDelivered(slot);
        if (report.storageWh > report.storageCapacityWh) revert InvalidMicrogridReport();
        emit MicrogridReported(slot, report);
    }

    // ------------------------------------------------------------------ order horizon

    /// @notice Sets how far ahead the market accepts orders: only for slots starting at most `horizon` seconds
    ///         from now.
    /// @dev Operator only. Non-zero. Tells the role listener ({IRoleListener-onOrderHorizonChanged}), which
    ///      keeps a copy so that an order needs no registry call. Why a horizon: without it one account could
    ///      lock the ring words of its positions (and the operator's keeper work) in slots far ahead; with it,
    ///      orders reach only slots the keeper opens in the normal course. Emits {OrderHorizonSet}.
    function setOrderHorizon(uint32 horizon) external onlyRole(OPERATOR_ROLE) {
        if (horizon == 0) revert InvalidOrderHorizon(horizon);
        orderHorizon = horizon;
        emit OrderHorizonSet(horizon);
        address listener = roleListener;
        if (listener != address(0)) IRoleListener(listener).onOrderHorizonChanged(horizon);
    }

    // ------------------------------------------------------------------ imbalance

    /// @notice Sets the imbalance premiums of slots opened from now on (credit base units per kWh): a seller who
    ///         delivers less than it sold buys the missing energy at `retail + shortPremiumPerKWh`; a buyer who uses
    ///         less than it bought gets feed-in for the rest and pays `longPenaltyPerKWh` per unused kWh.
    /// @dev Operator only. Both non-zero multiples of {priceTick}, at most {MAX_IMBALANCE_TICKS} ticks. Why: if
    ///      not delivering cost exactly what the trade earned (retail for a short seller, feed-in for a long
    ///      buyer), declaring volume one cannot deliver or take would be free and would take the pro-rata fill of
    ///      those who really deliver; beyond the grid prices, an imbalance always costs more than the trade paid.
    ///      The market snapshots them when the operator opens a slot and locks each order's worst case with them.
    ///      Emits {ImbalancePricesSet}.
    function setImbalancePrices(uint256 shortPremiumPerKWh, uint256 longPenaltyPerKWh)
        external
        onlyRole(OPERATOR_ROLE)
    {
        uint256 tick = priceTick;
        if (
            shortPremiumPerKWh == 0 || longPenaltyPerKWh == 0 || shortPremiumPerKWh % tick != 0
                || longPenaltyPerKWh % tick != 0 || shortPremiumPerKWh / tick > MAX_IMBALANCE_TICKS
                || longPenaltyPerKWh / tick > MAX_IMBALANCE_TICKS
        ) revert InvalidImbalancePrices(shortPremiumPerKWh, longPenaltyPerKWh);
        (imbalanceShortPremium, imbalanceLongPenalty) = (shortPremiumPerKWh, longPenaltyPerKWh);
        emit ImbalancePricesSet(shortPremiumPerKWh, longPenaltyPerKWh);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IRegistry
    function imbalancePrices() external view returns (uint256 shortPremiumPerKWh, uint256 longPenaltyPerKWh) {
        return (imbalanceShortPremium, imbalanceLongPenalty);
    }

    /// @inheritdoc IRegistry
    function pricesAt(uint64 slot) external view returns (uint256 retailPerKWh, uint256 feedInPerKWh) {
        Prices memory p = _slotPrices[slot];
        if (p.retailPerKWh == 0) p = defaultPrices;
        return (p.retailPerKWh, p.feedInPerKWh);
    }

    /// @notice The time-of-use override of `slot` (zeros if none).
    function slotPrices(uint64 slot) external view returns (uint256 retailPerKWh, uint256 feedInPerKWh) {
        Prices memory p = _slotPrices[slot];
        return (p.retailPerKWh, p.feedInPerKWh);
    }

    /// @inheritdoc IRegistry
    function isOperator(address account) external view returns (bool) {
        return hasRole(OPERATOR_ROLE, account);
    }

    /// @inheritdoc IRegistry
    function participantOf(address meter) external view returns (address) {
        Binding[] storage mh = _meterBindings[meter];
        if (mh.length == 0) return address(0);
        Binding memory b = mh[mh.length - 1];
        // Readings wanted while the binding is open, and for one slot after the last slot it covers.
        return b.untilSlot == OPEN || _changeSlot() <= uint256(b.untilSlot) + 1 ? b.account : address(0);
    }

    /// @inheritdoc IRegistry
    function meterOf(address participant) public view returns (address) {
        Binding[] storage ph = _participantBindings[participant];
        if (ph.length == 0) return address(0);
        Binding memory b = ph[ph.length - 1];
        return b.untilSlot == OPEN ? b.account : address(0);
    }

    /// @inheritdoc IRegistry
    function meterAt(address participant, uint64 slot) external view returns (address) {
        return _at(_participantBindings[participant], slot);
    }

    /// @inheritdoc IRegistry
    function participantAt(address meter, uint64 slot) external view returns (address) {
        return _at(_meterBindings[meter], slot);
    }

    /// @inheritdoc IRegistry
    function latestBinding(address participant) external view returns (Binding memory b) {
        Binding[] storage ph = _participantBindings[participant];
        if (ph.length != 0) b = ph[ph.length - 1];
    }

    /// @inheritdoc IRegistry
    function meterBindings(address meter) external view returns (Binding[] memory) {
        return _meterBindings[meter];
    }

    /// @inheritdoc IRegistry
    function participantBindings(address participant) external view returns (Binding[] memory) {
        return _participantBindings[participant];
    }

    /// @inheritdoc IRegistry
    function meteredAccountCount() external view returns (uint256) {
        return _metered.length;
    }

    /// @inheritdoc IRegistry
    function meteredAccounts(uint256 offset, uint256 limit) external view returns (address[] memory list) {
        uint256 n = _metered.length;
        uint256 end = offset >= n ? offset : (limit > n - offset ? n : offset + limit);
        list = new address[](end - offset);
        for (uint256 i = offset; i < end; ++i) {
            list[i - offset] = _metered[i];
        }
    }

    /// @dev The slot a binding change made now takes effect from: the one after the current slot, or slot 0 before
    ///      the schedule starts.
    function _changeSlot() private view returns (uint48) {
        if (block.timestamp < startTime) return 0;
        uint256 slot = (block.timestamp - startTime) / slotLength + 1;
        if (slot >= OPEN) revert SlotTooLate(slot);
        return uint48(slot);
    }

    /// @dev The `account` of the binding in `history` (sorted by `fromSlot`, not overlapping) that covers `slot`:
    ///      the newest is checked first, then a binary search.
    function _at(Binding[] storage history, uint64 slot) private view returns (address) {
        uint256 hi = history.length;
        if (hi == 0) return address(0);
        Binding memory b = history[hi - 1];
        if (slot < b.fromSlot) {
            // The last binding starting at or before `slot`, if any: history[lo - 1] after the search.
            uint256 lo = 0;
            --hi;
            while (lo < hi) {
                uint256 mid = (lo + hi) / 2;
                if (history[mid].fromSlot <= slot) lo = mid + 1;
                else hi = mid;
            }
            if (lo == 0) return address(0);
            b = history[lo - 1];
        }
        return slot < b.untilSlot ? b.account : address(0);
    }

    /// @dev Ends the open binding of `meter` to `participant` (the last entry of both histories) from the next slot
    ///      on; drops it if it had not taken effect yet. Emits {MeterUnbound}.
    function _unbind(address meter, address participant) private {
        Binding[] storage mh = _meterBindings[meter];
        Binding[] storage ph = _participantBindings[participant];
        uint48 until = _changeSlot();
        uint48 from = mh[mh.length - 1].fromSlot;
        if (until <= from) {
            // Bound and unbound in the same slot: the binding never covered a slot.
            mh.pop();
            ph.pop();
            until = from;
        } else {
            mh[mh.length - 1].untilSlot = until;
            ph[ph.length - 1].untilSlot = until;
        }
        emit MeterUnbound(meter, participant, until);
    }

    function _notify(address account, Role role) private {
        address listener = roleListener;
        if (listener != address(0)) IRoleListener(listener).onRoleChanged(account, role);
    }

    function _notifyCapacity(address account, Capacity memory cap) private {
        address listener = roleListener;
        if (listener != address(0)) IRoleListener(listener).onCapacityChanged(account, cap.importW, cap.exportW);
    }

    /// @dev Tells the role listener `participant`'s latest binding and the one before it (zeros where none).
    function _notifyMeter(address participant) private {
        address listener = roleListener;
        if (listener == address(0)) return;
        Binding[] storage ph = _participantBindings[participant];
        uint256 n = ph.length;
        IRoleListener(listener)
            .onMeterChanged(participant, n != 0 ? _packBinding(ph[n - 1]) : 0, n > 1 ? _packBinding(ph[n - 2]) : 0);
    }

    /// @dev `b` as `account | fromSlot << 160 | untilSlot << 208` ({IRoleListener-onMeterChanged}).
    function _packBinding(Binding storage b) private view returns (uint256) {
        return uint256(uint160(b.account)) | (uint256(b.fromSlot) << 160) | (uint256(b.untilSlot) << 208);
    }

    /// @dev While islanded, grid prices must lie within the island's band ({setIslanded}).
    function _checkIslandBand(uint256 retailPerKWh, uint256 feedInPerKWh) private view {
        if (islanded && (feedInPerKWh < priceFloor || retailPerKWh > valueOfLostLoad)) {
            revert PricesOutsideIslandBand(retailPerKWh, feedInPerKWh);
        }
    }

    /// @dev Grid prices as {setDefaultPrices} requires them, else {InvalidPrices}.
    function _checkPrices(uint256 retailPerKWh, uint256 feedInPerKWh) private view {
        if (
            retailPerKWh == 0 || feedInPerKWh > retailPerKWh || feedInPerKWh % 1000 != 0
                || retailPerKWh > type(uint64).max || (retailPerKWh - feedInPerKWh) % priceTick != 0
                || (retailPerKWh - feedInPerKWh) / priceTick > MAX_LEVEL
        ) revert InvalidPrices(retailPerKWh, feedInPerKWh);
    }
}
