//! How receipts are stored: without their logs bloom.
//!
//! A receipt's bloom is 256 bytes derived from its logs, most of a transfer's receipt (about 270
//! bytes with it, 10 without). Every receipt is stored twice (in its block's row and in its
//! transaction's `block_txs` row), so the bloom was over half of the bytes a block of transfers
//! wrote. It is recomputed from the logs when a receipt is read, as reth does.
//!
//! Formats, told apart by their first byte (rows written before this format keep theirs):
//!
//! - one receipt: `0x00`, the transaction type, then the RLP list `[status, cumulative gas,
//!   logs]`. Rows written before: the receipt's EIP-2718 encoding, which starts with its type
//!   (`0x01`-`0x04`) or with an RLP list header (legacy), never with `0x00`;
//! - a block's receipts: `0x00`, then an RLP list of byte strings, each one receipt as above.
//!   Blobs written before: an RLP list of receipts, which starts with a list header.

use alloy_consensus::{Eip658Value, Receipt, ReceiptEnvelope, TxType};
use alloy_eips::eip2718::{Decodable2718, Typed2718};
use alloy_primitives::{Bytes, Log};
use alloy_rlp::{Decodable, Encodable, Header};

use super::StorageError;

/// First byte of the bloomless formats.
const BLOOMLESS: u8 = 0x00;

/// One receipt, without its bloom.
pub(crate) fn encode_receipt(r: &ReceiptEnvelope) -> Vec<u8> {
    let receipt = r.as_receipt().expect("every receipt type carries a receipt");
    let payload_length =
        receipt.status.length() + receipt.cumulative_gas_used.length() + receipt.logs.length();
    let mut out = Vec::with_capacity(2 + payload_length + 3);
    out.push(BLOOMLESS);
    out.push(r.ty());
    Header { list: true, payload_length }.encode(&mut out);
    receipt.status.encode(&mut out);
    receipt.cumulative_gas_used.encode(&mut out);
    receipt.logs.encode(&mut out);
    out
}

/// A block's receipts, each without its bloom.
pub(crate) fn encode_receipts(receipts: &[ReceiptEnvelope]) -> Vec<u8> {
    let items: Vec<Bytes> = receipts.iter().map(|r| Bytes::from(encode_receipt(r))).collect();
    let mut out = vec![BLOOMLESS];
    alloy_rlp::encode_list::<_, Bytes>(&items, &mut out);
    out
}

/// One stored receipt, in either format; the bloom is recomputed from the logs.
pub(crate) fn decode_receipt(raw: &[u8]) -> Result<ReceiptEnvelope, String> {
    match raw {
        [BLOOMLESS, ty, rest @ ..] => {
            let ty = TxType::try_from(*ty).map_err(|e| e.to_string())?;
            let mut buf = rest;
            let header = Header::decode(&mut buf).map_err(|e| e.to_string())?;
            if !header.list || header.payload_length != buf.len() {
                return Err("a stored receipt must be one RLP list and nothing after it".into());
            }
            let status = Eip658Value::decode(&mut buf).map_err(|e| e.to_string())?;
            let cumulative_gas_used = u64::decode(&mut buf).map_err(|e| e.to_string())?;
            let logs = Vec::<Log>::decode(&mut buf).map_err(|e| e.to_string())?;
            if !buf.is_empty() {
                return Err("bytes after a stored receipt's logs".into());
            }
            Ok(ReceiptEnvelope::from_typed(ty, Receipt { status, cumulative_gas_used, logs }.with_bloom()))
        }
        [BLOOMLESS] => Err("a stored receipt without its type".into()),
        _ => ReceiptEnvelope::decode_2718(&mut &raw[..]).map_err(|e| e.to_string()),
    }
}

/// A block's stored receipts, in either format.
pub(crate) fn decode_receipts(raw: &[u8]) -> Result<Vec<ReceiptEnvelope>, StorageError> {
    let corrupt = |e: String| StorageError::Corrupt(format!("receipts: {e}"));
    match raw.split_first() {
        Some((&BLOOMLESS, mut rest)) => {
            let items = Vec::<Bytes>::decode(&mut rest).map_err(|e| corrupt(e.to_string()))?;
            if !rest.is_empty() {
                return Err(corrupt("bytes after the list".into()));
            }
            items.iter().map(|item| decode_receipt(item).map_err(corrupt)).collect()
        }
        _ => Vec::<ReceiptEnvelope>::decode(&mut &raw[..]).map_err(|e| corrupt(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{Address, B256};

    use super::*;

    fn receipts() -> Vec<ReceiptEnvelope> {
        let log = Log::new_unchecked(
            Address::repeat_byte(7),
            vec![B256::repeat_byte(1), B256::repeat_byte(2)],
            Bytes::from_static(b"data"),
        );
        let receipt = |ok: bool, gas: u64, logs: Vec<Log>| {
            Receipt { status: Eip658Value::Eip658(ok), cumulative_gas_used: gas, logs }.with_bloom()
        };
        vec![
            ReceiptEnvelope::from_typed(TxType::Legacy, receipt(true, 21_000, vec![])),
            ReceiptEnvelope::from_typed(TxType::Eip2930, receipt(false, 50_000, vec![log.clone()])),
            ReceiptEnvelope::from_typed(
                TxType::Eip1559,
                receipt(true, 90_000, vec![log.clone(), log.clone()]),
            ),
            ReceiptEnvelope::from_typed(TxType::Eip7702, receipt(true, 120_000, vec![log])),
        ]
    }

    #[test]
    fn receipts_round_trip_without_their_bloom_and_get_it_back() {
        let all = receipts();
        for r in &all {
            let stored = encode_receipt(r);
            assert!(stored.len() + 250 < r.encoded_2718().len(), "the bloom is not stored");
            let back = decode_receipt(&stored).unwrap();
            assert_eq!(&back, r, "same receipt, same bloom");
            assert_eq!(back.logs_bloom(), r.logs_bloom());
        }
        assert_eq!(decode_receipts(&encode_receipts(&all)).unwrap(), all);
        assert_eq!(decode_receipts(&encode_receipts(&[])).unwrap(), vec![]);
    }

    #[test]
    fn rows_written_with_the_bloom_still_read() {
        let all = receipts();
        for r in &all {
            assert_eq!(&decode_receipt(&r.encoded_2718()).unwrap(), r);
        }
        let mut old_blob = Vec::new();
        all.encode(&mut old_blob);
        assert_eq!(decode_receipts(&old_blob).unwrap(), all);
        let mut empty = Vec::new();
        Vec::<ReceiptEnvelope>::new().encode(&mut empty);
        assert_eq!(decode_receipts(&empty).unwrap(), vec![]);
    }

    #[test]
    fn damaged_stored_receipts_are_errors() {
        let good = encode_receipt(&receipts()[2]);
        assert!(decode_receipt(&good[..good.len() - 1]).is_err(), "truncated");
        let mut longer = good.clone();
        longer.push(0x80);
        assert!(decode_receipt(&longer).is_err(), "a byte after the list");
        let mut bad_type = good.clone();
        bad_type[1] = 9;
        assert!(decode_receipt(&bad_type).is_err(), "unknown type");
        assert!(decode_receipt(&[BLOOMLESS]).is_err(), "no type");
        assert!(decode_receipt(&[]).is_err(), "empty");
        let blob = encode_receipts(&receipts());
        assert!(matches!(decode_receipts(&blob[..blob.len() - 3]), Err(StorageError::Corrupt(_))));
        let mut trailing = blob.clone();
        trailing.push(0);
        assert!(decode_receipts(&trailing).is_err(), "a byte after the list");
    }
}
