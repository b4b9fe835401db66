// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "./Test.sol";

/// @notice Counts a contract's live storage words over a long run: every word it ever wrote (from `vm.accesses`
///         after `vm.record()`), and of those, how many are non-zero now. Used by the storage-growth tests
///         (`SlotRing.t.sol` for the market, `EnergyRing.t.sol` for the meter readings).
abstract contract StorageWords is Test {
    mapping(bytes32 => bool) private _seenWord;
    bytes32[] private _writtenWords;

    /// Adds `target`'s storage words written since the last call (or `vm.record()`) and restarts the recording.
    function _collectWrites(address target) internal {
        (, bytes32[] memory writes) = vm.accesses(target);
        for (uint256 i = 0; i < writes.length; ++i) {
            if (!_seenWord[writes[i]]) {
                _seenWord[writes[i]] = true;
                _writtenWords.push(writes[i]);
            }
        }
        vm.record();
    }

    /// `target`'s non-zero storage words among those ever collected.
    function _liveWords(address target) internal view returns (uint256 n) {
        for (uint256 i = 0; i < _writtenWords.length; ++i) {
            if (vm.load(target, _writtenWords[i]) != 0) ++n;
        }
    }
}
