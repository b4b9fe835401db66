// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IRegistry} from "../interfaces/IRegistry.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title Escrow
/// @notice Internal credit accounts of the market: deposit once, trade many times without token transfers.
/// @dev An account has a free balance and a debt to the grid (only one is non-zero at a time). Debt arises
///      when a buyer imports more than it bought and cannot pay for the excess at settlement; any later
///      credit to the account (deposit, refund, settlement) repays it to the grid account first. An account
///      with debt cannot place orders or withdraw.
abstract contract Escrow is MarketBase {
    using SafeERC20 for IERC20;

    /// @notice Deposits `amount` credit base units from the caller into the caller's account.
    /// @dev Requires a prior ERC-20 approval. Repays outstanding debt first. Emits {Deposited}.
    function deposit(uint256 amount) external {
        _deposit(msg.sender, msg.sender, amount);
    }

    /// @notice Deposits `amount` credit base units from the caller into `account` (e.g. the operator funding
    ///         the grid account or a household).
    /// @dev Requires a prior ERC-20 approval by the caller. Emits {Deposited}.
    function depositFor(address account, uint256 amount) external {
        if (account == address(0)) revert ZeroAddress();
        _deposit(account, msg.sender, amount);
    }

    /// @notice Approves with an EIP-2612 signature and deposits `amount` in one transaction.
    /// @dev If the permit was already used (e.g. front-run), the existing allowance is used instead.
    function depositWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external {
        try IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _deposit(msg.sender, msg.sender, amount);
    }

    /// @notice Withdraws `amount` credit base units of the caller's free balance to the caller.
    /// @dev Reverts with {InsufficientBalance} if the free balance is smaller, and with {GridInDebt} while the grid
    ///      account has debt: the market then holds that much less than its accounts' balances (feed-in the grid
    ///      could not pay, see {Settlement}), so a withdrawal would take credits that back someone else's balance.
    ///      The operator ends it with a deposit for the grid account. Emits {Withdrawn}.
    function withdraw(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 gridDebt = (_accounts[gridAccount] >> 128) & _M120;
        if (gridDebt != 0) revert GridInDebt(gridDebt);
        uint256 acct = _accounts[msg.sender];
        uint256 free = acct & _M128;
        if (free < amount) revert InsufficientBalance(msg.sender, amount, free);
        _accounts[msg.sender] = acct - amount;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice Mirrors a role change from the registry so that placing an order needs no registry call.
    /// @dev Only the registry calls this (see {Registry-setRoleListener}). When `account` becomes a participant
    ///      for the first time, also creates its {POSITION_RING} position words (about 1.4M gas, paid by the
    ///      operator's registration transaction) so that none of its orders creates storage. Emits {RoleSynced}
    ///      and, on that first registration, {PositionsInitialised}.
    function onRoleChanged(address account, IRegistry.Role role) external {
        if (msg.sender != address(registry)) revert NotRegistry(msg.sender);
        _cacheRole(account, role);
    }

    /// @notice Mirrors `participant`'s latest meter binding and the one before it from the registry, so that
    ///         settlement needs no registry call (a meter swap keeps the slots just before it on the previous
    ///         binding).
    /// @dev Only the registry calls this, after every binding change of the participant. Settlement answers "no
    ///      meter" for a slot before both copies, so a change that drops a copy (a `bindMeter` after two earlier
    ///      bindings) is refused with {BindingStillNeeded} while a slot of the dropped binding can still be settled
    ///      for the participant: an unsettled position with orders before {settlementClosesAt}, or an opened slot
    ///      without orders not yet settled before {gridSettlementClosesAt}. Settling it first (anyone can) makes the
    ///      change possible. Unbinding and removal never drop a copy, so they are never refused. The check reads the
    ///      participant's {POSITION_RING} position words (paid by the operator's `bindMeter`).
    ///      An account whose binding the market has not mirrored yet is mirrored from a push whose `previous` is zero
    ///      (its whole history: every participant registered after the market became the listener, at its first
    ///      binding); one bound before that with two or more bindings keeps reading the registry's history
    ///      ({IRegistry-meterAt}). Emits {MeterSynced}.
    function onMeterChanged(address participant, uint256 latest, uint256 previous) external {
        if (msg.sender != address(registry)) revert NotRegistry(msg.sender);
        uint256 acct = _accounts[participant];
        if (acct & _METER_CACHED != 0) {
            _checkNothingDropped(participant, _meters[participant], _previousMeters[participant], latest, previous);
        } else if (previous == 0) {
            _accounts[participant] = acct | _METER_CACHED;
        }
        // Effects.
        _meters[participant] = latest;
        // Written only when it changes: most participants never have a previous binding, so the word is never
        // created for them.
        if (_previousMeters[participant] != previous) _previousMeters[participant] = previous;
        emit MeterSynced(participant, latest, previous);
    }

    /// @notice Mirrors the registry's order horizon so that placing an order needs no registry call.
    /// @dev Only the registry calls this ({Registry-setOrderHorizon}). Emits {OrderHorizonSynced}.
    function onOrderHorizonChanged(uint32 horizon) external {
        if (msg.sender != address(registry)) revert NotRegistry(msg.sender);
        orderHorizon = horizon;
        emit OrderHorizonSynced(horizon);
    }

    /// @notice Mirrors a capacity change from the registry so that placing an order needs no registry call.
    /// @dev Only the registry calls this ({Registry-setCapacity}, registration, removal). Stores the energy per
    ///      slot, power times slot length. Emits {CapacitySynced}.
    function onCapacityChanged(address account, uint32 importW, uint32 exportW) external {
        if (msg.sender != address(registry)) revert NotRegistry(msg.sender);
        _cacheCapacity(account, importW, exportW);
    }

    /// @notice Copies the registry's order horizon into the market (the market reads it at deployment and the
    ///         registry pushes every change once the market is its role listener; this covers a change made in
    ///         between). Anyone may call. Emits {OrderHorizonSynced}.
    function syncOrderHorizon() external {
        uint32 horizon = registry.orderHorizon();
        orderHorizon = horizon;
        emit OrderHorizonSynced(horizon);
    }

    /// @notice Copies `account`'s current role and capacity from the registry into the market's cache, and creates
    ///         its position words if it is a participant whose words do not exist yet.
    /// @dev Anyone may call; only useful for accounts registered before the market became the registry's role
    ///      listener. Reverts with {NotRoleListener} unless the registry pushes role changes to this market
    ///      (otherwise a cached role could go stale). Meter bindings need no copy: until the market mirrors the
    ///      account's bindings ({onMeterChanged}), settlement reads the registry's history ({IRegistry-meterAt}).
    ///      Emits {RoleSynced}, {CapacitySynced} and, the first time for a participant, {PositionsInitialised}.
    function syncRole(address account) external {
        if (registry.roleListener() != address(this)) revert NotRoleListener();
        IRegistry.Role role = registry.roleOf(account);
        (uint32 importW, uint32 exportW) = registry.capacityOf(account);
        _cacheRole(account, role);
        _cacheCapacity(account, importW, exportW);
    }

    /// @notice Free balance and debt of `account`, in credit base units.
    function accountOf(address account) external view returns (uint256 free, uint256 debt) {
        uint256 acct = _accounts[account];
        return (acct & _M128, (acct >> 128) & _M120);
    }

    /// @dev Reverts with {BindingStillNeeded} if replacing the copies `oldLatest`, `oldPrevious` of `participant`'s
    ///      bindings with `latest`, `previous` leaves a slot that can still be settled for it without the meter the
    ///      old copies give it. The lost slots lie before the new copies' start and from the old copies' start on;
    ///      only slots up to the current one can be among them (a change takes effect from the next slot).
    function _checkNothingDropped(
        address participant,
        uint256 oldLatest,
        uint256 oldPrevious,
        uint256 latest,
        uint256 previous
    ) private view {
        uint256 lo = _coveredFrom(oldLatest, oldPrevious);
        uint256 hi = _coveredFrom(latest, previous);
        if (lo >= hi || block.timestamp < startTime) return;
        uint256 current = (block.timestamp - startTime) / slotLength;
        if (hi > current + 1) hi = current + 1;
        mapping(uint256 => uint256) storage ring = _positions[participant];
        address meter;
        // Positions with orders, not settled, inside their settlement window.
        for (uint256 i = 0; i < POSITION_RING; ++i) {
            uint256 w = ring[i];
            if (w & _ORDERS == 0 || w & _SETTLED != 0) continue;
            uint256 k = (w >> _TAG_SHIFT) - 1; // a word with orders always carries its slot
            if (k < lo || k >= hi || block.timestamp >= settlementClosesAt(uint64(k))) continue;
            meter = _meterFrom(oldLatest, oldPrevious, k);
            if (meter != address(0)) revert BindingStillNeeded(participant, uint64(k), meter);
        }
        // Slots without orders, newest first, while their settled-without-orders record is open.
        for (uint256 k = hi; k > lo;) {
            --k;
            if (block.timestamp >= gridSettlementClosesAt(uint64(k))) break;
            meter = _meterFrom(oldLatest, oldPrevious, k);
            if (meter != address(0) && _settleableWithoutOrders(participant, k, ring[k % POSITION_RING])) {
                revert BindingStillNeeded(participant, uint64(k), meter);
            }
        }
    }

    /// @dev Whether `participant`, whose ring word for slot `k` is `w`, can still be settled in `k` without orders
    ///      (as {Settlement} decides, inside {gridSettlementClosesAt}): `k` had no orders, its settled-without-orders
    ///      bit is clear, and `k` was opened (a slot never opened can never be cleared or settled).
    function _settleableWithoutOrders(address participant, uint256 k, uint256 w) private view returns (bool) {
        if (w >> _TAG_SHIFT == k + 1 && w & _ORDERS != 0) return false; // orders: the loop over positions answers
        (bytes4 skip,,) = _gridRecord(participant, k, w);
        return skip == 0 && _headers[uint64(k)] != 0;
    }

    function _cacheRole(address account, IRegistry.Role role) private {
        uint256 acct = (_accounts[account] & ~_ROLE_BITS) | ((uint256(role) + 1) << _ROLE_SHIFT);
        bool initialise = role != IRegistry.Role.None && acct & _POSITIONS_READY == 0;
        if (initialise) acct |= _POSITIONS_READY;
        _accounts[account] = acct;
        emit RoleSynced(account, role);
        if (initialise) {
            // Words already in use (orders placed before the role was cached) are left as they are.
            mapping(uint256 => uint256) storage ring = _positions[account];
            for (uint256 i = 0; i < POSITION_RING; ++i) {
                if (ring[i] == 0) ring[i] = _INITIALISED;
            }
            // And the two words of its settled-without-orders record, so that settling it creates no storage.
            mapping(uint256 => uint256) storage gs = _gridSettled[account];
            if (gs[0] == 0) gs[0] = _INITIALISED;
            if (gs[1] == 0) gs[1] = _INITIALISED;
            emit PositionsInitialised(account, POSITION_RING + 2);
        }
    }

    function _cacheCapacity(address account, uint32 importW, uint32 exportW) private {
        uint256 importWh = _whPerSlot(importW);
        uint256 exportWh = _whPerSlot(exportW);
        _capacities[account] = importWh | (exportWh << 64);
        emit CapacitySynced(account, importWh, exportWh);
    }

    function _deposit(address account, address from, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        _credit(account, amount);
        emit Deposited(account, from, amount);
        token.safeTransferFrom(from, address(this), amount);
    }
}
