// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title IMeterReadings
/// @notice Cumulative meter readings attested by the meters' own keys.
/// @dev A reading is the meter's cumulative import and export counters in watt-hours (Wh) and the meter's
///      unix timestamp in seconds. The energy of slot `k` is the change of the counters between the last
///      reading before slot `k` starts and the last reading whose timestamp falls inside slot `k`.
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

    /// @notice Energy counted for one meter in one slot.
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

    /// @notice A new reading was stored. Counters are the effective (reset-adjusted) values.
    event ReadingRecorded(address indexed meter, uint64 importWh, uint64 exportWh, uint64 timestamp);
    /// @notice The operator recorded that `meter`'s counters were reset; its next reading may be lower.
    event MeterResetRecorded(address indexed meter, address indexed operator);

    /// @notice Start of slot 0 (unix seconds).
    function startTime() external view returns (uint64);

    /// @notice Slot length in seconds.
    function slotLength() external view returns (uint32);

    /// @notice Records a reading sent by the meter itself (`msg.sender` is the meter key).
    function submitReading(uint64 importWh, uint64 exportWh, uint64 timestamp) external;

    /// @notice Records a batch of EIP-712 signed readings; any account may relay.
    function submitReadings(SignedReading[] calldata readings) external;

    /// @notice Energy imported and exported by `meter` during `slot`.
    function energyInSlot(address meter, uint64 slot) external view returns (SlotEnergy memory);
}
