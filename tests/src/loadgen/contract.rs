//! The benchmark contract, hand-assembled.
//!
//! A call takes one 32-byte word `v` as calldata, stores it in the storage
//! slot keyed by the caller's address and emits `LOG1(topic = caller,
//! data = v)`. The load generator passes `v = nonce + 1`, so every call
//! writes a value different from the one in the slot: the `SSTORE` really
//! changes state (a 0 → non-zero write on a sender's first call).
//!
//! Runtime code ([`RUNTIME`], 13 bytes):
//!
//! ```text
//! pc  bytes  opcode         stack after (top first)
//! 00  5f     PUSH0          0
//! 01  35     CALLDATALOAD   v
//! 02  80     DUP1           v v
//! 03  33     CALLER         caller v v
//! 04  55     SSTORE         v                  ; storage[caller] = v
//! 05  5f     PUSH0          0 v
//! 06  52     MSTORE         -                  ; memory[0..32] = v
//! 07  33     CALLER         caller
//! 08  6020   PUSH1 0x20     32 caller
//! 0a  5f     PUSH0          0 32 caller
//! 0b  a1     LOG1           -                  ; log1(mem[0..32], topic0 = caller)
//! 0c  00     STOP
//! ```
//!
//! Init code ([`INIT_CODE`] = 9-byte constructor ‖ runtime):
//!
//! ```text
//! pc  bytes  opcode         stack after (top first)
//! 00  600d   PUSH1 0x0d     13                 ; runtime length
//! 02  80     DUP1           13 13
//! 03  6009   PUSH1 0x09     9 13 13            ; runtime offset in init code
//! 05  5f     PUSH0          0 9 13 13
//! 06  39     CODECOPY       13                 ; memory[0..13] = code[9..22]
//! 07  5f     PUSH0          0 13
//! 08  f3     RETURN                            ; return memory[0..13]
//! ```

use alloy_primitives::{Bytes, U256};

/// Runtime bytecode of the benchmark contract (see the module listing).
pub const RUNTIME: [u8; 13] = [
    0x5f, // PUSH0
    0x35, // CALLDATALOAD
    0x80, // DUP1
    0x33, // CALLER
    0x55, // SSTORE
    0x5f, // PUSH0
    0x52, // MSTORE
    0x33, // CALLER
    0x60, 0x20, // PUSH1 0x20
    0x5f, // PUSH0
    0xa1, // LOG1
    0x00, // STOP
];

/// Length of the constructor part of [`INIT_CODE`].
const CONSTRUCTOR_LEN: u8 = 9;

/// Creation bytecode: a constructor that returns [`RUNTIME`], followed by it.
pub const INIT_CODE: [u8; CONSTRUCTOR_LEN as usize + RUNTIME.len()] = {
    let ctor: [u8; CONSTRUCTOR_LEN as usize] = [
        0x60,
        RUNTIME.len() as u8, // PUSH1 runtime length
        0x80,                // DUP1
        0x60,
        CONSTRUCTOR_LEN, // PUSH1 runtime offset
        0x5f,            // PUSH0
        0x39,            // CODECOPY
        0x5f,            // PUSH0
        0xf3,            // RETURN
    ];
    let mut out = [0u8; CONSTRUCTOR_LEN as usize + RUNTIME.len()];
    let mut i = 0;
    while i < ctor.len() {
        out[i] = ctor[i];
        i += 1;
    }
    let mut j = 0;
    while j < RUNTIME.len() {
        out[ctor.len() + j] = RUNTIME[j];
        j += 1;
    }
    out
};

/// Calldata for one call: the 32-byte big-endian word `value`.
pub fn calldata(value: U256) -> Bytes {
    Bytes::from(value.to_be_bytes::<32>().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_code_layout() {
        assert_eq!(INIT_CODE.len(), 22);
        assert_eq!(&INIT_CODE[9..], &RUNTIME[..]);
        assert_eq!(
            alloy_primitives::hex::encode(INIT_CODE),
            "600d8060095f395ff35f35803355 5f5233 60205fa100".replace(' ', "")
        );
    }

    #[test]
    fn calldata_is_one_word() {
        let data = calldata(U256::from(7u64));
        assert_eq!(data.len(), 32);
        assert_eq!(data[31], 7);
    }
}
