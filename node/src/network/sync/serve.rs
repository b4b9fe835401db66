//! Serving header ranges to syncing peers.

use alloy_primitives::Bytes;
use alloy_rlp::Encodable;

use crate::blockchain::Blockchain;
use crate::network::protocol::{SyncResponse, MAX_HEADERS_PER_REQUEST};
use crate::storage::{canonical_range, BlockQuery, StorageError};

/// Canonical headers `from..from + count` (at most [`MAX_HEADERS_PER_REQUEST`]), RLP-encoded, up
/// to `budget` bytes of them (always at least one when we have block `from`).
pub fn serve_headers(chain: &Blockchain, from: u64, count: u32, budget: usize) -> SyncResponse {
    let count = u64::from(count.min(MAX_HEADERS_PER_REQUEST));
    let to = from.saturating_add(count).min(chain.head_number().saturating_add(1));
    if from >= to {
        return SyncResponse::Headers(Vec::new());
    }
    let headers = chain.reads().with(|c| {
        let mut out: Vec<Bytes> = Vec::new();
        let mut bytes = 0usize;
        for (expected, (number, hash)) in (from..to).zip(canonical_range(c, from, to - 1)?) {
            // A reorganisation between the reads ends the answer early: it must stay contiguous.
            if number != expected {
                break;
            }
            let Some((header, _)) = c.header_by_hash(&hash)? else { break };
            let mut buf = Vec::with_capacity(header.length());
            header.encode(&mut buf);
            if !out.is_empty() && bytes + buf.len() > budget {
                break;
            }
            bytes += buf.len();
            out.push(buf.into());
        }
        Ok::<_, StorageError>(out)
    });
    match headers {
        Ok(h) => SyncResponse::Headers(h),
        Err(e) => SyncResponse::Error(e.to_string()),
    }
}
