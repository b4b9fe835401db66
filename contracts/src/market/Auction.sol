// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IRegistry} from "../interfaces/IRegistry.sol";
import {MarketBase} from "./MarketBase.sol";

/// @title Auction
/// @notice A two-sided call auction per delivery slot, aggregated by price level. The book is public: every order
///         is a transaction on chain (sealed bids would need commit-reveal).
/// @dev Order book. A participant has at most one bid and one ask per slot. Limit prices lie on the
///      registry's price tick within `[feedIn, retail]` of the slot, so a slot has at most 256 price levels.
///      Orders are not stored in a list: each order adds its energy to its level's bid or ask total. Placing
///      and cancelling touch O(1) words and, in a slot opened by the operator's keeper ({openSlot}) and for a
///      registered participant, only rewrite existing words; clearing reads the slot's (at most 256) level
///      words whatever the number of orders; each order's fill is computed lazily at settlement.
///
///      Clearing (after gate closure, by anyone, once). With `D(l)` the bid energy at levels `>= l` and
///      `S(l)` the ask energy at levels `<= l`, the cleared volume is `Q = max_l min(D(l), S(l))`, the
///      largest volume any price can clear, so no unmatched bid remains at or above an unmatched ask.
///      - bid marginal level `mb = max{l : D(l) >= Q}`: bids above `mb` fill completely, bids below get nothing;
///      - ask marginal level `ma = min{l : S(l) >= Q}`: asks below `ma` fill completely, asks above get nothing;
///      - every level in `[ma, mb]` clears `Q`, but only the levels of the market-clearing interval
///        `[lo, hi]` leave no rejected order in the money (a rejected order is one with unfilled volume):
///        `lo = max(ma, highest level with rejected bid volume)`, `hi = min(mb, lowest level with rejected ask
///        volume)`. A partly filled (rationed) marginal level has rejected volume at that level, so it pins
///        the price: a rationed bid level gives `lo = mb = hi`, a rationed ask level `lo = ma = hi` (both
///        cannot be rationed, or `Q` would not be maximal). Otherwise the rejected orders nearest the
///        marginal levels (bids below `mb`, asks above `ma`) narrow the interval. `lo <= hi` always holds
///        because `Q` is maximal: a rejected bid at or above a rejected ask could still trade.
///      - the uniform clearing price is the k-double-auction point of that interval with `k = 1/2`,
///        `lo + floor((hi - lo) / 2)`: rounded down onto the price tick (at most half a tick in buyers'
///        favour). It lies between every accepted ask and every accepted bid, no rejected bid lies above it
///        and no rejected ask below it. With `Q = 0` (empty book, one side empty, or no crossing) there is no
///        trade and no price (reported as 0).
///
///      Tie-breaking at a marginal level: pro-rata to order size. The level's matched energy `R` is shared
///      among its orders in the order they are settled: an order of `w` Wh at a level with `V` Wh of orders
///      not yet settled and `R` Wh still to allocate gets `floor(w * R / V)`; the last order gets the rest.
///      Allocations are exact (they sum to `R`) and each differs from the exact pro-rata share by less than 1 Wh.
abstract contract Auction is MarketBase {
    /// @notice Places a bid: buy up to `energyWh` Wh in `slot`, paying at most `pricePerKWh` credit base units
    ///         per kWh.
    /// @dev Caller must be a registered participant without debt and without a bid in this slot, before the
    ///      slot's gate closure, for at most its import capacity per slot ({ExceedsCapacity}). Escrows its worst
    ///      case, `energyWh * (pricePerKWh + longPenalty) / 1000`, from the caller's free balance: paying the full
    ///      limit price plus the slot's long imbalance penalty if none of it is used.
    ///      The slot must have been opened by the operator ({openSlot}), else {SlotNotOpen}, and must start at
    ///      most {orderHorizon} seconds from now, else {BeyondHorizon}. Reverts with {PositionSlotBusy} if the
    ///      caller's position of slot `slot - k * POSITION_RING` still awaits settlement. Emits {OrderPlaced}.
    function placeBid(uint64 slot, uint32 energyWh, uint256 pricePerKWh) external {
        _place(slot, Side.Bid, energyWh, pricePerKWh);
    }

    /// @notice Places an ask: sell up to `energyWh` Wh in `slot`, receiving at least `pricePerKWh` credit base
    ///         units per kWh.
    /// @dev Caller must be a registered prosumer without debt and without an ask in this slot, before gate
    ///      closure, for at most its export capacity per slot ({ExceedsCapacity}). Locks its worst case as
    ///      collateral, `energyWh * (retail + shortPremium - pricePerKWh) / 1000`: buying the whole amount at the
    ///      slot's short imbalance price if nothing is delivered, less what the sale earns at least. Same
    ///      open-slot, horizon and ring rules as {placeBid}. Emits {OrderPlaced}.
    function placeAsk(uint64 slot, uint32 energyWh, uint256 pricePerKWh) external {
        _place(slot, Side.Ask, energyWh, pricePerKWh);
    }

    /// @notice Opens `slot` ahead of its first order: snapshots the slot's terms (grid prices and imbalance
    ///         premiums from the registry, and the order horizon) and prepares its price-level words, so that no
    ///         order in the slot creates storage.
    /// @dev Operator only ({IRegistry-isOperator}; a keeper run by the operator, free on a chain without gas
    ///      fees), before the slot's gate closure, on a slot not yet open. Writes `maxLevel + 1` level words of the
    ///      set `slot % SLOT_RING`: it creates them the first time the set is used (about 5.0M gas at 221 levels,
    ///      5.8M at 256) and rewrites them afterwards (about 1.1M). The set's previous slot (`slot - SLOT_RING` or
    ///      earlier) must be cleared or past its gate closure; if nobody cleared it, this clears it first
    ///      ({SlotCleared}); if it still takes orders, reverts with {LevelWordsInUse}. It is the only way a slot
    ///      opens and its prices are fixed (the registry's prices for the slot at this moment, including the
    ///      operator's {Registry-setSlotPrices}); later registry price changes do not apply to it. Orders for a
    ///      slot that is not open revert with {SlotNotOpen}. Also deletes the header and cleared-volume words of
    ///      slot `slot - SLOT_WORDS_KEPT` if its settlement window has closed ({SlotWordsReclaimed}), so the
    ///      market's slot words stop growing. Reverts with {NotOperator}, {GateClosed} or {SlotAlreadyOpen}.
    ///      Emits {SlotOpened}.
    function openSlot(uint64 slot) external {
        if (!registry.isOperator(msg.sender)) revert NotOperator(msg.sender);
        if (block.timestamp + gateClosure >= slotStart(slot)) revert GateClosed(slot);
        if (_headers[slot] != 0) revert SlotAlreadyOpen(slot);
        mapping(uint256 => uint256) storage levels = _levelSet(slot);
        _releaseLevels(slot, levels[0]);

        // Effects.
        if (slot >= SLOT_WORDS_KEPT) {
            uint64 old = slot - uint64(SLOT_WORDS_KEPT);
            if (block.timestamp >= settlementClosesAt(old)) _reclaimWords(old);
        }
        uint256 maxLevel = (_openSlot(slot) >> 64) & _M8;
        uint256 tagged = (uint256(slot) + 1) << _LEVEL_TAG_SHIFT;
        for (uint256 l = 0; l <= maxLevel; ++l) {
            levels[l] = tagged;
        }
    }

    /// @notice Deletes the header and cleared-volume words of `slot`, whose settlement window has closed: nothing
    ///         reads them any more (a position left unsettled is closed as expired without them, see
    ///         {settlementClosesAt}).
    /// @dev Anyone may call. {openSlot} does this for slot `slot - SLOT_WORDS_KEPT`; this covers a slot whose
    ///      successor `SLOT_WORDS_KEPT` later was never opened. Reverts with {SettlementWindowOpen} before
    ///      {settlementClosesAt}, and with {NothingToReclaim} if both words are already zero. Emits
    ///      {SlotWordsReclaimed}.
    function reclaimSlot(uint64 slot) external {
        uint256 closes = settlementClosesAt(slot);
        if (block.timestamp < closes) revert SettlementWindowOpen(slot, closes);
        if (!_reclaimWords(slot)) revert NothingToReclaim(slot);
    }

    /// @notice Cancels the caller's order on `side` in `slot` and returns its escrow to the free balance.
    /// @dev Only before gate closure. Emits {OrderCancelled}.
    function cancelOrder(uint64 slot, Side side) external {
        if (block.timestamp + gateClosure >= slotStart(slot)) revert GateClosed(slot);
        uint256 pos = _position(slot, msg.sender);
        uint256 shift = side == Side.Bid ? 0 : 40;
        uint256 energyWh = (pos >> shift) & _M32;
        if (energyWh == 0) revert NoOrder(slot, msg.sender, side);
        uint256 level = (pos >> (shift + 32)) & _M8;

        uint256 header = _headers[slot];
        uint256 feedIn = header & _M64;
        uint256 price = feedIn + level * _tickPerWh;
        uint256 refund = side == Side.Bid
            ? energyWh * (price + ((pos >> (_PREMIUM_SHIFT + 16)) & _M16) * _tickPerWh)
            : energyWh * (feedIn + (((header >> 64) & _M8) + ((pos >> _PREMIUM_SHIFT) & _M16)) * _tickPerWh - price);

        // Effects.
        _storePosition(slot, msg.sender, pos & ~((_M32 | (_M8 << 32)) << shift));
        _levelSet(slot)[level] -= energyWh << (side == Side.Bid ? 0 : 64);
        _credit(msg.sender, refund);
        emit OrderCancelled(slot, msg.sender, side, uint32(energyWh), refund);
    }

    /// @notice Clears `slot`: computes the cleared volume, the marginal levels and the clearing price.
    /// @dev Anyone may call, once, after gate closure, if the slot was opened ({openSlot}).
    ///      Deterministic; reads the slot's `maxLevel + 1` (at most 256) price levels, independent of the number
    ///      of orders. Emits {SlotCleared}.
    function clear(uint64 slot) external {
        uint256 header = _headers[slot];
        uint256 status = header & _STATUS_BITS;
        if (status == 0) revert NothingToClear(slot);
        if (status == _STATUS_CLEARED) revert AlreadyCleared(slot);
        if (block.timestamp + gateClosure < slotStart(slot)) revert GateOpen(slot);
        _clear(slot, header);
    }

    // ------------------------------------------------------------------ views

    /// @notice The auction state of `slot`.
    function slotInfo(uint64 slot) external view returns (SlotInfo memory info) {
        uint256 header = _headers[slot];
        info.status = SlotStatus((header >> 72) & 3);
        if (info.status == SlotStatus.Empty) {
            (info.retailPerKWh, info.feedInPerKWh) = registry.pricesAt(slot);
            return info;
        }
        uint256 feedIn = header & _M64;
        info.feedInPerKWh = feedIn * 1000;
        info.retailPerKWh = (feedIn + ((header >> 64) & _M8) * _tickPerWh) * 1000;
        info.clearingLevel = uint8(header >> 80);
        info.bidMarginalLevel = uint8(header >> 88);
        info.askMarginalLevel = uint8(header >> 96);
        if (info.status == SlotStatus.Cleared) {
            info.clearedWh = header & _COMPACT != 0 ? uint64(_marginals[slot]) : uint64(header >> 104);
        } else {
            // The terms {openSlot} fixed, kept in the header until clearing.
            info.orderHorizon = uint32(header >> _HEADER_TERMS_SHIFT);
            info.shortPremiumPerKWh = ((header >> (_HEADER_TERMS_SHIFT + 32)) & _M16) * _tickPerWh * 1000;
            info.longPenaltyPerKWh = ((header >> (_HEADER_TERMS_SHIFT + 48)) & _M16) * _tickPerWh * 1000;
        }
        if (info.clearedWh != 0) info.clearingPricePerKWh = (feedIn + info.clearingLevel * _tickPerWh) * 1000;
        uint256 maxLevel = (header >> 64) & _M8;
        // The level words are reused once the slot is cleared ({SLOT_RING}): only its own words count.
        mapping(uint256 => uint256) storage levels = _levelSet(slot);
        for (uint256 l = 0; l <= maxLevel; ++l) {
            if (_ownLevel(slot, levels[l]) & _M128 != 0) info.activeLevels |= uint256(1) << l;
        }
    }

    /// @notice Aggregated bid and ask energy (Wh) at price `level` of `slot`.
    /// @dev Kept until slot `slot + SLOT_RING` is opened (the words are then reused, {SLOT_RING}); zero after that
    ///      (the {OrderPlaced} and {OrderCancelled} events keep the book).
    function levelVolumes(uint64 slot, uint8 level) external view returns (uint64 bidWh, uint64 askWh) {
        uint256 w = _ownLevel(slot, _levelSet(slot)[level]);
        return (uint64(w), uint64(w >> 64));
    }

    /// @notice Remaining pro-rata state of the marginal levels of a cleared `slot` (see contract docs).
    function marginalState(uint64 slot)
        external
        view
        returns (uint64 bidFillLeft, uint64 bidVolumeLeft, uint64 askFillLeft, uint64 askVolumeLeft)
    {
        uint256 header = _headers[slot];
        uint256 m = header & _COMPACT != 0 ? _expandMarginal(header) : _marginals[slot];
        return (uint64(m), uint64(m >> 64), uint64(m >> 128), uint64(m >> 192));
    }

    /// @notice The orders of `account` in `slot`.
    /// @dev Once the slot's words are reclaimed ({SlotWordsReclaimed}) its prices are gone: the limit prices then
    ///      read as zero (the {OrderPlaced} events keep them).
    function positionOf(uint64 slot, address account) external view returns (Position memory p) {
        uint256 pos = _position(slot, account);
        uint256 header = _headers[slot];
        uint256 feedIn = header & _M64;
        p.bidWh = uint32(pos);
        p.askWh = uint32(pos >> 40);
        if (p.bidWh != 0 && header != 0) p.bidPricePerKWh = (feedIn + ((pos >> 32) & _M8) * _tickPerWh) * 1000;
        if (p.askWh != 0 && header != 0) p.askPricePerKWh = (feedIn + ((pos >> 72) & _M8) * _tickPerWh) * 1000;
        p.settled = pos & _SETTLED != 0;
        p.shortPremiumPerKWh = ((pos >> _PREMIUM_SHIFT) & _M16) * _tickPerWh * 1000;
        p.longPenaltyPerKWh = ((pos >> (_PREMIUM_SHIFT + 16)) & _M16) * _tickPerWh * 1000;
    }

    /// @notice The most `account` may bid (`importWh`) and ask (`exportWh`) in one slot: its registered capacity
    ///         times the slot length (the market's copy, pushed by the registry).
    function capacityOf(address account) external view returns (uint64 importWh, uint64 exportWh) {
        uint256 c = _capacities[account];
        return (uint64(c), uint64(c >> 64));
    }

    /// @notice Credits currently locked by `account`'s orders in `slot` (zero once settled, and zero from
    ///         {settlementClosesAt} on: a position still unsettled then is expired and its credits forfeited).
    function lockedOf(uint64 slot, address account) public view returns (uint256) {
        uint256 pos = _position(slot, account);
        if (pos & _SETTLED != 0 || block.timestamp >= settlementClosesAt(slot)) return 0;
        uint256 header = _headers[slot];
        uint256 feedIn = header & _M64;
        uint256 shortPremium = ((pos >> _PREMIUM_SHIFT) & _M16) * _tickPerWh;
        uint256 longPenalty = ((pos >> (_PREMIUM_SHIFT + 16)) & _M16) * _tickPerWh;
        return (pos & _M32) * (feedIn + ((pos >> 32) & _M8) * _tickPerWh + longPenalty) + ((pos >> 40) & _M32)
            * ((((header >> 64) & _M8) - ((pos >> 72) & _M8)) * _tickPerWh + shortPremium);
    }

    // ------------------------------------------------------------------ internals

    /// @dev Clears the open `slot` whose gate has closed (see {clear}). Emits {SlotCleared}.
    function _clear(uint64 slot, uint256 header) private {
        (uint256 q, uint256 ma, uint256 mb, uint256 marginal, uint256 priceLevel) =
            _computeClearing(slot, (header >> 64) & _M8);

        // Effects. The marginal state goes into the header when it fits (see {MarketBase}), else its own word.
        uint256 cleared =
            (header & (_M64 | (_M8 << 64))) | _STATUS_CLEARED | (priceLevel << 80) | (mb << 88) | (ma << 96);
        if (q != 0 && _fitsCompact(marginal)) {
            _headers[slot] = cleared | _COMPACT | _compactMarginal(marginal);
            _marginals[slot] = q;
        } else {
            _headers[slot] = cleared | (q << 104);
            if (marginal != 0) _marginals[slot] = marginal;
        }

        uint256 feedIn = header & _M64;
        emit SlotCleared(
            slot,
            q == 0 ? 0 : (feedIn + priceLevel * _tickPerWh) * 1000,
            uint64(q),
            q == 0 ? 0 : (feedIn + mb * _tickPerWh) * 1000,
            q == 0 ? 0 : (feedIn + ma * _tickPerWh) * 1000
        );
    }

    /// @dev Frees the level-word set for `slot`: `w0` is its first word, tagged with the slot that used the set last.
    ///      A cleared slot (or a set never used) leaves it free; an open slot past its gate closure is cleared
    ///      now (its book is final, and clearing it is what anyone could do); one still taking orders keeps it.
    function _releaseLevels(uint64 slot, uint256 w0) private {
        uint256 tag = (w0 >> _LEVEL_TAG_SHIFT) & _M64;
        if (tag == 0) return;
        uint64 held = uint64(tag - 1);
        uint256 header = _headers[held];
        if (header & _STATUS_BITS != _STATUS_OPEN) return;
        if (block.timestamp + gateClosure < slotStart(held)) revert LevelWordsInUse(slot, held);
        _clear(held, header);
    }

    /// @dev Cleared volume, marginal levels, marginal pro-rata state and clearing price level of `slot` (see
    ///      contract docs). All zero when nothing clears.
    function _computeClearing(uint64 slot, uint256 maxLevel)
        private
        view
        returns (uint256 q, uint256 ma, uint256 mb, uint256 marginal, uint256 priceLevel)
    {
        uint256[] memory bids = new uint256[](maxLevel + 1);
        uint256[] memory asks = new uint256[](maxLevel + 1);
        uint256 totalBid;
        // The slot is open, so its level set still belongs to it ({_releaseLevels}).
        mapping(uint256 => uint256) storage levels = _levelSet(slot);
        for (uint256 l = 0; l <= maxLevel; ++l) {
            uint256 w = levels[l];
            bids[l] = w & _M64;
            asks[l] = (w >> 64) & _M64;
            totalBid += w & _M64;
        }

        // Q = max over levels of min(demand at or above, supply at or below).
        {
            uint256 supply;
            uint256 demand = totalBid;
            for (uint256 l = 0; l <= maxLevel; ++l) {
                supply += asks[l];
                uint256 m = supply < demand ? supply : demand;
                if (m > q) q = m;
                demand -= bids[l];
            }
        }

        if (q != 0) {
            (ma, mb, marginal) = _marginalLevels(bids, asks, totalBid, q);
            priceLevel = _priceLevel(bids, asks, ma, mb, marginal);
        }
    }

    /// @dev The marginal levels of a book clearing `q > 0` and their pro-rata state (layout of the `marginal`
    ///      word): `ma = min{l : S(l) >= q}`, `mb = max{l : D(l) >= q}` (see contract docs).
    function _marginalLevels(uint256[] memory bids, uint256[] memory asks, uint256 totalBid, uint256 q)
        private
        pure
        returns (uint256 ma, uint256 mb, uint256 marginal)
    {
        uint256 supply;
        uint256 demand = totalBid;
        bool maFound;
        uint256 demandAtMb;
        uint256 n = bids.length;
        for (uint256 l = 0; l < n; ++l) {
            supply += asks[l];
            if (!maFound && supply >= q) {
                ma = l;
                maFound = true;
                // ask marginal: remaining fill | remaining volume
                marginal |= ((q - (supply - asks[l])) << 128) | (asks[l] << 192);
            }
            if (demand >= q) {
                mb = l;
                demandAtMb = demand;
            } else {
                break;
            }
            demand -= bids[l];
        }
        // Bids strictly above mb total D(mb) - bids[mb]; they fill completely.
        marginal |= (q - (demandAtMb - bids[mb])) | (bids[mb] << 64);
    }

    /// @dev The clearing price level: the point `k = 1/2` of the market-clearing interval `[lo, hi]`, rounded
    ///      down (see contract docs). `marginal` holds the fill and volume of both marginal levels; the level
    ///      arrays are read only between `ma` and `mb`, so this costs little beyond the clearing itself.
    function _priceLevel(uint256[] memory bids, uint256[] memory asks, uint256 ma, uint256 mb, uint256 marginal)
        private
        pure
        returns (uint256)
    {
        uint256 lo = ma;
        uint256 hi = mb;
        // Highest rejected bid: the bid marginal level itself when rationed (fill < volume), else the highest
        // bid level strictly between ma and mb (bids below mb get nothing; those at or below ma cannot raise lo).
        if (marginal & _M64 < (marginal >> 64) & _M64) {
            lo = mb;
        } else {
            for (uint256 l = mb; l > ma + 1;) {
                unchecked {
                    --l;
                }
                if (bids[l] != 0) {
                    lo = l;
                    break;
                }
            }
        }
        // Lowest rejected ask: the ask marginal level when rationed, else the lowest ask level in (ma, mb).
        if ((marginal >> 128) & _M64 < marginal >> 192) {
            hi = ma;
        } else {
            for (uint256 l = ma + 1; l < mb; ++l) {
                if (asks[l] != 0) {
                    hi = l;
                    break;
                }
            }
        }
        // lo <= hi because Q is maximal (contract docs); k = 1/2, rounded down onto the tick.
        return lo + (hi - lo) / 2;
    }

    function _place(uint64 slot, Side side, uint32 energyWh, uint256 pricePerKWh) private {
        if (energyWh == 0) revert ZeroEnergy();
        if (block.timestamp + gateClosure >= slotStart(slot)) revert GateClosed(slot);
        uint256 acct = _accounts[msg.sender];
        _checkTrader(acct, side, energyWh);

        // Only the operator fixes a slot's terms ({openSlot}); an order never opens a slot.
        uint256 header = _headers[slot];
        if (header == 0) revert SlotNotOpen(slot);
        {
            uint256 horizon = (header >> _HEADER_TERMS_SHIFT) & _M32;
            uint256 start = slotStart(slot);
            if (start > block.timestamp + horizon) revert BeyondHorizon(slot, start, horizon);
        }
        // The slot's imbalance premiums (short | long << 16, in ticks), copied into the position for settlement.
        uint256 premiums = (header >> (_HEADER_TERMS_SHIFT + 32)) & _M32;
        (uint256 level, uint256 locked) = _levelAndLock(header, side, energyWh, pricePerKWh, premiums);

        uint256 shift = side == Side.Bid ? 0 : 40;
        uint256 pos = _positions[msg.sender][slot % POSITION_RING];
        if (pos >> _TAG_SHIFT != uint256(slot) + 1) {
            // The ring entry belongs to an older slot: reuse it unless that position still awaits settlement.
            if (pos & _ORDERS != 0 && pos & _SETTLED == 0) _expireHeld(pos);
            // Remember the latest earlier slot of this word that had orders (the old position if it had any, else
            // the one it remembered), so settlement can still tell whether that slot had orders ({settle}).
            uint256 prev = pos & _ORDERS != 0 ? pos >> _TAG_SHIFT : (pos >> _PREV_SHIFT) & _M64;
            pos = (premiums << _PREMIUM_SHIFT) | (prev << _PREV_SHIFT);
        } else if ((pos >> shift) & _M32 != 0) {
            revert OrderExists(slot, msg.sender, side);
        }

        uint256 debt = (acct >> 128) & _M120;
        if (debt != 0) revert OutstandingDebt(msg.sender, debt);
        if (acct & _M128 < locked) revert InsufficientBalance(msg.sender, locked, acct & _M128);

        // Effects.
        _accounts[msg.sender] = acct - locked;
        _storePosition(slot, msg.sender, pos | ((uint256(energyWh) | (level << 32)) << shift));
        _levelSet(slot)[level] += uint256(energyWh) << (side == Side.Bid ? 0 : 64);
        emit OrderPlaced(slot, msg.sender, side, pricePerKWh, energyWh, locked);
    }

    /// @dev The caller's ring word `pos` holds an unsettled position with orders of an older slot: reverts with
    ///      {PositionSlotBusy} while that slot can still be settled, else closes the position as expired (its word
    ///      is about to be reused; its credits stay forfeited, see {settlementClosesAt}). Emits {PositionExpired}.
    function _expireHeld(uint256 pos) private {
        uint64 held = uint64((pos >> _TAG_SHIFT) - 1);
        if (block.timestamp < settlementClosesAt(held)) revert PositionSlotBusy(msg.sender, held);
        emit PositionExpired(held, msg.sender, uint32(pos), uint32(pos >> 40));
    }

    /// @dev Deletes `slot`'s header and cleared-volume words; returns false if both were zero already. Emits
    ///      {SlotWordsReclaimed}.
    function _reclaimWords(uint64 slot) private returns (bool) {
        bool header = _headers[slot] != 0;
        bool marginal = _marginals[slot] != 0;
        if (!header && !marginal) return false;
        if (header) delete _headers[slot];
        if (marginal) delete _marginals[slot];
        emit SlotWordsReclaimed(slot);
        return true;
    }

    /// @dev Reverts unless the caller may place an order of `energyWh` on `side`: a participant (a prosumer to
    ///      ask) whose capacity per slot on that side is at least `energyWh`. Uses the role and capacity the
    ///      registry pushed to the market when it has them, else asks the registry.
    function _checkTrader(uint256 acct, Side side, uint256 energyWh) private view {
        uint256 cached = (acct >> _ROLE_SHIFT) & 3;
        IRegistry.Role role;
        uint256 cap;
        if (cached != 0) {
            role = IRegistry.Role(cached - 1);
            uint256 c = _capacities[msg.sender];
            cap = side == Side.Bid ? c & _M64 : c >> 64;
        } else {
            role = registry.roleOf(msg.sender);
            (uint32 importW, uint32 exportW) = registry.capacityOf(msg.sender);
            cap = _whPerSlot(side == Side.Bid ? importW : exportW);
        }
        if (role == IRegistry.Role.None) revert NotParticipant(msg.sender);
        if (side == Side.Ask && role != IRegistry.Role.Prosumer) revert NotProsumer(msg.sender);
        if (energyWh > cap) revert ExceedsCapacity(msg.sender, side, energyWh, cap);
    }

    /// @dev Validates `pricePerKWh` against the slot's range and tick; returns its level and the credits to lock:
    ///      the order's worst case with the slot's imbalance `premiums` (short | long << 16, in ticks).
    function _levelAndLock(uint256 header, Side side, uint32 energyWh, uint256 pricePerKWh, uint256 premiums)
        private
        view
        returns (uint256 level, uint256 locked)
    {
        uint256 feedIn = header & _M64;
        uint256 retail = feedIn + ((header >> 64) & _M8) * _tickPerWh;
        if (pricePerKWh < feedIn * 1000 || pricePerKWh > retail * 1000) {
            revert PriceOutOfRange(pricePerKWh, feedIn * 1000, retail * 1000);
        }
        uint256 price = pricePerKWh / 1000;
        uint256 offset = price - feedIn;
        if (pricePerKWh % 1000 != 0 || offset % _tickPerWh != 0) revert PriceNotOnTick(pricePerKWh, _tickPerWh * 1000);
        level = offset / _tickPerWh;
        locked = side == Side.Bid
            ? uint256(energyWh) * (price + (premiums >> 16) * _tickPerWh)
            : uint256(energyWh) * (retail - price + (premiums & _M16) * _tickPerWh);
    }

    /// @dev Snapshots `slot`'s terms into its header (the slot becomes `Open`): grid prices, imbalance premiums
    ///      and order horizon. Emits {SlotOpened}.
    function _openSlot(uint64 slot) private returns (uint256 header) {
        (uint256 retailPerKWh, uint256 feedInPerKWh) = registry.pricesAt(slot);
        (uint256 shortPremium, uint256 longPenalty) = registry.imbalancePrices();
        uint256 tick = _tickPerWh * 1000;
        uint256 horizon = orderHorizon;
        // The registry keeps premiums on the tick and within 16 bits of ticks ({Registry-setImbalancePrices}).
        header = (feedInPerKWh / 1000) | (((retailPerKWh - feedInPerKWh) / tick) << 64) | _STATUS_OPEN
            | (horizon << _HEADER_TERMS_SHIFT) | ((shortPremium / tick) << (_HEADER_TERMS_SHIFT + 32))
            | ((longPenalty / tick) << (_HEADER_TERMS_SHIFT + 48));
        _headers[slot] = header;
        emit SlotOpened(slot, retailPerKWh, feedInPerKWh, shortPremium, longPenalty, horizon);
    }
}
