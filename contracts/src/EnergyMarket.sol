// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IMeterReadings} from "./interfaces/IMeterReadings.sol";
import {IRegistry} from "./interfaces/IRegistry.sol";
import {Auction} from "./market/Auction.sol";
import {Escrow} from "./market/Escrow.sol";
import {MarketBase} from "./market/MarketBase.sol";
import {Settlement} from "./market/Settlement.sol";

/// @title EnergyMarket
/// @notice The P2P energy market: credit escrow ({Escrow}), one double auction per delivery slot ({Auction})
///         and metered settlement ({Settlement}).
/// @dev Auction and settlement share one contract because they share the escrowed credits. Life of a slot `k`:
///      orders until `slotStart(k) - gateClosure`; then anyone calls {clear}; the slot is delivered during
///      `[slotStart(k), slotStart(k) + slotLength)` while meters report; from `settlementOpensAt(k)` anyone
///      calls {settle} for any subset of the slot's participants.
contract EnergyMarket is Escrow, Auction, Settlement {
    /// @param registry_ Deployed {Registry}: participants, meters, prices, slot schedule.
    /// @param token_ Deployed {CreditToken}.
    /// @param readings_ Deployed {MeterReadings} built on the same registry (schedules must match).
    /// @param gridAccount_ Market account of the grid operator (counterparty of all grid flows).
    /// @param gateClosure_ Seconds before a slot's start at which its orders close.
    /// @param gracePeriod_ Seconds after a slot's end before it can be settled.
    /// @param mode_ `PayAsClear` (uniform price) or `PayAsBid`.
    constructor(
        IRegistry registry_,
        IERC20 token_,
        IMeterReadings readings_,
        address gridAccount_,
        uint32 gateClosure_,
        uint32 gracePeriod_,
        MarketMode mode_
    ) MarketBase(registry_, token_, readings_, gridAccount_, gateClosure_, gracePeriod_, mode_) {}
}
