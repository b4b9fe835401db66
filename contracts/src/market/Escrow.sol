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
    ///         settlement needs no registry call for the slots they cover (a meter swap keeps the slots just
    ///         before it on the previous binding).
    /// @dev Only the registry calls this, after every binding change of the participant. Settlement of a slot before
    ///      `previous.fromSlot` asks the registry's history ({IRegistry-meterAt}). Emits {MeterSynced}.
    function onMeterChanged(address participant, uint256 latest, uint256 previous) external {
        if (msg.sender != address(registry)) revert NotRegistry(msg.sender);
        _accounts[participant] |= _METER_CACHED;
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
    ///      (otherwise a cached role could go stale). Meter bindings need no copy: until the registry pushes one
    ///      of the account's binding changes, settlement reads the registry's history ({IRegistry-meterAt}).
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
