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
///      export `E` over the slot (Wh; zero without a reading, and zero once the meter's energy of the slot is no
///      longer kept, `ENERGY_RING` slots on: see {IMeterReadings}), with the slot's
///      retail price `r`, feed-in tariff `f`, clearing price `c`, its own limit prices `pb`, `pa`, and the
///      slot's imbalance premiums `ps` (short, over retail) and `pl` (long, below feed-in) its orders copied:
///      - escrow released:   `bidWh * (pb + pl) + askWh * (r + ps - pa)`
///      - trade payment:     pays `B * c`, receives `S * c`          (pay-as-clear)
///                           pays `B * pb`, receives `S * pa`        (pay-as-bid; spread `B*(pb-c) + S*(c-pa)`
///                                                                    goes to the grid account)
///      - from the grid at r:      `max(I - B, 0)` (used more than bought)
///      - from the grid at r + ps: `max(S - E, 0)` (delivered less than sold: short imbalance)
///      - to the grid at f:        `max(B - I, 0)` (bought but not used: long imbalance, less `pl` per Wh)
///                                 + `max(E - S, 0)` (delivered more than sold)
///      An imbalance thus always costs more than the trade earned (`r + ps > c`, `f - pl < c`), and the escrow
///      covers it whatever is metered.
///      Prices here are per Wh (per-kWh price / 1000). Grid charges are paid to the grid account, feed-in
///      payouts come from it. If a participant cannot pay, the rest is recorded as debt to the grid.
///      A position settled after its meter's energy was reused (4,096 slots, 42 days of 15-minute slots: the
///      keeper settles each slot right after its grace period, and anyone may settle) is billed as unmetered:
///      a seller pays `r + ps` for all it sold (and gets no feed-in for export beyond it), a buyer gets all it
///      bought back at `f - pl` and is not charged for import beyond it (contracts/README.md, "Meter energy is
///      kept for 4,096 slots").
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
        /// @dev Non-zero iff the slot cleared a positive volume (the cleared volume, or 1 with a compact header).
        uint256 q;
        uint256 mb;
        uint256 ma;
        /// @dev The marginal pro-rata state: the `marginal` word, or with `compact` the whole header.
        uint256 marginal;
        bool marginalLoaded;
        /// @dev Whether the marginal state is kept in the slot header (see {MarketBase}).
        bool compact;
        uint256 gridIn;
        uint256 gridOut;
        /// @dev The storage slot of `_accounts[account]` of the participant being settled.
        bytes32 accountWord;
    }

    /// @notice Settles `participants` in `slot`: their orders against their meters, and those with a meter but no
    ///         order in the slot against the grid alone (import at retail, export at feed-in).
    /// @dev Until {settlementClosesAt}`(slot)`; from then on the call closes each listed position with orders that
    ///      is still unsettled as expired ({PositionExpired}: its escrow and collateral are forfeited, nothing else
    ///      moves) and skips every other account with `SettlementExpired`, whatever the slot's state.
    ///      Reverts only with {SlotNotCleared} or {SettlementNotOpen}. A listed account is skipped with
    ///      {SettlementSkipped} instead of reverting when it is already settled (by an earlier call, or earlier in
    ///      the same list: `AlreadySettled`), has neither orders nor a meter in the slot (`NoPosition`), or has no
    ///      orders and the slot's settled-without-orders record is gone (from {gridSettlementClosesAt}:
    ///      `SettlementExpired`); so neither a front-running settle nor a stale list can make a batch fail.
    ///      The meter is the one bound to the participant in `slot`, not the current one: from the market's copies of
    ///      its latest two bindings (a change that would drop one a settleable slot still needs is refused,
    ///      {BindingStillNeeded}).
    ///      Emits {ParticipantSettled} per settled participant. If the grid account cannot pay the call's feed-in,
    ///      the participants are credited in full and the shortfall becomes the grid account's debt
    ///      ({GridDebtIncurred}); withdrawals wait until it is repaid ({GridInDebt}).
    function settle(uint64 slot, address[] calldata participants) external {
        uint256 opens = settlementOpensAt(slot);
        // `settlementClosesAt(slot)`, from the opening computed anyway (below 2^111, unchecked).
        unchecked {
            if (block.timestamp >= opens + SETTLEMENT_WINDOW * slotLength) {
                _expire(slot, participants);
                return;
            }
        }
        // `_headers[slot]`, its storage slot computed once for the read and the marginal state's write-back.
        bytes32 headerKey;
        uint256 header;
        assembly ("memory-safe") {
            mstore(0x00, slot)
            mstore(0x20, _headers.slot)
            headerKey := keccak256(0x00, 0x40)
            header := sload(headerKey)
        }
        if (header & _STATUS_BITS != _STATUS_CLEARED) revert SlotNotCleared(slot);
        if (block.timestamp < opens) revert SettlementNotOpen(slot, opens);

        bool compact = header & _COMPACT != 0;
        uint256 feedIn = header & _M64;
        uint256 retail;
        uint256 clearing;
        unchecked {
            retail = feedIn + ((header >> 64) & _M8) * _tickPerWh;
            clearing = feedIn + ((header >> 80) & _M8) * _tickPerWh;
        }
        Ctx memory c = Ctx({
            feedIn: feedIn,
            retail: retail,
            clearing: clearing,
            // A compact header holds the marginal state and implies a positive cleared volume.
            q: compact ? 1 : (header >> 104) & _M64,
            mb: (header >> 88) & _M8,
            ma: (header >> 96) & _M8,
            marginal: compact ? header : 0,
            marginalLoaded: compact,
            compact: compact,
            gridIn: 0,
            gridOut: 0,
            accountWord: 0
        });

        uint256 n = participants.length;
        for (uint256 i = 0; i < n;) {
            _settleOne(slot, participants[i], c);
            unchecked {
                ++i;
            }
        }

        // The marginal levels' pro-rata state is read only if a settled order lies at a marginal level (in a
        // compact header it is always at hand and written back only if it changed). Fields only decrease, so
        // compact state stays compact.
        if (c.marginalLoaded) {
            if (!c.compact) {
                _marginals[slot] = c.marginal;
            } else if (c.marginal != header) {
                uint256 m = c.marginal;
                assembly ("memory-safe") {
                    sstore(headerKey, m)
                }
            }
        }
        if (c.gridIn != 0 || c.gridOut != 0) _payGrid(slot, c.gridIn, c.gridOut);
    }

    /// @dev {settle} after `slot`'s settlement window ({settlementClosesAt}): closes each listed position with orders
    ///      that is still unsettled as expired (marked settled, nothing credited or debited: its escrow and
    ///      collateral are forfeited), and skips every other account with `SettlementExpired`. Reads no slot word,
    ///      so it works whether or not the slot's words were reclaimed. Emits {PositionExpired} or
    ///      {SettlementSkipped} per account.
    function _expire(uint64 slot, address[] calldata participants) private {
        uint256 n = participants.length;
        for (uint256 i = 0; i < n; ++i) {
            address account = participants[i];
            uint256 pos = _position(slot, account);
            if (pos & _ORDERS == 0 || pos & _SETTLED != 0) {
                emit SettlementSkipped(slot, account, SettlementExpired.selector);
                continue;
            }
            _positions[account][slot % POSITION_RING] = pos | _SETTLED;
            emit PositionExpired(slot, account, uint32(pos), uint32(pos >> 40));
        }
    }

    /// @dev Applies the call's grid flows to the grid account ({_applyGrid}).
    function _payGrid(uint64 slot, uint256 gridIn, uint256 gridOut) private {
        // `_accounts[gridAccount]`, its storage slot computed at deployment.
        bytes32 word = _gridWord;
        uint256 acct;
        assembly ("memory-safe") {
            acct := sload(word)
        }
        uint256 free = (acct & _M128) + gridIn;
        if (free < gridOut || (acct >> 128) & _M120 != 0) {
            acct = _applyGrid(slot, acct, gridIn, gridOut);
        } else {
            // The common case: no grid debt, and the balance covers the feed-in.
            unchecked {
                free -= gridOut;
            }
            if (free > _M128) revert BalanceOverflow(gridAccount);
            acct = free | (acct & ~_M128);
        }
        assembly ("memory-safe") {
            sstore(word, acct)
        }
    }

    /// @notice Whether `account` was settled in `slot` against the grid alone (it had no orders there), as far as
    ///         the record reaches ({gridSettlementClosesAt}).
    function settledWithoutOrders(uint64 slot, address account) external view returns (bool) {
        uint256 w = _gridSettled[account][(slot / _GRID_BLOCK) % 2];
        return w >> 128 == slot / _GRID_BLOCK + 1 && (w >> (slot % _GRID_BLOCK)) & 1 != 0;
    }

    /// @dev The grid account word after the call's flows: `gridIn` (charges, repaid debt, spreads) first repays the
    ///      grid's debt, `gridOut` (feed-in) is paid from its balance and what the balance lacks becomes its debt.
    ///      Why debt and not a revert: a revert would leave every listed participant's escrow locked until the
    ///      operator funds the grid, and their ring words busy; the participants' credits are theirs either way.
    function _applyGrid(uint64 slot, uint256 acct, uint256 gridIn, uint256 gridOut) private returns (uint256) {
        uint256 have = (acct & _M128) + gridIn;
        uint256 debt = (acct >> 128) & _M120;
        uint256 owe = debt + gridOut;
        (uint256 free, uint256 left) = have >= owe ? (have - owe, uint256(0)) : (uint256(0), owe - have);
        if (left > debt) emit GridDebtIncurred(slot, left - debt);
        else if (left < debt) emit DebtRepaid(gridAccount, debt - left);
        if (free > _M128 || left > _M120) revert BalanceOverflow(gridAccount);
        return free | (left << 128) | (acct & _ACCOUNT_FLAGS);
    }

    /// @notice The fills `account` would get if settled now in cleared `slot` (Wh).
    /// @dev Exact for the next settlement; marginal-level fills depend on settlement order by less than 1 Wh.
    function previewFills(uint64 slot, address account) external view returns (uint64 boughtWh, uint64 soldWh) {
        uint256 header = _headers[slot];
        if (header & _STATUS_BITS != _STATUS_CLEARED || block.timestamp >= settlementClosesAt(slot)) return (0, 0);
        uint256 pos = _position(slot, account);
        if (pos & _SETTLED != 0) return (0, 0);
        bool compact = header & _COMPACT != 0;
        uint256 marginal = compact ? header : _marginals[slot];
        uint256 q = compact ? 1 : (header >> 104) & _M64; // only compared with zero
        (uint256 b,) = _fill(pos & _M32, (pos >> 32) & _M8, q, (header >> 88) & _M8, true, marginal, compact);
        (uint256 s,) = _fill((pos >> 40) & _M32, (pos >> 72) & _M8, q, (header >> 96) & _M8, false, marginal, compact);
        return (uint64(b), uint64(s));
    }

    function _settleOne(uint64 slot, address account, Ctx memory c) private {
        uint256 pos;
        {
            uint256 word;
            (pos, word) = _markSettled(slot, account);
            if (pos == 0) {
                emit SettlementSkipped(slot, account, AlreadySettled.selector);
                return;
            }
            if (pos == _SETTLED) {
                _settleWithoutOrders(slot, account, word, c);
                return;
            }
        }

        if (
            !c.marginalLoaded && c.q != 0
                && ((pos & _M32 != 0 && (pos >> 32) & _M8 == c.mb)
                    || ((pos >> 40) & _M32 != 0 && (pos >> 72) & _M8 == c.ma))
        ) {
            c.marginal = _marginals[slot];
            c.marginalLoaded = true;
        }
        uint256 bought;
        uint256 sold;
        // Each side only if it has an order (a side without one fills nothing).
        if (pos & _M32 != 0) {
            (bought, c.marginal) = _fill(pos & _M32, (pos >> 32) & _M8, c.q, c.mb, true, c.marginal, c.compact);
        }
        if ((pos >> 40) & _M32 != 0) {
            (sold, c.marginal) = _fill((pos >> 40) & _M32, (pos >> 72) & _M8, c.q, c.ma, false, c.marginal, c.compact);
        }
        uint256 acct = _loadAccount(account, c);
        (uint256 imp, uint256 exp) = _meteredEnergy(slot, _meterIn(slot, account, acct));
        (uint256 credited, uint256 debited, uint256 charge) = _amounts(c, pos, bought, sold, imp, exp);
        _apply(account, acct, credited, debited, charge, c);

        emit ParticipantSettled(
            slot, account, uint64(bought), uint64(sold), uint64(imp), uint64(exp), credited, debited
        );
    }

    /// @dev Settles `account`, which has no orders in `slot` (`word` is its position ring word for `slot`), against
    ///      the grid alone: its meter's import at retail and export at feed-in, as for any unmatched energy. Recorded
    ///      in the settled-without-orders bitmap. Skips (with {SettlementSkipped}) when already settled, when there is
    ///      no meter in the slot, or when the record is gone ({gridSettlementClosesAt}).
    function _settleWithoutOrders(uint64 slot, address account, uint256 word, Ctx memory c) private {
        uint256 acct = _loadAccount(account, c);
        address meter = _meterIn(slot, account, acct);
        bytes4 skip = meter == address(0) ? NoPosition.selector : _markSettledWithoutOrders(slot, account, word);
        if (skip != 0) {
            emit SettlementSkipped(slot, account, skip);
            return;
        }
        (uint256 imp, uint256 exp) = _meteredEnergy(slot, meter);
        (uint256 credited, uint256 debited, uint256 charge) = _amounts(c, 0, 0, 0, imp, exp);
        _apply(account, acct, credited, debited, charge, c);
        emit ParticipantSettled(slot, account, 0, 0, uint64(imp), uint64(exp), credited, debited);
    }

    /// @dev Records `account` (whose position ring word for `slot` is `word`) as settled without orders in `slot`;
    ///      returns the selector of the reason to skip it instead (`SettlementExpired`, `AlreadySettled`), or zero.
    function _markSettledWithoutOrders(uint64 slot, address account, uint256 word) private returns (bytes4 skip) {
        unchecked {
            // `gridSettlementClosesAt(slot)` (below 2^111).
            uint256 closes = startTime + (uint256(slot) + POSITION_RING + 1) * slotLength + gracePeriod;
            if (block.timestamp >= closes) return SettlementExpired.selector;
        }
        uint256 record;
        bytes32 key;
        (skip, record, key) = _gridRecord(account, slot, word);
        if (skip == 0) {
            assembly ("memory-safe") {
                sstore(key, record)
            }
        }
    }

    /// @dev Returns `account`'s position in `slot` and marks it settled; returns 0 if it was already settled, and
    ///      `_SETTLED` (never a position with orders) if it has no orders in the slot. `word` is the ring word as read.
    function _markSettled(uint64 slot, address account) private returns (uint256 pos, uint256 word) {
        // `_positions[account][slot % POSITION_RING]`, its storage slot computed once for the read and the write.
        uint256 key;
        assembly ("memory-safe") {
            mstore(0x00, account)
            mstore(0x20, _positions.slot)
            mstore(0x20, keccak256(0x00, 0x40))
            mstore(0x00, mod(slot, POSITION_RING))
            key := keccak256(0x00, 0x40)
            word := sload(key)
        }
        unchecked {
            // The ring word may hold another slot.
            pos = word >> _TAG_SHIFT != uint256(slot) + 1 ? 0 : word;
        }
        if (pos & _ORDERS == 0) return (_SETTLED, word);
        if (pos & _SETTLED != 0) return (0, word);
        assembly ("memory-safe") {
            sstore(key, or(pos, _SETTLED))
        }
    }

    /// @dev The meter bound to `account` in `slot` (zero if none), from the market's copies of its latest binding and
    ///      the one before it ({_meterFrom}); a slot before both has none: had it a meter and could it still be
    ///      settled, the registry's change would have been refused ({BindingStillNeeded}). Only an account whose
    ///      binding the market has not mirrored (see {onMeterChanged}) asks the registry's history.
    function _meterIn(uint64 slot, address account, uint256 acct) private view returns (address) {
        if (acct & _METER_CACHED == 0) return registry.meterAt(account, slot);
        // `_meters[account]`, and `_previousMeters[account]` only for a slot before the latest binding; a slot
        // before the previous binding's start has no meter, and so has one from the binding's end on.
        address meter;
        assembly ("memory-safe") {
            mstore(0x00, account)
            mstore(0x20, _meters.slot)
            let w := sload(keccak256(0x00, 0x40))
            if lt(slot, and(shr(160, w), 0xffffffffffff)) {
                mstore(0x20, _previousMeters.slot)
                w := sload(keccak256(0x00, 0x40))
                w := mul(w, iszero(lt(slot, and(shr(160, w), 0xffffffffffff))))
            }
            meter := mul(and(w, 0xffffffffffffffffffffffffffffffffffffffff), lt(slot, shr(208, w)))
        }
        return meter;
    }

    /// @dev Import and export (Wh) of `meter` in `slot`; zero without a meter or a reading, or once the meter's
    ///      energy of `slot` is no longer kept ({IMeterReadings-energyKept}).
    function _meteredEnergy(uint64 slot, address meter) private view returns (uint256 imp, uint256 exp) {
        if (meter != address(0)) {
            // `readings.energyInSlot(meter, slot)`, decoding only the two counters (a plain Solidity call spends
            // several hundred gas more on encoding and decoding the struct).
            address target = address(readings);
            uint256 i;
            uint256 e;
            bytes4 selector = IMeterReadings.energyInSlot.selector;
            assembly ("memory-safe") {
                let ptr := mload(0x40)
                mstore(ptr, selector)
                mstore(add(ptr, 4), meter)
                mstore(add(ptr, 36), slot)
                if iszero(staticcall(gas(), target, ptr, 68, ptr, 96)) {
                    returndatacopy(ptr, 0, returndatasize())
                    revert(ptr, returndatasize())
                }
                i := mload(ptr)
                e := mload(add(ptr, 32))
                // A `SlotEnergy` is three words of which the first two are `uint64`s.
                if or(lt(returndatasize(), 96), gt(or(i, e), 0xffffffffffffffff)) { revert(0, 0) }
            }
            (imp, exp) = (i, e);
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
        // Unchecked: energies are below 2^64 Wh and per-Wh prices below 2^65 (premiums below 2^70), so no product
        // or sum overflows, and `pa <= retail` because limit prices lie within the slot's range. Each side's
        // terms are computed only if the position has an order on that side (fills are zero otherwise).
        unchecked {
            // Import beyond the bought energy at retail; export beyond the sold energy to the grid at feed-in.
            charge = (imp > bought ? imp - bought : 0) * c.retail;
            uint256 toGrid = exp > sold ? exp - sold : 0;
            if (pos & _M32 != 0) {
                pb = c.feedIn + ((pos >> 32) & _M8) * _tickPerWh;
                uint256 pl = ((pos >> (_PREMIUM_SHIFT + 16)) & _M16) * _tickPerWh;
                credited = (pos & _M32) * (pb + pl);
                // Long imbalance (bought, not used): to the grid at feed-in, and `pl` per Wh charged.
                if (bought > imp) {
                    charge += (bought - imp) * pl;
                    toGrid += bought - imp;
                }
            }
            if ((pos >> 40) & _M32 != 0) {
                pa = c.feedIn + ((pos >> 72) & _M8) * _tickPerWh;
                uint256 shortPrice = c.retail + ((pos >> _PREMIUM_SHIFT) & _M16) * _tickPerWh;
                credited += ((pos >> 40) & _M32) * (shortPrice - pa);
                // Short imbalance (sold, not delivered): bought from the grid at retail plus the premium.
                if (sold > exp) charge += (sold - exp) * shortPrice;
            }
            toGrid *= c.feedIn; // the feed-in payout
            debited = charge;
            credited += toGrid;
            c.gridOut += toGrid;
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
        unchecked {
            // `unpaid <= loss <= charge`; the call's grid total stays far below 2^256.
            c.gridIn += charge - unpaid;
        }
        acct = free | (debt << 128) | (acct & _ACCOUNT_FLAGS);
        bytes32 word = c.accountWord;
        assembly ("memory-safe") {
            sstore(word, acct)
        }
    }

    /// @dev Reads `_accounts[account]` and keeps its storage slot in `c` for {_apply}'s write.
    function _loadAccount(address account, Ctx memory c) private view returns (uint256 acct) {
        bytes32 word;
        assembly ("memory-safe") {
            mstore(0x00, account)
            mstore(0x20, _accounts.slot)
            word := keccak256(0x00, 0x40)
            acct := sload(word)
        }
        c.accountWord = word;
    }

    /// @dev Fill of an order of `wh` Wh at `level`; `marginal` holds the pro-rata state of the marginal levels,
    ///      as a `marginal` word or, if `compact`, as a compact header (see {MarketBase}). Returns the updated state.
    function _fill(
        uint256 wh,
        uint256 level,
        uint256 q,
        uint256 marginalLevel,
        bool isBid,
        uint256 marginal,
        bool compact
    ) private pure returns (uint256 fill, uint256) {
        if (wh == 0 || q == 0) return (0, marginal);
        if (level == marginalLevel) {
            (uint256 width, uint256 mask) = compact ? (uint256(38), _M38) : (uint256(64), _M64);
            // Unchecked: `wh <= vol` (the order is part of the level's unsettled volume) and so `fill <= left`;
            // `wh * left < 2^96`; shifts stay below 256.
            unchecked {
                uint256 shift = (compact ? 104 : 0) + (isBid ? 0 : 2 * width);
                uint256 left = (marginal >> shift) & mask;
                uint256 vol = (marginal >> (shift + width)) & mask;
                fill = wh * left / vol;
                marginal = (marginal & ~((mask | (mask << width)) << shift))
                    | (((left - fill) | ((vol - wh) << width)) << shift);
            }
            return (fill, marginal);
        }
        if (isBid ? level > marginalLevel : level < marginalLevel) return (wh, marginal);
        return (0, marginal);
    }
}
