// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IMeterReadings} from "./interfaces/IMeterReadings.sol";
import {IRegistry} from "./interfaces/IRegistry.sol";

/// @title MeterReadings
/// @notice Stores cumulative meter readings and derives the energy of every delivery slot from them.
/// @dev Only the meter's key attests: either it sends the transaction ({submitReading}) or it signs an
///      EIP-712 `MeterReading` that anyone relays in a batch ({submitReadings}).
///
///      Acceptance rules, per meter, comparing with the latest stored reading:
///      - unknown meter (not bound in the {IRegistry}): revert {UnknownMeter};
///      - timestamp more than {MAX_CLOCK_SKEW} seconds past block time: revert {TimestampInFuture};
///      - older timestamp than the latest: ignored (a late resend; no state change, no revert);
///      - same timestamp and same counters: ignored (duplicate, idempotent);
///      - same timestamp, different counters: revert {ConflictingReading};
///      - newer timestamp with a lower counter: revert {CounterDecreased}, unless the operator recorded a
///        reset ({recordMeterReset}); the first reading after a reset re-bases the meter so that its effective
///        counters continue from the last value (energy between the two readings counts as zero).
///
///      Storage per meter: one word with the latest effective counters and timestamp, and one word per slot
///      in which the meter reported, written when the meter's readings enter that slot and closed when they
///      leave it. A reading within the same slot as the previous one costs one warm storage write.
contract MeterReadings is IMeterReadings, EIP712 {
    /// @notice EIP-712 type hash of a signed reading.
    bytes32 public constant READING_TYPEHASH =
        keccak256("MeterReading(address meter,uint64 importWh,uint64 exportWh,uint64 timestamp)");

    /// @notice How far (seconds) a reading's timestamp may be ahead of the block timestamp.
    uint256 public constant MAX_CLOCK_SKEW = 60;

    uint256 private constant _M64 = type(uint64).max;
    uint256 private constant _RESET_PENDING = 1 << 192;
    uint256 private constant _REBASED = 1 << 193;
    /// @dev Slot key used for readings taken before `startTime`.
    uint256 private constant _NO_SLOT = type(uint256).max;

    /// @notice The registry that binds meters to participants and defines the slot schedule.
    IRegistry public immutable registry;
    /// @notice Start of slot 0 (copied from the registry).
    uint64 public immutable startTime;
    /// @notice Slot length in seconds (copied from the registry).
    uint32 public immutable slotLength;

    /// @dev meter => importWh (bits 0-63) | exportWh (64-127) | timestamp (128-191) | flags (192-193).
    mapping(address meter => uint256) private _latest;
    /// @dev meter => raw import base | effective import base | raw export base | effective export base.
    mapping(address meter => uint256) private _rebase;
    /// @dev meter => slot => (openImport + 1) | (openExport + 1) << 64 | (closeImport + 1) << 128 |
    ///      (closeExport + 1) << 192; a zero field means "not set".
    mapping(address meter => mapping(uint256 slot => uint256)) private _slots;

    /// @param registry_ The deployed {IRegistry}; the slot schedule is read from it once.
    constructor(IRegistry registry_) EIP712("P2PE Meter Readings", "1") {
        registry = registry_;
        startTime = registry_.startTime();
        slotLength = registry_.slotLength();
    }

    // ------------------------------------------------------------------ submission

    /// @inheritdoc IMeterReadings
    /// @dev `msg.sender` must be a bound meter. Counters in Wh, `timestamp` in unix seconds.
    function submitReading(uint64 importWh, uint64 exportWh, uint64 timestamp) external {
        _record(msg.sender, importWh, exportWh, timestamp);
    }

    /// @inheritdoc IMeterReadings
    /// @dev Each entry is verified against its meter's EIP-712 signature
    ///      (domain: name "P2PE Meter Readings", version "1", this chain, this contract). The whole batch
    ///      reverts on the first invalid entry (the error names the meter); duplicates and stale resends are
    ///      skipped silently, so a relayer may resend a batch safely.
    function submitReadings(SignedReading[] calldata readings) external {
        uint256 n = readings.length;
        for (uint256 i = 0; i < n; ++i) {
            SignedReading calldata r = readings[i];
            bytes32 digest = _hashTypedDataV4(
                keccak256(abi.encode(READING_TYPEHASH, r.meter, r.importWh, r.exportWh, r.timestamp))
            );
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, r.r, r.vs);
            if (err != ECDSA.RecoverError.NoError || signer != r.meter) revert InvalidSignature(r.meter);
            _record(r.meter, r.importWh, r.exportWh, r.timestamp);
        }
    }

    /// @notice Records that `meter`'s counters were reset (e.g. the meter was replaced); its next newer reading
    ///         may be lower than the last one and re-bases the effective counters.
    /// @dev Operator only ({IRegistry-isOperator}). The meter must be bound.
    function recordMeterReset(address meter) external {
        if (!registry.isOperator(msg.sender)) revert NotOperator(msg.sender);
        if (registry.participantOf(meter) == address(0)) revert UnknownMeter(meter);
        _latest[meter] |= _RESET_PENDING;
        emit MeterResetRecorded(meter, msg.sender);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IMeterReadings
    function energyInSlot(address meter, uint64 slot) external view returns (SlotEnergy memory e) {
        uint256 rec = _slots[meter][slot];
        uint256 imp;
        uint256 exp_;
        if (rec != 0) {
            uint256 close = rec >> 128;
            if (close == 0) {
                // The meter's latest reading is still inside `slot`.
                close = _latest[meter] & ((_M64 << 64) | _M64);
            } else {
                close -= 0x10000000000000001; // both fields are stored as value + 1
            }
            // Unchecked: the stored fields are `value + 1` (non-zero) and a meter's effective counters never
            // decrease, so each close value is at least the matching open value.
            unchecked {
                imp = (close & _M64) - ((rec & _M64) - 1);
                exp_ = (close >> 64) - (((rec >> 64) & _M64) - 1);
            }
        }
        e; // the named result (kept for the ABI) is returned by hand below
        // Encoded by hand: a `SlotEnergy` is three words (the compiler's struct encoder costs a few hundred gas
        // more on the settlement path, which calls this for every participant). Returns at once, so using the
        // scratch space and the free memory pointer's word is harmless (hence not marked memory-safe).
        assembly {
            mstore(0x00, imp)
            mstore(0x20, exp_)
            mstore(0x40, iszero(iszero(rec)))
            return(0x00, 0x60)
        }
    }

    /// @notice The latest stored reading of `meter` (effective counters) and whether a reset is pending.
    function latestReading(address meter)
        external
        view
        returns (uint64 importWh, uint64 exportWh, uint64 timestamp, bool resetPending)
    {
        uint256 w = _latest[meter];
        return (uint64(w), uint64(w >> 64), uint64(w >> 128), w & _RESET_PENDING != 0);
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

    function _slotOf(uint256 timestamp) private view returns (uint256) {
        if (timestamp < startTime) return _NO_SLOT;
        unchecked {
            return (timestamp - startTime) / slotLength;
        }
    }

    function _record(address meter, uint64 rawImport, uint64 rawExport, uint64 timestamp) private {
        if (registry.participantOf(meter) == address(0)) revert UnknownMeter(meter);
        if (timestamp > block.timestamp + MAX_CLOCK_SKEW) {
            revert TimestampInFuture(meter, timestamp, block.timestamp);
        }
        uint256 w = _latest[meter];
        (bool skip, uint256 imp, uint256 exp, uint256 flags) = _accept(meter, w, rawImport, rawExport, timestamp);
        if (skip) return;
        _updateSlots(meter, w, imp, exp, timestamp);
        _latest[meter] = imp | (exp << 64) | (uint256(timestamp) << 128) | flags;
        emit ReadingRecorded(meter, uint64(imp), uint64(exp), timestamp);
    }

    /// @dev Applies the acceptance rules. Returns `skip` for stale resends and duplicates, otherwise the
    ///      effective counters and the flags to store.
    function _accept(address meter, uint256 w, uint64 rawImport, uint64 rawExport, uint64 timestamp)
        private
        returns (bool skip, uint256 imp, uint256 exp, uint256 flags)
    {
        uint256 lastTs = (w >> 128) & _M64;
        uint256 lastImp = w & _M64;
        uint256 lastExp = (w >> 64) & _M64;
        bool first = (w & ~_RESET_PENDING) == 0;
        flags = w & _REBASED;

        if (w & _RESET_PENDING != 0 && !first) {
            if (timestamp <= lastTs) return (true, 0, 0, 0); // stale, or a duplicate of a pre-reset reading
            // Re-base: effective counters continue from the last effective values.
            _rebase[meter] = rawImport | (lastImp << 64) | (uint256(rawExport) << 128) | (lastExp << 192);
            return (false, lastImp, lastExp, _REBASED);
        }
        if (flags != 0) {
            uint256 b = _rebase[meter];
            uint256 rawBaseImp = b & _M64;
            uint256 rawBaseExp = (b >> 128) & _M64;
            if (rawImport < rawBaseImp || rawExport < rawBaseExp) {
                if (timestamp <= lastTs) return (true, 0, 0, 0); // a resend from before the reset
                revert CounterDecreased(meter, rawImport, rawExport, uint64(lastImp), uint64(lastExp));
            }
            imp = ((b >> 64) & _M64) + rawImport - rawBaseImp;
            exp = (b >> 192) + rawExport - rawBaseExp;
        } else {
            imp = rawImport;
            exp = rawExport;
        }
        if (imp >= _M64 || exp >= _M64) revert CounterTooLarge(meter);
        if (!first) {
            if (timestamp < lastTs) return (true, 0, 0, 0); // stale resend
            if (timestamp == lastTs) {
                if (imp == lastImp && exp == lastExp) return (true, 0, 0, 0); // duplicate
                revert ConflictingReading(meter, timestamp);
            }
            if (imp < lastImp || exp < lastExp) {
                revert CounterDecreased(meter, rawImport, rawExport, uint64(lastImp), uint64(lastExp));
            }
        }
    }

    /// @dev Opens the slot record when the meter's readings enter a new slot and closes the one they leave.
    function _updateSlots(address meter, uint256 w, uint256 imp, uint256 exp, uint256 timestamp) private {
        uint256 newSlot = _slotOf(timestamp);
        if ((w & ~_RESET_PENDING) == 0) {
            // First reading of this meter: the slot's energy counts from here.
            if (newSlot != _NO_SLOT) _slots[meter][newSlot] = (imp + 1) | ((exp + 1) << 64);
            return;
        }
        uint256 oldSlot = _slotOf((w >> 128) & _M64);
        if (newSlot != oldSlot) {
            // The last reading before the new slot opens it and closes the slot the meter leaves.
            uint256 open = ((w & _M64) + 1) | ((((w >> 64) & _M64) + 1) << 64);
            if (oldSlot != _NO_SLOT) _slots[meter][oldSlot] |= open << 128;
            _slots[meter][newSlot] = open;
        }
    }
}
