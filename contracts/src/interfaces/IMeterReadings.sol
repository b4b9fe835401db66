// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title IMeterReadings
/// @notice Cumulative meter readings attested by the meters' own keys.
/// @dev A reading is the meter's cumulative import and export counters in watt-hours (Wh) and the meter's
///      unix timestamp in seconds. The counter value at each slot boundary is interpolated linearly between
///      the two stored readings that bracket it, whatever order they arrived in; the energy of slot `k` is the
///      difference of its two boundary values (for the slot holding a meter's newest reading: up to that
///      reading). Slots become final `finalityDelay` seconds after they end; readings that would change a
///      final slot are refused ({SlotFinal}).
///
///      **Retention.** A slot's energy is kept for `ENERGY_RING` (4,096) slots: each meter keeps its slot
///      energies in a ring of that many words, and slot `j`'s word is taken over by the first later slot
///      `j + n·4096` that gets energy, never before `slotStart(j + 4096) - MAX_CLOCK_SKEW`. After that,
///      {energyInSlot} reports slot `j` as zero without a reading and {energyKept} returns false. The market
///      bills a position settled after that as unmetered (zero import and export); its keeper settles each slot
///      right after its grace period and anyone may settle (contracts/README.md, "Meter energy is kept for
///      4,096 slots").
interface IMeterReadings {
    /// @notice A reading signed by the meter (EIP-712, type {READING_TYPEHASH}) and relayed by anyone.
    /// @dev `r`/`vs` is the EIP-2098 compact form of the meter's secp256k1 signature.
    struct SignedReading {
        address meter;
        uint64 importWh;
        uint64 exportWh;
        uint64 timestamp;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice A stored reading (effective counters, i.e. reset-adjusted) as {keptReadings} reports it.
    struct KeptReading {
        uint64 importWh;
        uint64 exportWh;
        uint64 timestamp;
    }

    /// @notice Energy counted for one meter in one slot.
    /// @dev `hasReading`: the slot contains a reading of the meter or lies between two of its readings (its
    ///      energy is then interpolated); false for slots before the meter's first reading, after its newest
    ///      one, for slots that became final while the meter was silent, and for slots whose energy is no longer
    ///      kept ({energyKept}).
    struct SlotEnergy {
        uint64 importWh;
        uint64 exportWh;
        bool hasReading;
    }

    error UnknownMeter(address meter);
    error NotOperator(address account);
    error TimestampInFuture(address meter, uint64 timestamp, uint256 blockTimestamp);
    error CounterDecreased(address meter, uint64 importWh, uint64 exportWh, uint64 lastImportWh, uint64 lastExportWh);
    error ConflictingReading(address meter, uint64 timestamp);
    error CounterTooLarge(address meter);
    error InvalidSignature(address meter);
    /// @notice The reading lies in a slot that is already final (`finalityDelay` seconds past its end).
    error SlotFinal(address meter, uint64 timestamp, uint64 firstOpenSlotStart);
    /// @notice A late reading's counters exceed those of the meter's next later reading.
    error CounterAboveLater(
        address meter, uint64 importWh, uint64 exportWh, uint64 laterImportWh, uint64 laterExportWh
    );
    /// @notice A late reading's counters are below the value already booked up to the first open slot.
    error CounterBelowFinalised(
        address meter, uint64 importWh, uint64 exportWh, uint64 finalImportWh, uint64 finalExportWh
    );
    /// @notice A reading older than the meter's last counter reset (its counters are on the old scale).
    error ReadingBeforeReset(address meter, uint64 timestamp, uint64 resetTimestamp);
    /// @notice More readings within the open slots than the window holds (cannot happen within the bound).
    error TooManyReadings(address meter);
    /// @notice The finality delay gives more open slots than {MAX_WINDOW_SLOTS}.
    error InvalidFinalityDelay(uint256 finalityDelay, uint256 windowSlots);
    /// @notice {recordRelayed} is only for this contract's own batch path.
    error OnlySelf();

    /// @notice A new reading was stored. Counters are the effective (reset-adjusted) values.
    event ReadingRecorded(address indexed meter, uint64 importWh, uint64 exportWh, uint64 timestamp);
    /// @notice Item `index` of a relayed batch was not recorded; `reason` is the selector of the custom error
    ///         that refused it (e.g. {InvalidSignature}, {SlotFinal}, {CounterDecreased}).
    event ReadingSkipped(uint256 index, address indexed meter, uint64 timestamp, bytes4 reason);
    /// @notice The operator recorded that `meter`'s counters were reset; its next reading may be lower.
    event MeterResetRecorded(address indexed meter, address indexed operator);

    /// @notice Start of slot 0 (unix seconds).
    function startTime() external view returns (uint64);

    /// @notice Slot length in seconds.
    function slotLength() external view returns (uint32);

    /// @notice Records a reading sent by the meter itself (`msg.sender` is the meter key).
    function submitReading(uint64 importWh, uint64 exportWh, uint64 timestamp) external;

    /// @notice Records a batch of EIP-712 signed readings; any account may relay. Invalid items are skipped,
    ///         each with a {ReadingSkipped} event, instead of reverting the batch.
    function submitReadings(SignedReading[] calldata readings) external;

    /// @notice Energy imported and exported by `meter` during `slot`; zero with `hasReading` false once the slot's
    ///         energy is no longer kept (a slot `ENERGY_RING` or more later took its word over, see {energyKept}).
    function energyInSlot(address meter, uint64 slot) external view returns (SlotEnergy memory);

    /// @notice Whether {energyInSlot} still reports `meter`'s own energy in `slot`: false once a slot `ENERGY_RING`
    ///         (4,096) or a multiple of it later got energy of this meter and took the slot's word over (the slot's
    ///         energy, if it had any, is gone). True for a slot the meter never reported in, as long as no later
    ///         slot took its word, and guaranteed true until `slotStart(slot + ENERGY_RING) - MAX_CLOCK_SKEW`.
    function energyKept(address meter, uint64 slot) external view returns (bool);
}
