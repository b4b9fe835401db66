// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IMeterReadings} from "../interfaces/IMeterReadings.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title Settlement
/// @notice Settles each participant's trades in a slot against what its meter measured.
/// @dev Opens `gracePeriod` seconds after the slot ends and needs the slot to be cleared. Anyone may settle any
///      list of participants, so a large slot is settled in parts; each participant's position is settled once.
///
///      For a participant with bought energy `B`, sold energy `S` (its fills), and metered import `I` and
///      export `E` over the slot (Wh; zero without a reading; see {IMeterReadings}), with the slot's
///      retail price `r`, feed-in tariff `f`, clearing price `c`, and its own limit prices `pb`, `pa`:
///      - escrow released:   `bidWh * pb + askWh * (r - pa)`
///      - trade payment:     pays `B * c`, receives `S * c`          (pay-as-clear)
///                           pays `B * pb`, receives `S * pa`        (pay-as-bid; spread `B*(pb-c) + S*(c-pa)`
///                                                                    goes to the grid account)
///      - from the grid at r: `max(I - B, 0)` (used more than bought) + `max(S - E, 0)` (delivered less than sold)
///      - to the grid at f:   `max(B - I, 0)` (bought but not used)  + `max(E - S, 0)` (delivered more than sold)
///      Prices here are per Wh (per-kWh price / 1000). Grid charges are paid to the grid account, feed-in
///      payouts come from it. If a participant cannot pay, the rest is recorded as debt to the grid.
///      Money is conserved: buyers' payments at `c` equal sellers' receipts at `c` once the slot is fully
///      settled (the market holds the difference in between), and every other flow has the grid account as
///      its counterparty. Energy is conserved: `sum(I) - sum(E)` equals the grid's net supply
///      `sum(max(I-B,0) + max(S-E,0)) - sum(max(B-I,0) + max(E-S,0))` because `sum(B) = sum(S)`.
abstract contract Settlement is MarketBase {
    /// @dev Per-settlement scratch values kept in memory to avoid stack pressure.
    struct Ctx {
        uint256 feedIn;
        uint256 retail;
        uint256 clearing;
        uint256 q;
        uint256 mb;
        uint256 ma;
        uint256 marginal;
        bool marginalLoaded;
        uint256 gridIn;
        uint256 gridOut;
    }

    /// @notice Settles `participants`' positions in `slot`.
    /// @dev Reverts with {SlotNotCleared}, {SettlementNotOpen}, {NoPosition} or {AlreadySettled}.
    ///      Emits {ParticipantSettled} per participant. The grid account's balance must cover the feed-in
    ///      payouts of the call, else {InsufficientBalance}.
    function settle(uint64 slot, address[] calldata participants) external {
        uint256 header = _headers[slot];
        if (header & (_M8 << 72) != _STATUS_CLEARED) revert SlotNotCleared(slot);
        uint256 opens = settlementOpensAt(slot);
        if (block.timestamp < opens) revert SettlementNotOpen(slot, opens);

        Ctx memory c;
        unchecked {
            c.feedIn = header & _M64;
            c.retail = c.feedIn + ((header >> 64) & _M8) * _tickPerWh;
            c.clearing = c.feedIn + ((header >> 80) & _M8) * _tickPerWh;
        }
        c.mb = (header >> 88) & _M8;
        c.ma = (header >> 96) & _M8;
        c.q = (header >> 104) & _M64;

        uint256 n = participants.length;
        for (uint256 i = 0; i < n;) {
            _settleOne(slot, participants[i], c);
            unchecked {
                ++i;
            }
        }

        // The marginal levels' pro-rata state is read only if a settled order lies at a marginal level.
        if (c.marginalLoaded) _marginals[slot] = c.marginal;
        if (c.gridIn != 0 || c.gridOut != 0) {
            uint256 acct = _accounts[gridAccount];
            uint256 free = (acct & _M128) + c.gridIn;
            if (free < c.gridOut) revert InsufficientBalance(gridAccount, c.gridOut, free - c.gridIn);
            free -= c.gridOut;
            if (free > _M128) revert BalanceOverflow(gridAccount);
            _accounts[gridAccount] = free | (acct & ~_M128);
        }
    }

    /// @notice The fills `account` would get if settled now in cleared `slot` (Wh).
    /// @dev Exact for the next settlement; marginal-level fills depend on settlement order by less than 1 Wh.
    function previewFills(uint64 slot, address account) external view returns (uint64 boughtWh, uint64 soldWh) {
        uint256 header = _headers[slot];
        if (header & (_M8 << 72) != _STATUS_CLEARED) return (0, 0);
        uint256 pos = _position(slot, account);
        if (pos & _SETTLED != 0) return (0, 0);
        uint256 marginal = _marginals[slot];
        uint256 q = (header >> 104) & _M64;
        (uint256 b,) = _fill(pos & _M32, (pos >> 32) & _M8, q, (header >> 88) & _M8, true, marginal);
        (uint256 s,) = _fill((pos >> 40) & _M32, (pos >> 72) & _M8, q, (header >> 96) & _M8, false, marginal);
        return (uint64(b), uint64(s));
    }

    function _settleOne(uint64 slot, address account, Ctx memory c) private {
        uint256 pos = _position(slot, account);
        if (pos & _ORDERS == 0) revert NoPosition(slot, account);
        if (pos & _SETTLED != 0) revert AlreadySettled(slot, account);
        _positions[account][slot % POSITION_RING] = pos | _SETTLED;

        if (
            !c.marginalLoaded && c.q != 0
                && ((pos & _M32 != 0 && (pos >> 32) & _M8 == c.mb) || ((pos >> 40) & _M32 != 0 && (pos >> 72) & _M8 == c.ma))
        ) {
            c.marginal = _marginals[slot];
            c.marginalLoaded = true;
        }
        uint256 bought;
        uint256 sold;
        (bought, c.marginal) = _fill(pos & _M32, (pos >> 32) & _M8, c.q, c.mb, true, c.marginal);
        (sold, c.marginal) = _fill((pos >> 40) & _M32, (pos >> 72) & _M8, c.q, c.ma, false, c.marginal);
        uint256 acct = _accounts[account];
        (uint256 imp, uint256 exp) = _meteredEnergy(slot, account, acct);
        (uint256 credited, uint256 debited, uint256 charge) = _amounts(c, pos, bought, sold, imp, exp);
        _apply(account, acct, credited, debited, charge, c);

        emit ParticipantSettled(
            slot, account, uint64(bought), uint64(sold), uint64(imp), uint64(exp), credited, debited
        );
    }

    /// @dev Import and export (Wh) of `account`'s meter in `slot`; zero without a meter or a reading. The meter
    ///      comes from the market's copy of the binding (pushed by the registry) when it has one.
    function _meteredEnergy(uint64 slot, address account, uint256 acct)
        private
        view
        returns (uint256 imp, uint256 exp)
    {
        address meter = acct & _METER_CACHED != 0 ? _meters[account] : registry.meterOf(account);
        if (meter != address(0)) {
            IMeterReadings.SlotEnergy memory e = readings.energyInSlot(meter, slot);
            imp = e.importWh;
            exp = e.exportWh;
        }
    }

    /// @dev What the participant is credited and debited (see contract docs); `charge` is the grid's share
    ///      of `debited`. Adds feed-in payouts and pay-as-bid spreads to the grid totals in `c`.
    function _amounts(Ctx memory c, uint256 pos, uint256 bought, uint256 sold, uint256 imp, uint256 exp)
        private
        view
        returns (uint256 credited, uint256 debited, uint256 charge)
    {
        uint256 pb;
        uint256 pa;
        uint256 payout;
        // Unchecked: energies are below 2^64 Wh and per-Wh prices below 2^65, so no product or sum overflows,
        // and `pa <= retail` because limit prices lie within the slot's range.
        unchecked {
            pb = c.feedIn + ((pos >> 32) & _M8) * _tickPerWh;
            pa = c.feedIn + ((pos >> 72) & _M8) * _tickPerWh;
            credited = (pos & _M32) * pb + ((pos >> 40) & _M32) * (c.retail - pa);
            charge = ((imp > bought ? imp - bought : 0) + (sold > exp ? sold - exp : 0)) * c.retail;
            payout = ((bought > imp ? bought - imp : 0) + (exp > sold ? exp - sold : 0)) * c.feedIn;
            debited = charge;
            credited += payout;
            c.gridOut += payout;
        }
        if (mode == MarketMode.PayAsClear) {
            unchecked {
                debited += bought * c.clearing;
                credited += sold * c.clearing;
            }
        } else {
            debited += bought * pb;
            credited += sold * pa;
            // Accepted bids are priced at or above the clearing price, accepted asks at or below it.
            if (bought != 0) c.gridIn += bought * (pb - c.clearing);
            if (sold != 0) c.gridIn += sold * (c.clearing - pa);
        }
    }

    /// @dev Applies the net amount to `account`; a shortfall becomes debt to the grid, a gain repays debt first.
    function _apply(address account, uint256 acct, uint256 credited, uint256 debited, uint256 charge, Ctx memory c)
        private
    {
        uint256 free = acct & _M128;
        uint256 debt = (acct >> 128) & _M120;
        uint256 unpaid;
        if (credited >= debited) {
            // Unchecked: `repaid <= gain, debt`; `free < 2^128` and `gain < 2^140`.
            unchecked {
                uint256 gain = credited - debited;
                uint256 repaid = gain < debt ? gain : debt;
                if (repaid != 0) {
                    debt -= repaid;
                    gain -= repaid;
                    c.gridIn += repaid;
                    emit DebtRepaid(account, repaid);
                }
                free += gain;
            }
            if (free > _M128) revert BalanceOverflow(account);
        } else {
            // The loss never exceeds the grid charge: trade payments are covered by the released escrow.
            uint256 loss = debited - credited;
            if (free >= loss) {
                free -= loss;
            } else {
                unpaid = loss - free;
                free = 0;
                debt += unpaid;
                if (debt > _M120) revert BalanceOverflow(account);
                emit DebtIncurred(account, unpaid);
            }
        }
        c.gridIn += charge - unpaid;
        _accounts[account] = free | (debt << 128) | (acct & _ACCOUNT_FLAGS);
    }

    /// @dev Fill of an order of `wh` Wh at `level`; `marginal` holds the pro-rata state of the marginal levels.
    function _fill(uint256 wh, uint256 level, uint256 q, uint256 marginalLevel, bool isBid, uint256 marginal)
        private
        pure
        returns (uint256 fill, uint256)
    {
        if (wh == 0 || q == 0) return (0, marginal);
        if (level == marginalLevel) {
            uint256 shift = isBid ? 0 : 128;
            uint256 left = (marginal >> shift) & _M64;
            uint256 vol = (marginal >> (shift + 64)) & _M64;
            fill = wh * left / vol;
            marginal = (marginal & ~(_M128 << shift)) | (((left - fill) | ((vol - wh) << 64)) << shift);
            return (fill, marginal);
        }
        if (isBid ? level > marginalLevel : level < marginalLevel) return (wh, marginal);
        return (0, marginal);
    }
}
