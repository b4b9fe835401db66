// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title CreditToken
/// @notice Prepaid energy credits: an ERC-20 with EIP-2612 `permit`, 18 decimals.
/// @dev One credit = 1e18 base units. Market prices are quoted in base units per kWh.
///      Accounts with `MINTER_ROLE` (the operators, set at deployment) mint credits against prepaid funds
///      and may burn credits they hold when funds are paid out. Holders can burn their own credits.
contract CreditToken is ERC20Permit, AccessControl {
    /// @notice Role allowed to mint credits.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    error NoAdmins();
    error ZeroAddress();

    /// @notice Emitted when `amount` credits are minted to `to` by `minter`.
    event CreditsMinted(address indexed minter, address indexed to, uint256 amount);
    /// @notice Emitted when `account` burns `amount` of its credits.
    event CreditsBurned(address indexed account, uint256 amount);

    /// @param name_ ERC-20 name (also the EIP-712 domain name used by `permit`).
    /// @param symbol_ ERC-20 symbol.
    /// @param admins Accounts that receive `DEFAULT_ADMIN_ROLE` and `MINTER_ROLE` (at least one).
    constructor(string memory name_, string memory symbol_, address[] memory admins)
        ERC20(name_, symbol_)
        ERC20Permit(name_)
    {
        if (admins.length == 0) revert NoAdmins();
        for (uint256 i = 0; i < admins.length; ++i) {
            if (admins[i] == address(0)) revert ZeroAddress();
            _grantRole(DEFAULT_ADMIN_ROLE, admins[i]);
            _grantRole(MINTER_ROLE, admins[i]);
        }
    }

    /// @notice Mints `amount` base units of credit to `to`.
    /// @dev Minter only. Emits {Transfer} from the zero address and {CreditsMinted}.
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
        emit CreditsMinted(msg.sender, to, amount);
    }

    /// @notice Burns `amount` base units of the caller's credits (e.g. when prepaid funds are paid out).
    /// @dev Emits {Transfer} to the zero address and {CreditsBurned}.
    function burn(uint256 amount) external {
        _burn(msg.sender, amount);
        emit CreditsBurned(msg.sender, amount);
    }
}
