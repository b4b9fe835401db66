//! Serving header ranges to syncing peers.

use alloy_primitives::Bytes;
use alloy_rlp::Encodable;

use crate::blockchain::Blockchain;
use crate::network::protocol::{SyncResponse, MAX_HEADERS_PER_REQUEST};
use crate::storage::BlockQuery;

/// Canonical headers `from..from + count` (at most [`MAX_HEADERS_PER_REQUEST`]), RLP-encoded, up
/// to `budget` bytes of them (always at least one when we have block `from`).
pub fn serve_headers(chain: &Blockchain, from: u64, count: u32, budget: usize) -> SyncResponse {
    let count = u64::from(count.min(MAX_HEADERS_PER_REQUEST));
    let to = from.saturating_add(count).min(chain.head_number().saturating_add(1));
    if from >= to {
        return SyncResponse::Headers(Vec::new());
    }
    // A reorganisation between the reads ends the answer early: it stays contiguous.
    let headers = chain.reads().canonical_headers(from, to - 1).map(|headers| {
        let mut out: Vec<Bytes> = Vec::new();
        let mut bytes = 0usize;
        for header in headers {
            let mut buf = Vec::with_capacity(header.length());
            header.encode(&mut buf);
            if !out.is_empty() && bytes + buf.len() > budget {
                break;
            }
            bytes += buf.len();
            out.push(buf.into());
        }
        out
    });
    match headers {
        Ok(h) => SyncResponse::Headers(h),
        Err(e) => SyncResponse::Error(e.to_string()),
    }
}
