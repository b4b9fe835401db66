//! Wire protocol: gossip topics and the sync request/response (status, header ranges, block
//! ranges).

use alloy_primitives::Bytes;
use serde::{Deserialize, Serialize};

/// Name of the sync request/response protocol. Version 2 added [`SyncRequest::Headers`]
/// (header-first sync), version 3 [`SyncRequest::BlockByHash`] (the body of a compact block);
/// nodes of different versions do not share it, so they do not sync with each other.
pub const SYNC_PROTOCOL: &str = "/p2pe/sync/3";

/// Largest gossip message (a block of many transactions).
pub const MAX_GOSSIP_BYTES: usize = 16 * 1024 * 1024;
/// Largest sync request.
pub const MAX_REQUEST_BYTES: u64 = 1024;
/// Largest sync response (a block range).
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// Most headers one header request may ask for.
pub const MAX_HEADERS_PER_REQUEST: u32 = 512;
/// Bytes of RLP headers one header answer carries at most: the serving side stops adding headers
/// at this budget (an answer always holds at least one). A Clique header is about 600 bytes (a
/// checkpoint adds 20 per signer), so a full request of 512 fits about twice over.
pub const HEADERS_RESPONSE_BUDGET: usize = 512 * 1024;
/// Largest answer to a header request that the requester reads: the budget plus room for a
/// checkpoint header of many signers and CBOR framing (headers travel as CBOR byte strings).
/// Anything longer is refused as garbage without being decoded.
pub const MAX_HEADERS_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Most blocks one range request may ask for.
pub const MAX_BLOCKS_PER_REQUEST: u32 = 256;
/// Bytes of RLP blocks one range answer carries at most: the serving side stops adding blocks at
/// this budget (an answer always holds at least one block). The answer is CBOR, where serde
/// writes each byte of a block as an integer of one or two bytes, so twice the budget plus
/// framing must stay under [`MAX_RESPONSE_BYTES`]; and the largest block a chain may allow must fit.
pub const SYNC_RESPONSE_BUDGET: usize = 16 * 1024 * 1024;

const _: () = {
    assert!(HEADERS_RESPONSE_BUDGET as u64 + 64 * 1024 <= MAX_HEADERS_RESPONSE_BYTES);
    assert!(2 * SYNC_RESPONSE_BUDGET + 1024 * 1024 <= MAX_RESPONSE_BYTES as usize);
    assert!(crate::chain::MAX_BLOCK_BYTES_CEILING as usize <= SYNC_RESPONSE_BUDGET);
    // A block is gossiped whole, in one message with room for gossipsub's framing.
    assert!(crate::chain::MAX_BLOCK_BYTES_CEILING as usize + 1024 * 1024 <= MAX_GOSSIP_BYTES);
};

/// The request/response protocol by which a node gives its pool to a peer that just connected
/// (to that peer alone; see [`super::txgossip`]).
pub const POOL_PROTOCOL: &str = "/p2pe/pool/1";
/// Largest pool announcement: one transaction batch ([`super::txgossip::BATCH_MAX_BYTES`] plus
/// the last transaction, at most 128 KiB), each byte written by CBOR in up to two bytes.
pub const MAX_POOL_REQUEST_BYTES: u64 = 2 * (512 + 128) * 1024 + 4096;

/// Gossip topic of new blocks on a chain. Each message is a block whole or compact (see
/// [`super::compact`]); version 2 added the compact form, so nodes of version 1 (raw blocks)
/// are on another topic.
pub fn blocks_topic(chain_id: u64, genesis: &alloy_primitives::B256) -> String {
    format!("/p2pe/{chain_id}/{genesis}/blocks/2")
}

/// Gossip topic of new transactions on a chain. Each message is a batch: an RLP list of
/// EIP-2718 encodings (see [`super::txgossip`]).
pub fn txs_topic(chain_id: u64, genesis: &alloy_primitives::B256) -> String {
    format!("/p2pe/{chain_id}/{genesis}/txbatch/1")
}

/// A request to a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The peer's chain: genesis, head and total difficulty.
    Status,
    /// Canonical headers `from..from+count`, RLP-encoded (header-first sync: a requester verifies
    /// them before it asks for their blocks).
    Headers {
        /// First block number.
        from: u64,
        /// How many (at most [`MAX_HEADERS_PER_REQUEST`]).
        count: u32,
    },
    /// Canonical blocks `from..from+count`, RLP-encoded.
    Blocks {
        /// First block number.
        from: u64,
        /// How many (at most [`MAX_BLOCKS_PER_REQUEST`]).
        count: u32,
    },
    /// The block with this hash, canonical or not, RLP-encoded: the answer is
    /// [`SyncResponse::Blocks`] with that block, or with none if the peer does not have it.
    BlockByHash {
        /// The block's hash.
        hash: [u8; 32],
    },
}

/// A peer's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The peer's chain.
    Status {
        /// Genesis hash (a peer on another chain is dropped).
        genesis: [u8; 32],
        /// Head number.
        head: u64,
        /// Head hash.
        head_hash: [u8; 32],
        /// Total difficulty, big-endian.
        total_difficulty: [u8; 32],
    },
    /// RLP headers in order, from the first one asked for; at most [`HEADERS_RESPONSE_BUDGET`]
    /// bytes of them (but always one when the peer has the first).
    Headers(Vec<Bytes>),
    /// RLP blocks in order.
    Blocks(Vec<Vec<u8>>),
    /// The request could not be served.
    Error(String),
}

/// A pool announcement: one transaction batch, encoded as on the transactions topic (an RLP list
/// of EIP-2718 encodings, see [`super::txgossip::encode_batch`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolBatch(pub Vec<u8>);

/// The answer to a pool announcement (it is validated afterwards, off the swarm task).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PoolAck {
    /// Taken for validation.
    Received,
    /// Refused before validation (rate limit); the reason names the rule.
    Refused(String),
}
