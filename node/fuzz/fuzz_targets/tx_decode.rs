//! Transaction decoding and validation: any bytes through `txpool::validate_tx`, the function
//! `eth_sendRawTransaction` and block import use. It must return a transaction or an error,
//! never panic; a transaction it accepts must re-encode to exactly the input bytes.

#![no_main]

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::Address;
use libfuzzer_sys::fuzz_target;
use p2pe_node::txpool::{validate_tx, ValidationContext};

fuzz_target!(|data: &[u8]| {
    let allow: std::collections::BTreeSet<Address> = [Address::repeat_byte(1)].into_iter().collect();
    for (chain_id, allowlist) in [(1337, None), (1, Some(&allow))] {
        let ctx = ValidationContext {
            chain_id,
            block_gas_limit: 30_000_000,
            max_tx_bytes: 128 * 1024,
            allowlist,
        };
        if let Ok(tx) = validate_tx(data, &ctx) {
            assert_eq!(tx.inner().encoded_2718(), data, "accepted bytes must round-trip");
        }
    }
});
