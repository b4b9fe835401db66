// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IMeterReadings} from "./interfaces/IMeterReadings.sol";
import {IRegistry} from "./interfaces/IRegistry.sol";

/// @title MeterReadings
/// @notice Stores cumulative meter readings and derives the energy of every delivery slot from them, independently
///         of the order in which the readings arrive.
/// @dev Only the meter's key attests: either it sends the transaction ({submitReading}) or it signs an
///      EIP-712 `MeterReading` that anyone relays in a batch ({submitReadings}).
///
///      **Slot energy.** The readings of a meter, sorted by timestamp, cut time into segments. The counter change
///      of a segment `(P, Q)` is split over the slots it overlaps linearly in time, with the cumulative share at
///      time `τ` rounded down: `F(τ) = floor(Δ · (τ − tP) / (tQ − tP))`, and slot `j` gets
///      `F(min(tQ, end_j)) − F(max(tP, start_j))`. The shares of a segment add up exactly to its `Δ`, so the sum
///      over slots equals the counter difference. A slot's energy is the sum of the shares of every segment
///      overlapping it, kept in one storage word per slot ({energyInSlot} reads one word). When a late reading `R`
///      falls between stored readings `P` and `Q`, the shares of `(P, Q)` are subtracted and those of `(P, R)` and
///      `(R, Q)` added, so the result depends only on the set of readings, not on their arrival order.
///
///      **Finality.** Slot `k` is final from `slotEnd(k) + finalityDelay` (deploy with the market's grace
///      period, so every slot is final before it can be settled). A reading inside a final slot reverts
///      {SlotFinal}. When the reading before a new one lies in a final slot, the final slots keep what they were
///      given; the segment's left end becomes the counter value interpolated at the start of the first open slot
///      (the "anchor"), and the rest of the energy is split over the open slots from there. The new reading
///      must not lie below that anchor ({CounterBelowFinalised}).
///
///      **Acceptance rules**, per meter: unknown meter: {UnknownMeter}; timestamp more than {MAX_CLOCK_SKEW}
///      seconds past block time: {TimestampInFuture}; same timestamp as a stored reading: ignored if the
///      counters are equal (duplicate), else {ConflictingReading}; counters below the previous reading in time:
///      {CounterDecreased}; above the next one: {CounterAboveLater}; older than the last counter reset:
///      {ReadingBeforeReset}. After the operator's {recordMeterReset}, the first newer reading re-bases the meter
///      so that its effective counters continue from the last value (energy between the two counts as zero).
///
///      **Storage.** Per meter: one meta word, a ring of {RING_SIZE} reading words (only the first and last
///      reading of each slot are kept: a reading between two of the same slot changes no boundary and is not
///      stored; when the ring is full, readings before the last one preceding the first open slot are dropped),
///      and a ring of {ENERGY_RING} energy words: slot `j`'s energy lives in word `j % ENERGY_RING`, tagged with
///      `j + 1`, so a meter never holds more than {ENERGY_RING} energy words however long it reports.
///
///      **Retention.** A slot's energy is kept for {ENERGY_RING} slots: the word of slot `j` is taken over by the
///      first later slot `j + n·ENERGY_RING` that gets energy, which cannot happen before
///      `slotStart(j + ENERGY_RING) - MAX_CLOCK_SKEW` (no reading is more than {MAX_CLOCK_SKEW} seconds ahead).
///      From then on {energyInSlot} reports slot `j` as zero without a reading, as for a meter that never
///      reported, and {energyKept} tells the two cases apart. The market settles a position on that energy
///      whenever it is settled; its keeper settles each slot right after its grace period and anyone may settle,
///      so a position is settled on its metered energy unless nobody settled it for {ENERGY_RING} slots (see
///      contracts/README.md, "Meter energy is kept for 4,096 slots").
contract MeterReadings is IMeterReadings, EIP712 {
    /// @notice EIP-712 type hash of a signed reading.
    bytes32 public constant READING_TYPEHASH =
        keccak256("MeterReading(address meter,uint64 importWh,uint64 exportWh,uint64 timestamp)");

    /// @notice How far (seconds) a reading's timestamp may be ahead of the block timestamp.
    uint256 public constant MAX_CLOCK_SKEW = 60;
    /// @notice Most open slots (from the first open slot to the slot `MAX_CLOCK_SKEW` ahead) the deployment may
    ///         give; it keeps the ring ({RING_SIZE}) large enough and every reading's work bounded.
    uint256 public constant MAX_WINDOW_SLOTS = 31;
    /// @notice Reading words kept per meter (at most two per open slot and one before them: `2 · 31 + 1 < 64`).
    uint256 public constant RING_SIZE = 64;
    /// @notice Energy words kept per meter: slot `j`'s energy lives in word `j % ENERGY_RING` until a slot
    ///         `ENERGY_RING` (or a multiple) later takes the word over. 4,096 slots are 42.7 days of 15-minute
    ///         slots (about 2.8 days of 1-minute slots); the market's keeper settles each slot right after its
    ///         grace period, and a participant without orders can be settled only within the market's
    ///         `POSITION_RING` (64) slots anyway.
    /// @dev A power of two (`% ENERGY_RING` is a mask), far above {MAX_WINDOW_SLOTS}, so the open slots never
    ///      share a word (see {_split}).
    uint256 public constant ENERGY_RING = 4096;

    uint256 private constant _M64 = type(uint64).max;
    uint256 private constant _RING_MASK = RING_SIZE - 1;
    /// @dev Reading word: importWh (0-63) | exportWh (64-127) | timestamp (128-191) | this flag: the previous
    ///      kept reading lies in the same slot.
    uint256 private constant _SAME_SLOT_PREV = 1 << 192;
    /// @dev Energy word: importWh (0-63) | exportWh (64-127) | this flag (`hasReading`) | slot + 1 (192-255, the
    ///      slot whose energy the word holds; 0 in a word no slot has used).
    uint256 private constant _HAS_READING = 1 << 128;
    /// @dev Where an energy word keeps its slot + 1 (a slot key is below `2^64 - 1`: timestamps are `uint64`).
    uint256 private constant _ENERGY_TAG_SHIFT = 192;
    /// @dev Meta word: ring start (0-7) | length (8-15) | flags (16-17) | reset timestamp (64-127).
    uint256 private constant _RESET_PENDING = 1 << 16;
    uint256 private constant _REBASED = 1 << 17;
    /// @dev Slot key of timestamps before `startTime` (no slot is booked there).
    uint256 private constant _PRE_START = type(uint256).max;

    /// @notice The registry that binds meters to participants and defines the slot schedule.
    IRegistry public immutable registry;
    /// @notice Start of slot 0 (copied from the registry).
    uint64 public immutable startTime;
    /// @notice Slot length in seconds (copied from the registry).
    uint32 public immutable slotLength;
    /// @notice Seconds after a slot's end from which its energy no longer changes (the market's grace period).
    uint32 public immutable finalityDelay;
    /// @notice Upper bound on the open slots: `ceil((finalityDelay + MAX_CLOCK_SKEW) / slotLength) + 2`.
    uint256 public immutable windowSlots;

    mapping(address meter => uint256) private _meta;
    /// @dev meter => raw import base | effective import base | raw export base | effective export base.
    mapping(address meter => uint256) private _rebase;
    mapping(address meter => mapping(uint256 index => uint256)) private _ring;
    /// @dev meter => `slot % ENERGY_RING` => energy word of the slot in its tag (see {ENERGY_RING}).
    mapping(address meter => mapping(uint256 ringIndex => uint256)) private _energy;

    /// @dev One insertion in progress (kept in memory to keep the stack small).
    struct Ins {
        address meter;
        uint256 meta;
        uint256 r; // the new reading word
        uint256 s; // its slot key
        uint256 i; // its index in the sorted ring
        uint256 len;
        uint256 p; // reading before it (if hasP)
        uint256 q; // reading after it (if hasQ)
        bool hasP;
        bool hasQ;
        uint256 hT; // start of the first open slot (0: no slot is final yet)
    }

    /// @dev A segment between two readings being split over slots.
    struct Seg {
        uint256 tp; // time of its left reading
        uint256 span; // its length in seconds
        uint256 dI; // import change
        uint256 dE; // export change
        uint256 fI; // cumulative import share booked so far
        uint256 fE; // cumulative export share booked so far
    }

    /// @param registry_ The deployed {IRegistry}; the slot schedule is read from it once.
    /// @param finalityDelay_ Seconds after a slot's end until which readings may still change its energy; use
    ///        the market's `gracePeriod` (or less) so that no settled slot changes afterwards.
    constructor(IRegistry registry_, uint32 finalityDelay_) EIP712("P2PE Meter Readings", "1") {
        registry = registry_;
        startTime = registry_.startTime();
        uint32 len = registry_.slotLength();
        slotLength = len;
        finalityDelay = finalityDelay_;
        uint256 w = (uint256(finalityDelay_) + MAX_CLOCK_SKEW + len - 1) / len + 2;
        if (w > MAX_WINDOW_SLOTS) revert InvalidFinalityDelay(finalityDelay_, w);
        windowSlots = w;
    }

    // ------------------------------------------------------------------ submission

    /// @inheritdoc IMeterReadings
    /// @dev `msg.sender` must be a bound meter. Counters in Wh, `timestamp` in unix seconds. Reverts on any
    ///      refused reading; a duplicate is ignored.
    function submitReading(uint64 importWh, uint64 exportWh, uint64 timestamp) external {
        _record(msg.sender, importWh, exportWh, timestamp);
    }

    /// @inheritdoc IMeterReadings
    /// @dev Each entry is verified against its meter's EIP-712 signature (domain: name "P2PE Meter Readings",
    ///      version "1", this chain, this contract). An entry that is refused, for a bad signature or any rule of
    ///      {submitReading}, is skipped with {ReadingSkipped} (its index, meter, timestamp and the error's
    ///      selector); the others are recorded. Duplicates are ignored silently, so a relayer may resend a batch.
    ///      Should an entry fail without an error (out of gas), the whole batch reverts: a skip is only ever
    ///      the contract's verdict on the reading, never the relayer's gas.
    function submitReadings(SignedReading[] calldata readings) external {
        uint256 n = readings.length;
        for (uint256 i = 0; i < n; ++i) {
            SignedReading calldata r = readings[i];
            bytes32 digest =
                _hashTypedDataV4(keccak256(abi.encode(READING_TYPEHASH, r.meter, r.importWh, r.exportWh, r.timestamp)));
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, r.r, r.vs);
            if (err != ECDSA.RecoverError.NoError || signer != r.meter) {
                emit ReadingSkipped(i, r.meter, r.timestamp, InvalidSignature.selector);
                continue;
            }
            try this.recordRelayed(r.meter, r.importWh, r.exportWh, r.timestamp) {}
            catch (bytes memory reason) {
                if (reason.length < 4) {
                    assembly ("memory-safe") {
                        revert(add(reason, 32), mload(reason))
                    }
                }
                emit ReadingSkipped(i, r.meter, r.timestamp, bytes4(reason));
            }
        }
    }

    /// @notice The batch path's per-item call, so that a refused item reverts alone.
    /// @dev Callable only by this contract ({OnlySelf}); the signature was checked by {submitReadings}.
    function recordRelayed(address meter, uint64 importWh, uint64 exportWh, uint64 timestamp) external {
        if (msg.sender != address(this)) revert OnlySelf();
        _record(meter, importWh, exportWh, timestamp);
    }

    /// @notice Records that `meter`'s counters were reset (e.g. the meter was replaced); its next newer reading
    ///         may be lower than the last one and re-bases the effective counters.
    /// @dev Operator only ({IRegistry-isOperator}). The meter must be bound.
    function recordMeterReset(address meter) external {
        if (!registry.isOperator(msg.sender)) revert NotOperator(msg.sender);
        if (registry.participantOf(meter) == address(0)) revert UnknownMeter(meter);
        _meta[meter] |= _RESET_PENDING;
        emit MeterResetRecorded(meter, msg.sender);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IMeterReadings
    /// @dev One storage read whatever the readings: the slot's energy is kept up to date as readings arrive. A
    ///      word tagged with another slot (never used by `slot`, or taken over by a slot {ENERGY_RING} or more
    ///      later) reads as zero without a reading.
    function energyInSlot(address meter, uint64 slot) external view returns (SlotEnergy memory e) {
        uint256 w;
        // `_energy[meter][slot % ENERGY_RING]`, zero unless tagged `slot + 1`, without a branch (so every slot
        // costs the same) and in assembly (the compiler's mapping access costs about 100 gas more here, on the
        // settlement path).
        assembly ("memory-safe") {
            mstore(0x00, meter)
            mstore(0x20, _energy.slot)
            mstore(0x20, keccak256(0x00, 0x40))
            mstore(0x00, mod(slot, ENERGY_RING))
            w := sload(keccak256(0x00, 0x40))
            w := mul(w, eq(shr(_ENERGY_TAG_SHIFT, w), add(slot, 1)))
        }
        uint256 imp = w & _M64;
        uint256 exp_ = (w >> 64) & _M64;
        uint256 has = (w >> 128) & 1;
        e; // the named result (kept for the ABI) is returned by hand below
        // Encoded by hand: a `SlotEnergy` is three words (the compiler's struct encoder costs a few hundred gas
        // more on the settlement path, which calls this for every participant). Returns at once, so using the
        // scratch space and the free memory pointer's word is harmless (hence not marked memory-safe).
        assembly {
            mstore(0x00, imp)
            mstore(0x20, exp_)
            mstore(0x40, has)
            return(0x00, 0x60)
        }
    }

    /// @inheritdoc IMeterReadings
    /// @dev True unless `slot`'s word holds a later slot (its tag is above `slot + 1`).
    function energyKept(address meter, uint64 slot) external view returns (bool) {
        return _energy[meter][slot % ENERGY_RING] >> _ENERGY_TAG_SHIFT <= uint256(slot) + 1;
    }

    /// @notice The newest stored reading of `meter` (effective counters) and whether a reset is pending.
    function latestReading(address meter)
        external
        view
        returns (uint64 importWh, uint64 exportWh, uint64 timestamp, bool resetPending)
    {
        uint256 meta = _meta[meter];
        uint256 len = (meta >> 8) & 0xff;
        uint256 w = len == 0 ? 0 : _ring[meter][(meta + len - 1) & _RING_MASK];
        return (uint64(w), uint64(w >> 64), uint64(w >> 128), meta & _RESET_PENDING != 0);
    }

    /// @notice The readings of `meter` kept in its ring, oldest first (at most {RING_SIZE}; interior readings of
    ///         a slot are not kept, and readings that can no longer change an open slot are dropped when full).
    function keptReadings(address meter) external view returns (KeptReading[] memory out) {
        uint256 meta = _meta[meter];
        uint256 len = (meta >> 8) & 0xff;
        out = new KeptReading[](len);
        for (uint256 k = 0; k < len; ++k) {
            uint256 w = _ring[meter][(meta + k) & _RING_MASK];
            out[k] = KeptReading(uint64(w), uint64(w >> 64), uint64(w >> 128));
        }
    }

    /// @notice The first slot that is not final at the current block time (0 while slot 0 is open).
    function firstOpenSlot() public view returns (uint64) {
        uint256 hT = _horizon();
        return hT == 0 ? 0 : uint64((hT - startTime) / slotLength);
    }

    /// @notice Whether `slot`'s energy can no longer change: `block.timestamp >= slotEnd + finalityDelay`.
    function isFinal(uint64 slot) external view returns (bool) {
        return block.timestamp >= uint256(startTime) + (uint256(slot) + 1) * slotLength + finalityDelay;
    }

    /// @notice The slot that contains unix time `timestamp` (reverts if before `startTime`).
    function slotAt(uint64 timestamp) external view returns (uint64) {
        return uint64((timestamp - startTime) / slotLength);
    }

    /// @notice The EIP-712 domain separator used for signed readings.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ------------------------------------------------------------------ internals

    /// @dev Start of the first open slot, or 0 while no slot is final.
    function _horizon() private view returns (uint256) {
        uint256 t = block.timestamp;
        if (t < uint256(startTime) + slotLength + finalityDelay) return 0;
        unchecked {
            return uint256(startTime) + ((t - finalityDelay - startTime) / slotLength) * slotLength;
        }
    }

    function _slotKey(uint256 timestamp) private view returns (uint256) {
        if (timestamp < startTime) return _PRE_START;
        unchecked {
            return (timestamp - startTime) / slotLength;
        }
    }

    function _record(address meter, uint64 rawImport, uint64 rawExport, uint64 timestamp) private {
        if (registry.participantOf(meter) == address(0)) revert UnknownMeter(meter);
        if (timestamp > block.timestamp + MAX_CLOCK_SKEW) {
            revert TimestampInFuture(meter, timestamp, block.timestamp);
        }
        Ins memory x;
        x.hT = _horizon();
        if (timestamp < x.hT) revert SlotFinal(meter, timestamp, uint64(x.hT));
        x.meter = meter;
        x.meta = _meta[meter];
        x.len = (x.meta >> 8) & 0xff;
        uint256 tail = x.len == 0 ? 0 : _ring[meter][(x.meta + x.len - 1) & _RING_MASK];
        (uint256 imp, uint256 exp) = _effective(x, tail, rawImport, rawExport, timestamp);
        x.r = imp | (exp << 64) | (uint256(timestamp) << 128);
        x.s = _slotKey(timestamp);
        if (!_locate(x, tail)) return; // duplicate
        _book(x);
        emit ReadingRecorded(meter, uint64(imp), uint64(exp), timestamp);
    }

    /// @dev The effective (reset-adjusted) counters of a raw reading; applies a pending reset when the reading
    ///      is newer than the newest stored one. Updates `x.meta` (written later by {_store}).
    function _effective(Ins memory x, uint256 tail, uint64 rawImport, uint64 rawExport, uint64 timestamp)
        private
        returns (uint256 imp, uint256 exp)
    {
        uint256 meta = x.meta;
        if (x.len == 0) {
            x.meta = meta & ~_RESET_PENDING; // a first reading needs no re-base
        } else if (meta & _RESET_PENDING != 0 && timestamp > (tail >> 128) & _M64) {
            // Re-base: effective counters continue from the newest effective values.
            imp = tail & _M64;
            exp = (tail >> 64) & _M64;
            _rebase[x.meter] = rawImport | (imp << 64) | (uint256(rawExport) << 128) | (exp << 192);
            x.meta = (meta & ~(_RESET_PENDING | (_M64 << 64))) | _REBASED | (uint256(timestamp) << 64);
            return (imp, exp);
        }
        if (meta & _REBASED != 0) {
            uint256 resetTs = (meta >> 64) & _M64;
            if (timestamp < resetTs) revert ReadingBeforeReset(x.meter, timestamp, uint64(resetTs));
            uint256 b = _rebase[x.meter];
            uint256 rawBaseImp = b & _M64;
            uint256 rawBaseExp = (b >> 128) & _M64;
            if (rawImport < rawBaseImp || rawExport < rawBaseExp) {
                revert CounterDecreased(x.meter, rawImport, rawExport, uint64(b >> 64), uint64(b >> 192));
            }
            imp = ((b >> 64) & _M64) + rawImport - rawBaseImp;
            exp = (b >> 192) + rawExport - rawBaseExp;
        } else {
            imp = rawImport;
            exp = rawExport;
        }
        if (imp >= _M64 || exp >= _M64) revert CounterTooLarge(x.meter);
    }

    /// @dev Finds the new reading's place among the kept ones (scanning back from the newest; late readings are
    ///      near the end) and checks its counters against its neighbours in time. Returns false for a duplicate.
    function _locate(Ins memory x, uint256 tail) private returns (bool) {
        if (x.len == RING_SIZE) _prune(x);
        uint256 ts = x.r >> 128;
        uint256 i = x.len;
        uint256 p = tail;
        while (i > 0) {
            uint256 pts = (p >> 128) & _M64;
            if (pts < ts) break;
            if (pts == ts) {
                if ((p ^ x.r) & ((1 << 128) - 1) == 0) return false;
                revert ConflictingReading(x.meter, uint64(ts));
            }
            x.q = p;
            x.hasQ = true;
            --i;
            if (i > 0) p = _ring[x.meter][(x.meta + i - 1) & _RING_MASK];
        }
        x.i = i;
        x.hasP = i > 0;
        x.p = p;
        uint256 imp = x.r & _M64;
        uint256 exp = (x.r >> 64) & _M64;
        if (x.hasP && (imp < (p & _M64) || exp < ((p >> 64) & _M64))) {
            revert CounterDecreased(x.meter, uint64(imp), uint64(exp), uint64(p), uint64(p >> 64));
        }
        if (x.hasQ && (imp > (x.q & _M64) || exp > ((x.q >> 64) & _M64))) {
            revert CounterAboveLater(x.meter, uint64(imp), uint64(exp), uint64(x.q), uint64(x.q >> 64));
        }
        return true;
    }

    /// @dev Drops, from the oldest end of a full ring, every reading whose successor is not after the start of
    ///      the first open slot (such readings bracket no open boundary any more).
    function _prune(Ins memory x) private view {
        uint256 start = x.meta & 0xff;
        uint256 len = x.len;
        while (len >= 2 && (_ring[x.meter][(start + 1) & _RING_MASK] >> 128) & _M64 <= x.hT) {
            start = (start + 1) & _RING_MASK;
            --len;
        }
        if (len == RING_SIZE) revert TooManyReadings(x.meter);
        x.meta = (x.meta & ~uint256(0xffff)) | start | (len << 8);
        x.len = len;
    }

    /// @dev Updates the slot energies for the new reading and stores it in the ring.
    function _book(Ins memory x) private {
        if (!x.hasP) {
            // Older than every kept reading (or the meter's first): its slot counts from here.
            if (x.s != _PRE_START) _markHasReading(x.meter, x.s);
            if (x.hasQ) _split(x.meter, x.r, x.q, x.r >> 128, true);
            _store(x);
            _meta[x.meter] = x.meta;
            return;
        }
        uint256 pts = (x.p >> 128) & _M64;
        uint256 left = pts < x.hT ? _anchor(x, pts) : x.p;
        // Between two kept readings of its own slot: no boundary moves, nothing to store.
        if (x.hasQ && _slotKey((left >> 128) & _M64) == x.s && _slotKey((x.q >> 128) & _M64) == x.s) return;
        if (x.hasQ) {
            _split(x.meter, x.p, x.q, pts < x.hT ? x.hT : pts, false);
            _split(x.meter, x.r, x.q, x.r >> 128, true);
        }
        _split(x.meter, left, x.r, (left >> 128) & _M64, true);
        if (left != x.p) {
            // The reading before lies in a final slot: the anchor (or the new reading, when it is exactly at the
            // first open slot's start) takes its place.
            uint256 idx = (x.meta + x.i - 1) & _RING_MASK;
            if ((left >> 128) & _M64 == x.r >> 128) {
                _ring[x.meter][idx] = x.r;
                _meta[x.meter] = x.meta;
                return;
            }
            _ring[x.meter][idx] = left;
            x.p = left;
        }
        _store(x);
        _meta[x.meter] = x.meta;
    }

    /// @dev Sets slot `j`'s `hasReading` flag, starting from an empty word if the word still holds an older slot
    ///      (`j` is open, so the word cannot hold a later one: see {_split}).
    function _markHasReading(address meter, uint256 j) private {
        // In assembly: the storage slot is computed once for the read and the write (the compiler's two mapping
        // accesses cost about 300 gas more, on every meter's first reading).
        assembly ("memory-safe") {
            mstore(0x00, meter)
            mstore(0x20, _energy.slot)
            mstore(0x20, keccak256(0x00, 0x40))
            mstore(0x00, mod(j, ENERGY_RING))
            let word := keccak256(0x00, 0x40)
            let tag := shl(_ENERGY_TAG_SHIFT, add(j, 1))
            let w := sload(word)
            if iszero(eq(shl(_ENERGY_TAG_SHIFT, shr(_ENERGY_TAG_SHIFT, w)), tag)) { w := tag }
            sstore(word, or(w, _HAS_READING))
        }
    }

    /// @dev The counter value at the start of the first open slot, from the reading before it (`x.p`, at `pts`)
    ///      and the one after (if any): what the final slots were given up to there. The new reading must not
    ///      lie below it.
    function _anchor(Ins memory x, uint256 pts) private view returns (uint256 a) {
        uint256 aImp = x.p & _M64;
        uint256 aExp = (x.p >> 64) & _M64;
        if (x.hasQ) {
            uint256 span = ((x.q >> 128) & _M64) - pts;
            aImp += ((x.q & _M64) - aImp) * (x.hT - pts) / span;
            aExp += (((x.q >> 64) & _M64) - aExp) * (x.hT - pts) / span;
        }
        uint256 imp = x.r & _M64;
        uint256 exp = (x.r >> 64) & _M64;
        if (imp < aImp || exp < aExp) {
            revert CounterBelowFinalised(x.meter, uint64(imp), uint64(exp), uint64(aImp), uint64(aExp));
        }
        a = aImp | (aExp << 64) | (x.hT << 128);
    }

    /// @dev Puts the new reading into the ring at index `x.i`, keeping at most the first and last reading of each
    ///      slot: a kept reading that the new one makes interior to its slot is overwritten instead.
    function _store(Ins memory x) private {
        mapping(uint256 => uint256) storage ring = _ring[x.meter];
        uint256 base = x.meta;
        bool sameP = x.hasP && _slotKey((x.p >> 128) & _M64) == x.s;
        if (sameP && x.p & _SAME_SLOT_PREV != 0) {
            ring[(base + x.i - 1) & _RING_MASK] = x.r | _SAME_SLOT_PREV; // the previous last of the slot
            return;
        }
        if (!sameP && x.hasQ && _slotKey((x.q >> 128) & _M64) == x.s) {
            uint256 next = x.i + 1 < x.len ? ring[(base + x.i + 1) & _RING_MASK] : 0;
            if (next & _SAME_SLOT_PREV != 0) {
                ring[(base + x.i) & _RING_MASK] = x.r; // the previous first of the slot
                return;
            }
            x.q |= _SAME_SLOT_PREV;
            ring[(base + x.i) & _RING_MASK] = x.q;
        }
        for (uint256 k = x.len; k > x.i; --k) {
            ring[(base + k) & _RING_MASK] = ring[(base + k - 1) & _RING_MASK];
        }
        ring[(base + x.i) & _RING_MASK] = sameP ? x.r | _SAME_SLOT_PREV : x.r;
        x.meta += 1 << 8;
    }

    /// @dev Adds (or subtracts) the shares of segment `(p, q)` to the slots from the one containing `from`
    ///      (`from >= tp`, a slot start when `> tp`) to the one containing `tq`. With `tp == tq` (a reading at an
    ///      anchor's time) the whole change goes to that slot. Nothing is booked before `startTime`.
    ///
    ///      Ring words ({ENERGY_RING}): every slot written here (and by {_markHasReading}) is open. `from` is the
    ///      new reading's time or the start of the first open slot `F` or later, and `tq` is a reading's time, at
    ///      most {MAX_CLOCK_SKEW} seconds past the block, so each written slot `j` lies in `[F, W]` with `W` the
    ///      slot of `block.timestamp + MAX_CLOCK_SKEW`, and `W - F < windowSlots <= MAX_WINDOW_SLOTS`. Every word
    ///      written before holds a slot of at most `W` (block time never decreases): a slot `j' != j` sharing
    ///      `j`'s word (`j' ≡ j mod ENERGY_RING`) cannot be later (`j' >= j + ENERGY_RING > W`), so it is at most
    ///      `j - ENERGY_RING`, final long ago, and `j` starts from zero. A subtraction therefore always meets the
    ///      word its own addition wrote (and would revert on underflow otherwise).
    function _split(address meter, uint256 p, uint256 q, uint256 from, bool add) private {
        uint256 tq = (q >> 128) & _M64;
        if (tq < startTime) return;
        if (from < startTime) from = startTime;
        Seg memory g;
        g.tp = (p >> 128) & _M64;
        g.span = tq - g.tp;
        g.dI = (q & _M64) - (p & _M64);
        g.dE = ((q >> 64) & _M64) - ((p >> 64) & _M64);
        if (g.span != 0) (g.fI, g.fE) = _cumulative(g, from);
        mapping(uint256 => uint256) storage en = _energy[meter];
        uint256 last = (tq - startTime) / slotLength;
        for (uint256 j = (from - startTime) / slotLength; j <= last; ++j) {
            uint256 end = uint256(startTime) + (j + 1) * slotLength;
            (uint256 gI, uint256 gE) = _cumulative(g, end > tq ? tq : end);
            uint256 k;
            uint256 tag;
            unchecked {
                k = j % ENERGY_RING;
                tag = (j + 1) << _ENERGY_TAG_SHIFT; // `j < 2^64 - 1` (a slot key)
            }
            uint256 w = en[k];
            if (w >> _ENERGY_TAG_SHIFT << _ENERGY_TAG_SHIFT != tag) w = 0; // an older slot's word (see above)
            // Checked: a subtraction removes shares that an earlier addition put into this very word.
            (uint256 wi, uint256 we) = add
                ? ((w & _M64) + (gI - g.fI), ((w >> 64) & _M64) + (gE - g.fE))
                : ((w & _M64) - (gI - g.fI), ((w >> 64) & _M64) - (gE - g.fE));
            en[k] = wi | (we << 64) | _HAS_READING | tag;
            (g.fI, g.fE) = (gI, gE);
        }
    }

    /// @dev The segment's cumulative change up to time `t` (`tp <= t <= tq`), rounded down; all of it when the
    ///      segment has no length.
    function _cumulative(Seg memory g, uint256 t) private pure returns (uint256, uint256) {
        if (g.span == 0) return (g.dI, g.dE);
        return (g.dI * (t - g.tp) / g.span, g.dE * (t - g.tp) / g.span);
    }
}
