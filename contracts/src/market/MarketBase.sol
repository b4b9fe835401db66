// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IEnergyMarket} from "../interfaces/IEnergyMarket.sol";
import {IMeterReadings} from "../interfaces/IMeterReadings.sol";
import {IRegistry} from "../interfaces/IRegistry.sol";

/// @title MarketBase
/// @notice Configuration, packed storage layout and shared helpers of the {EnergyMarket}.
/// @dev Storage is packed by hand so that the hot paths touch as few words as possible:
///
///      account  = free (bits 0-127) | debt (128-247) | cached role + 1 (248-249; 0 = not cached) |
///                 positions initialised (250) | meter cached (251)
///      header   = feedInPerWh (0-63) | maxLevel (64-71) | status (72-73) | compact (79) |
///                 while open: order horizon (104-135) | short premium ticks (136-151) | long penalty ticks
///                 (152-167), the terms fixed by {openSlot};
///                 once cleared: clearingLevel (80-87) | bidMarginalLevel (88-95) | askMarginalLevel (96-103) |
///                 either clearedWh (104-167)                                          (compact flag clear)
///                 or the marginal state in four 38-bit fields (104-141, 142-179, 180-217, 218-255), in the
///                 order of the `marginal` word below                                 (compact flag set)
///      level    = bidWh (0-63) | askWh (64-127) | slot + 1 (128-191)     aggregated per price level, in the
///                 word set `slot % SLOT_RING` (reused by slot `slot + SLOT_RING` once `slot` is cleared)
///      marginal = bid remaining fill (0-63) | bid remaining volume (64-127) |
///                 ask remaining fill (128-191) | ask remaining volume (192-255)       (compact flag clear)
///                 or clearedWh (0-63)                                                 (compact flag set)
///      position = bidWh (0-31) | bidLevel (32-39) | askWh (40-71) | askLevel (72-79) | settled (80) |
///                 short premium ticks (88-103) | long penalty ticks (104-119) (the slot's, copied by each order) |
///                 earlier order slot + 1 (120-183: the latest earlier slot whose position in this word had
///                 orders, 0 if none) | slot + 1 (192-254) | initialised (255, only in a word that has never held
///                 a position)
///      capacity = import Wh per slot (0-63) | export Wh per slot (64-127)  (`_capacities`, pushed by the registry)
///      meter    = the participant's latest meter binding as pushed by the registry: meter (0-159) | from slot
///                 (160-207) | until slot (208-255, exclusive; 2^48 - 1 while open) (read when bit 251 of its
///                 account is set); `_previousMeters` holds the binding before it in the same layout (0: none)
///      settled without orders = per participant, two words (`_gridSettled[account][b % 2]` for the block
///                 `b = slot / 128` of 128 slots): bit `slot % 128` set once the participant's metered energy
///                 in that slot was settled against the grid with no order (0-127) | b + 1 (128-255)
///
///      No order creates a storage word. Creating a word (zero to non-zero) costs 20,000 gas more than
///      rewriting one, and the chain charges no gas fees, so words are created ahead of time by the operator:
///      - positions are kept in a ring of {POSITION_RING} words per account, indexed by `slot % POSITION_RING`
///        and tagged with the slot. When the registry registers a participant (role push, {onRoleChanged}) or
///        anyone calls {syncRole}, every ring word is written with the `initialised` sentinel. A new order
///        reuses the word of slot `k - POSITION_RING` once that old position is settled (or has no orders),
///        so every order rewrites an existing word; an unsettled old position blocks the word
///        ({PositionSlotBusy}): a participant has unsettled positions in at most {POSITION_RING} slots;
///      - the operator's keeper opens a slot before its first order ({openSlot}), which snapshots the grid
///        prices, imbalance premiums and order horizon into the header and writes every price-level word with
///        the slot's tag. An order for a slot nobody opened reverts ({SlotNotOpen}). The level words live in
///        {SLOT_RING} sets indexed by `slot % SLOT_RING`: they are needed only until the slot is cleared
///        (settlement reads the header), so slot `k + SLOT_RING` reuses the set of slot `k` (rewriting words
///        instead of creating them) and the market keeps at most `SLOT_RING * 256` level words whatever its age.
///      - a slot's header and cleared-volume word are needed until its settlement window closes
///        ({SETTLEMENT_WINDOW}); {openSlot} of slot `k` deletes those of slot `k - SLOT_WORDS_KEPT` (anyone may
///        delete them earlier with {reclaimSlot}), so the market keeps at most about `2 * SLOT_WORDS_KEPT` of them.
///      There is no bitmap of active levels (it would be one more word to write per new level): clearing
///      reads all `maxLevel + 1` level words, a constant cost.
///
///      The marginal levels' pro-rata state (remaining fill and volume of the bid and ask marginal levels) is
///      shared by every order at a marginal level and rewritten by each of their settlements. When its four
///      values fit in 38 bits each (below 2.7e11 Wh = 275 GWh at one price level, i.e. every realistic book),
///      clearing stores it in the slot header itself (`compact` flag), which settlement reads anyway, so a
///      marginal-level settlement only rewrites the header instead of also reading a cold word; the cleared
///      volume, needed only by views, then moves to the `marginal` word. Larger levels use the `marginal` word.
///
///      Price level `l` of a slot means `feedIn + l * priceTick` (credit base units per kWh); prices per Wh
///      are those divided by 1000, which is exact because every price is a multiple of 1000.
abstract contract MarketBase is IEnergyMarket {
    uint256 internal constant _M8 = 0xff;
    uint256 internal constant _M32 = 0xffffffff;
    uint256 internal constant _M64 = 0xffffffffffffffff;
    uint256 internal constant _M128 = type(uint128).max;
    uint256 internal constant _M120 = type(uint120).max;
    uint256 internal constant _ROLE_SHIFT = 248;
    uint256 internal constant _ROLE_BITS = uint256(3) << 248;
    /// @dev Account flag: the account's position ring words have been created.
    uint256 internal constant _POSITIONS_READY = uint256(1) << 250;
    /// @dev Account flag: `_meters[account]` mirrors the registry's binding.
    uint256 internal constant _METER_CACHED = uint256(1) << 251;
    /// @dev Everything in an account word that is not money: cached role and flags.
    uint256 internal constant _ACCOUNT_FLAGS = uint256(0xff) << 248;
    /// @dev Non-zero marker of a pre-created position or level word; never part of a value.
    uint256 internal constant _INITIALISED = uint256(1) << 255;

    uint256 internal constant _STATUS_OPEN = 1 << 72;
    uint256 internal constant _STATUS_CLEARED = 2 << 72;
    /// @dev The status field of a header ({SlotStatus}).
    uint256 internal constant _STATUS_BITS = 3 << 72;
    /// @dev Header flag: the marginal pro-rata state lives in header bits 104-255 (see the layout above).
    uint256 internal constant _COMPACT = 1 << 79;
    uint256 internal constant _M38 = 0x3fffffffff; // 2^38 - 1
    /// @dev Bits 38-63 of each of the four 64-bit fields of a `marginal` word.
    uint256 internal constant _ABOVE_38 = 0xffffffc000000000ffffffc000000000ffffffc000000000ffffffc000000000;
    uint256 internal constant _SETTLED = 1 << 80;
    uint256 internal constant _ORDERS = _M32 | (_M32 << 40);
    /// @dev Where a position word keeps its slot + 1; `pos >> _TAG_SHIFT` is that tag (the sentinel bit 255 makes a
    ///      never-used word's tag 2^63, which no slot reaches: orders go at most `orderHorizon` ahead).
    uint256 internal constant _TAG_SHIFT = 192;
    /// @dev Where a position word keeps the latest earlier slot (+ 1) whose position in this word had orders.
    uint256 internal constant _PREV_SHIFT = 120;
    uint256 internal constant _M48 = 0xffffffffffff;
    /// @dev Slots per word of the settled-without-orders bitmap (see the layout above).
    uint256 internal constant _GRID_BLOCK = 128;
    /// @dev Where the imbalance premiums (two 16-bit tick counts) sit in a position word; in an open header they
    ///      sit at `_HEADER_TERMS_SHIFT + 32`, after the order horizon.
    uint256 internal constant _PREMIUM_SHIFT = 88;
    uint256 internal constant _HEADER_TERMS_SHIFT = 104;
    uint256 internal constant _M16 = 0xffff;

    /// @notice Number of slots an account's positions are spread over before storage is reused; a participant
    ///         can have unsettled positions in at most this many slots (see {PositionSlotBusy}): an order for
    ///         slot `k` needs the participant's position of slot `k - 64` (or `k + 64`, ...) settled or empty.
    ///         64 slots are 16 hours of 15-minute slots. Registration creates this many words per participant.
    uint256 public constant POSITION_RING = 64;

    /// @notice Number of price-level word sets; slot `k` uses set `k % SLOT_RING` from {openSlot} until it is
    ///         cleared, then slot `k + SLOT_RING` reuses it (issue 14, part 7: storage that does not grow with the
    ///         market's age). The operator can therefore have at most this many slots open and not yet past
    ///         their gate closure ({LevelWordsInUse}); 128 slots are 32 hours of 15-minute slots.
    uint256 public constant SLOT_RING = 128;
    /// @dev Where a level word keeps its slot + 1.
    uint256 internal constant _LEVEL_TAG_SHIFT = 128;

    /// @notice Number of slots after which a slot's positions with orders can no longer be settled: until
    ///         {settlementClosesAt}`(k)` = `settlementOpensAt(k + SETTLEMENT_WINDOW)`. A position still unsettled then
    ///         is closed as expired ({PositionExpired}: its escrow and collateral are forfeited). 4,096 slots are 42.7
    ///         days of 15-minute slots, as long as `MeterReadings` keeps a slot's energy (`ENERGY_RING`), so a slot's
    ///         terms are never dropped while its meters' energy is still there.
    uint256 public constant SETTLEMENT_WINDOW = 4096;
    /// @notice Number of slots a slot's header and cleared-volume words are kept: {openSlot}`(k)` deletes those of
    ///         slot `k - SLOT_WORDS_KEPT` ({SlotWordsReclaimed}), whose settlement window closed long before (twice
    ///         {SETTLEMENT_WINDOW}, so a keeper opening up to 4,095 slots ahead still reclaims them). The market thus
    ///         keeps at most about `2 * SLOT_WORDS_KEPT` slot words whatever its age.
    uint256 public constant SLOT_WORDS_KEPT = 8192;

    /// @notice Participants, meters, prices and the slot schedule.
    IRegistry public immutable registry;
    /// @notice The credit token ({CreditToken}) held in escrow.
    IERC20 public immutable token;
    /// @notice Source of metered energy per slot.
    IMeterReadings public immutable readings;
    /// @notice The grid operator's market account: sells at retail, buys at feed-in, receives pay-as-bid spreads.
    address public immutable gridAccount;
    /// @notice Start of slot 0 (unix seconds), from the registry.
    uint64 public immutable startTime;
    /// @notice Slot length in seconds, from the registry.
    uint32 public immutable slotLength;
    /// @notice Orders for a slot close this many seconds before the slot starts.
    uint32 public immutable gateClosure;
    /// @notice Settlement of a slot opens this many seconds after the slot ends (time for late readings).
    uint32 public immutable gracePeriod;
    /// @notice Pricing rule of matched orders.
    MarketMode public immutable mode;
    /// @dev The registry's price tick divided by 1000 (credit base units per Wh).
    uint256 internal immutable _tickPerWh;
    /// @dev The storage slot of `_accounts[gridAccount]`, computed once (settlement updates it in every call).
    bytes32 internal immutable _gridWord;

    mapping(address account => uint256) internal _accounts;
    mapping(uint64 slot => uint256) internal _headers;
    mapping(uint64 slot => uint256) internal _marginals;
    /// @dev Price-level words per set `slot % SLOT_RING` (see {SLOT_RING}).
    mapping(uint256 ringIndex => mapping(uint256 level => uint256)) internal _levels;
    mapping(address account => mapping(uint256 ringIndex => uint256)) internal _positions;
    /// @dev Each participant's latest meter binding, packed (see the layout above).
    mapping(address participant => uint256) internal _meters;
    /// @dev The binding before it in the participant's history, same layout (0: none).
    mapping(address participant => uint256) internal _previousMeters;
    /// @dev Which slots each participant was settled in without orders (see the layout above).
    mapping(address account => mapping(uint256 ringIndex => uint256)) internal _gridSettled;
    mapping(address account => uint256) internal _capacities;

    /// @notice The registry's order horizon in seconds (pushed by the registry, see {IRoleListener}): orders are
    ///         accepted only for slots starting at most this long after the current block.
    uint32 public orderHorizon;

    constructor(
        IRegistry registry_,
        IERC20 token_,
        IMeterReadings readings_,
        address gridAccount_,
        uint32 gateClosure_,
        uint32 gracePeriod_,
        MarketMode mode_
    ) {
        if (
            address(registry_) == address(0) || address(token_) == address(0) || address(readings_) == address(0)
                || gridAccount_ == address(0)
        ) revert ZeroAddress();
        if (readings_.startTime() != registry_.startTime() || readings_.slotLength() != registry_.slotLength()) {
            revert InvalidSchedule();
        }
        registry = registry_;
        token = token_;
        readings = readings_;
        gridAccount = gridAccount_;
        startTime = registry_.startTime();
        slotLength = registry_.slotLength();
        gateClosure = gateClosure_;
        gracePeriod = gracePeriod_;
        mode = mode_;
        _tickPerWh = registry_.priceTick() / 1000;
        bytes32 gridWord;
        assembly ("memory-safe") {
            mstore(0x00, gridAccount_)
            mstore(0x20, _accounts.slot)
            gridWord := keccak256(0x00, 0x40)
        }
        _gridWord = gridWord;
        uint32 horizon = registry_.orderHorizon();
        orderHorizon = horizon;
        emit OrderHorizonSynced(horizon);
    }

    /// @notice Unix time at which `slot` starts.
    function slotStart(uint64 slot) public view returns (uint256) {
        unchecked {
            return uint256(startTime) + uint256(slot) * slotLength; // below 2^97
        }
    }

    /// @notice Unix time from which orders for `slot` are refused and the slot can be cleared.
    /// @dev Returns 0 when the gate closure lies before the unix epoch.
    function gateClosureTime(uint64 slot) public view returns (uint256) {
        uint256 start = slotStart(slot);
        return start > gateClosure ? start - gateClosure : 0;
    }

    /// @notice Unix time from which `slot` can be settled (slot end plus grace period).
    function settlementOpensAt(uint64 slot) public view returns (uint256) {
        unchecked {
            return slotStart(slot) + slotLength + gracePeriod;
        }
    }

    /// @notice Until when positions with orders in `slot` can be settled (unix seconds, exclusive): the settlement
    ///         opening of slot `slot + SETTLEMENT_WINDOW`.
    /// @dev Why a window: settlement needs the slot's header (prices, clearing result, pro-rata state), and the
    ///      market can only delete it once no settlement can read it any more; a count of unsettled positions per
    ///      slot would cost every settlement a header write, beyond the gas target. From this time on {settle}
    ///      closes a position left unsettled as expired ({PositionExpired}), and so does a new order that needs its
    ///      position word.
    function settlementClosesAt(uint64 slot) public view returns (uint256) {
        unchecked {
            // Below 2^110: `slot < 2^64`, `slotLength < 2^32`.
            return uint256(startTime) + (uint256(slot) + SETTLEMENT_WINDOW + 1) * slotLength + gracePeriod;
        }
    }

    /// @notice Until when `slot` can be settled for a participant without orders in it (unix seconds, exclusive):
    ///         the settlement opening of slot `slot + POSITION_RING`.
    /// @dev Why a limit: whether the participant had orders in `slot` is read from its position ring word, which
    ///      remembers one earlier slot with orders; once two later slots of the word had orders, `slot`'s own could
    ///      not be told apart and its meter could be billed twice. The second of those can be settled only from
    ///      this time on, so up to it the answer is exact. The keeper settles each slot right after its grace.
    ///      The meter's energy of `slot` is kept far longer (until at least `ENERGY_RING` = 4,096 slots after
    ///      `slot`'s start less 60 s, {IMeterReadings}), so with any grace period shorter than 4,031 slots less
    ///      60 s a settlement without orders always reads it.
    function gridSettlementClosesAt(uint64 slot) public view returns (uint256) {
        return settlementOpensAt(slot + uint64(POSITION_RING));
    }

    /// @dev The meter that the binding copies `latest` and `previous` (packed as in `_meters`, see the layout above)
    ///      give `slot`: the latest binding's if it starts at or before `slot`, else the previous binding's (the two
    ///      are consecutive in the history, so a slot from the previous one's start on is either in it or in the gap
    ///      between the two), each only inside its binding; else none.
    function _meterFrom(uint256 latest, uint256 previous, uint256 slot) internal pure returns (address) {
        return _bindingMeter(slot >= (latest >> 160) & _M48 ? latest : previous, slot);
    }

    /// @dev The meter of binding word `w` if `slot` lies in `[fromSlot, untilSlot)`, else none (also for `w = 0`).
    function _bindingMeter(uint256 w, uint256 slot) internal pure returns (address meter) {
        assembly ("memory-safe") {
            meter := mul(
                and(w, 0xffffffffffffffffffffffffffffffffffffffff),
                and(iszero(lt(slot, and(shr(160, w), 0xffffffffffff))), lt(slot, shr(208, w)))
            )
        }
    }

    /// @dev The first slot the binding copies `latest` and `previous` answer for: the previous binding's start, else
    ///      the latest's, else none (`type(uint256).max`: every slot reads "no meter").
    function _coveredFrom(uint256 latest, uint256 previous) internal pure returns (uint256) {
        uint256 w = previous != 0 ? previous : latest;
        return w != 0 ? (w >> 160) & _M48 : type(uint256).max;
    }

    /// @dev The settled-without-orders record of `account` in `slot`, whose position ring word for `slot` is `word`
    ///      (holding no orders of `slot`): `AlreadySettled` if `slot` had orders that were settled and whose word a
    ///      later slot reuses (the word remembers the latest earlier slot with orders; before
    ///      {gridSettlementClosesAt} that is `slot` if it had any) or if its bit is set; else zero, the record's word
    ///      with the bit set, and the storage slot of that word (`_gridSettled[account][(slot / _GRID_BLOCK) % 2]`).
    function _gridRecord(address account, uint256 slot, uint256 word)
        internal
        view
        returns (bytes4 skip, uint256 record, bytes32 key)
    {
        unchecked {
            uint256 target = slot + 1; // slot < 2^64
            if (word >> _TAG_SHIFT > target && (word >> _PREV_SHIFT) & _M64 >= target) {
                return (AlreadySettled.selector, 0, 0);
            }
            uint256 tag = slot / _GRID_BLOCK + 1;
            assembly ("memory-safe") {
                mstore(0x00, account)
                mstore(0x20, _gridSettled.slot)
                mstore(0x20, keccak256(0x00, 0x40))
                mstore(0x00, and(sub(tag, 1), 1))
                key := keccak256(0x00, 0x40)
                record := sload(key)
            }
            if (record >> 128 != tag) record = 0; // the word holds an older block, long past its closing time
            uint256 bit = uint256(1) << (slot % _GRID_BLOCK);
            if (record & bit != 0) return (AlreadySettled.selector, 0, 0);
            record |= bit | (tag << 128);
        }
    }

    /// @dev Energy (Wh) a connection of `watts` carries in one slot, rounded down.
    function _whPerSlot(uint256 watts) internal view returns (uint256) {
        return watts * slotLength / 3600;
    }

    /// @dev The position word of `account` in `slot`, or 0 if the ring entry holds another slot.
    function _position(uint64 slot, address account) internal view returns (uint256 pos) {
        pos = _positions[account][slot % POSITION_RING];
        if (pos >> _TAG_SHIFT != uint256(slot) + 1) pos = 0;
    }

    /// @dev The price-level words `slot` uses (set `slot % SLOT_RING`).
    function _levelSet(uint64 slot) internal view returns (mapping(uint256 => uint256) storage) {
        return _levels[slot % SLOT_RING];
    }

    /// @dev Level word `w` of `slot`'s set if it still belongs to `slot`, else 0 (the set was reused).
    function _ownLevel(uint64 slot, uint256 w) internal pure returns (uint256) {
        return (w >> _LEVEL_TAG_SHIFT) & _M64 == uint256(slot) + 1 ? w : 0;
    }

    /// @dev Stores `pos` as `account`'s position in `slot`.
    function _storePosition(uint64 slot, address account, uint256 pos) internal {
        _positions[account][slot % POSITION_RING] = pos | ((uint256(slot) + 1) << _TAG_SHIFT);
    }

    /// @dev The marginal pro-rata state of a header with the `compact` flag, in the layout of the `marginal` word.
    function _expandMarginal(uint256 header) internal pure returns (uint256) {
        return ((header >> 104) & _M38) | (((header >> 142) & _M38) << 64) | (((header >> 180) & _M38) << 128)
            | ((header >> 218) << 192);
    }

    /// @dev Header bits 104-255 holding `marginal` (layout of the `marginal` word); every field must be below
    ///      2^38 (see {_fitsCompact}).
    function _compactMarginal(uint256 marginal) internal pure returns (uint256) {
        return ((marginal & _M38) << 104) | (((marginal >> 64) & _M38) << 142) | (((marginal >> 128) & _M38) << 180)
            | (((marginal >> 192) & _M38) << 218);
    }

    /// @dev Whether every 64-bit field of `marginal` fits in 38 bits.
    function _fitsCompact(uint256 marginal) internal pure returns (bool) {
        return marginal & _ABOVE_38 == 0;
    }

    /// @dev Credits `amount` to `account`: repays its debt first, and what a participant repays goes to the grid
    ///      account (repaying the grid's own debt first, see {Settlement}); the grid's own repayment goes nowhere,
    ///      it restores the market's backing.
    function _credit(address account, uint256 amount) internal {
        uint256 repaid = _addFree(account, amount);
        if (repaid != 0 && account != gridAccount) _addFree(gridAccount, repaid);
    }

    /// @dev Moves `amount` into `account`'s free balance, repaying its debt first.
    /// @return repaid The part that went to repaying debt.
    function _addFree(address account, uint256 amount) internal returns (uint256 repaid) {
        uint256 acct = _accounts[account];
        uint256 debt = (acct >> 128) & _M120;
        if (debt != 0) {
            repaid = amount < debt ? amount : debt;
            debt -= repaid;
            amount -= repaid;
            emit DebtRepaid(account, repaid);
        }
        uint256 free = (acct & _M128) + amount;
        if (free > _M128) revert BalanceOverflow(account);
        _accounts[account] = free | (debt << 128) | (acct & _ACCOUNT_FLAGS);
    }
}
