//! Answering peers' sync requests, off the swarm task.
//!
//! The swarm task checks the peer (allowlist, bans) and its rate limit, then queues the request
//! for [`SERVE_WORKERS`] blocking threads that read the chain; the queue holds at most
//! [`SERVE_QUEUE`] requests and a request that finds it full is refused at once ("busy"), so a
//! flood never grows memory nor delays the swarm task (gossip, sealing's blocks). Answers go back
//! to the swarm task, which sends them.

use std::sync::Arc;

use alloy_primitives::B256;
use alloy_rlp::Encodable;
use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use tokio::sync::mpsc;

use super::protocol::{
    SyncRequest, SyncResponse, HEADERS_RESPONSE_BUDGET, MAX_BLOCKS_PER_REQUEST, SYNC_RESPONSE_BUDGET,
};
use crate::blockchain::Blockchain;
use crate::primitives::Block;
use crate::storage::{BlockQuery, StorageError};

/// Requests waiting for a serving thread, at most.
pub const SERVE_QUEUE: usize = 64;
/// Threads that serve requests.
pub const SERVE_WORKERS: usize = 2;

/// A request to serve.
pub(super) struct Job {
    pub peer: PeerId,
    pub request: SyncRequest,
    pub channel: ResponseChannel<SyncResponse>,
}

/// A served request, back to the swarm task.
pub(super) struct Served {
    pub peer: PeerId,
    pub response: SyncResponse,
    pub channel: ResponseChannel<SyncResponse>,
    /// Bytes of blocks or headers in the answer (charged to the peer's rate limit).
    pub bytes: usize,
}

/// Starts the serving threads; returns the queue to them.
pub(super) fn start_workers(chain: Arc<Blockchain>, served: mpsc::Sender<Served>) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>(SERVE_QUEUE);
    let rx = Arc::new(parking_lot::Mutex::new(rx));
    for i in 0..SERVE_WORKERS {
        let (chain, rx, served) = (chain.clone(), rx.clone(), served.clone());
        let spawned = std::thread::Builder::new().name(format!("p2p-serve-{i}")).spawn(move || loop {
            let job = rx.lock().blocking_recv();
            let Some(Job { peer, request, channel }) = job else { return };
            let response = serve(&chain, request);
            let bytes = match &response {
                SyncResponse::Blocks(b) => b.iter().map(Vec::len).sum(),
                SyncResponse::Headers(h) => h.iter().map(|h| h.len()).sum(),
                _ => 0,
            };
            if served.blocking_send(Served { peer, response, channel, bytes }).is_err() {
                return;
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a thread to serve peers");
        }
    }
    tx
}

/// Block `hash`: the block this node sealed and is committing (gossiped before its commit ends, so a
/// peer may ask for its body meanwhile), else the stored one.
fn block_by_hash(chain: &Blockchain, hash: &B256) -> Result<Option<Block>, StorageError> {
    if let Some(sealed) = chain.committing(hash) {
        return Ok(Some(sealed.block.clone()));
    }
    Ok(chain.reads().block_by_hash(hash)?.map(|(b, _)| b.block))
}

/// Answers a sync request from our chain. A range answer stops at [`SYNC_RESPONSE_BUDGET`] bytes
/// of blocks (but always carries one), so it fits the response cap whatever the blocks' sizes.
pub fn serve(chain: &Blockchain, request: SyncRequest) -> SyncResponse {
    match request {
        SyncRequest::Status => {
            let head = chain.head();
            SyncResponse::Status {
                genesis: chain.spec().genesis_hash.0,
                head: head.header.number,
                head_hash: head.hash.0,
                total_difficulty: head.total_difficulty.to_be_bytes(),
            }
        }
        SyncRequest::Headers { from, count } => {
            super::sync::serve_headers(chain, from, count, HEADERS_RESPONSE_BUDGET)
        }
        SyncRequest::Blocks { from, count } => serve_blocks(chain, from, count, SYNC_RESPONSE_BUDGET),
        SyncRequest::BlockByHash { hash } => match block_by_hash(chain, &hash.into()) {
            Ok(found) => SyncResponse::Blocks(found.map(|b| alloy_rlp::encode(&b)).into_iter().collect()),
            Err(e) => SyncResponse::Error(e.to_string()),
        },
    }
}

/// Canonical blocks `from..from + count` (at most [`MAX_BLOCKS_PER_REQUEST`]), RLP-encoded, up to
/// `budget` bytes of them (always at least one block).
pub fn serve_blocks(chain: &Blockchain, from: u64, count: u32, budget: usize) -> SyncResponse {
    let count = count.min(MAX_BLOCKS_PER_REQUEST) as u64;
    let to = from.saturating_add(count).min(chain.head_number() + 1);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    for n in from..to {
        let block = chain.reads().canonical_block(n);
        match block {
            Ok(Some((b, _))) => {
                let mut buf = Vec::new();
                b.block.encode(&mut buf);
                // The byte budget: the requester asks for fewer blocks next time.
                if !out.is_empty() && bytes + buf.len() > budget {
                    break;
                }
                bytes += buf.len();
                out.push(buf);
            }
            Ok(None) => break,
            Err(e) => return SyncResponse::Error(e.to_string()),
        }
    }
    SyncResponse::Blocks(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::blockchain::{unix_now, ChainOptions};
    use crate::chain::{build_genesis, ChainSpec, GenesisParams};
    use crate::crypto::SigningKey;
    use crate::storage::Store;
    use crate::txpool::{validate_tx, PoolConfig, TxPool};
    use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{Address, TxKind, B256};

    /// A one-signer chain of three blocks of about 60 KB each (a transaction of 60,000 zero bytes).
    fn chain_of_large_blocks(dir: &Path) -> Blockchain {
        let signer = SigningKey::from_bytes(&B256::repeat_byte(0x61)).unwrap();
        let t0 = unix_now() - 100;
        let params = GenesisParams {
            chain_id: 60,
            signers: vec![signer.address()],
            timestamp: t0,
            ..Default::default()
        };
        let json = serde_json::to_string(&build_genesis(&params)).unwrap();
        let spec = ChainSpec::from_json(&json).unwrap();
        let mut store = Store::open(dir, None).unwrap();
        store.init_genesis(&spec, &json).unwrap();
        let opts = ChainOptions { read_connections: 1, ..Default::default() };
        let chain =
            Blockchain::open(spec, store, Arc::new(TxPool::new(PoolConfig::default())), &opts).unwrap();
        for n in 1..=3u8 {
            let sender = SigningKey::from_bytes(&B256::repeat_byte(0x70 + n)).unwrap();
            let tx = TxEip1559 {
                chain_id: 60,
                gas_limit: 21_000 + 10 * 60_000,
                to: TxKind::Call(Address::ZERO),
                input: vec![0u8; 60_000].into(),
                ..Default::default()
            };
            let sig = sender.sign_hash(&tx.signature_hash());
            let raw = TxEnvelope::from(tx.into_signed(sig)).encoded_2718();
            let tx = validate_tx(&raw, &chain.validation_context()).unwrap();
            chain.pool().add(tx, 0).unwrap();
            let sealed = chain.seal_next(&signer, t0 + u64::from(n), None).unwrap().unwrap();
            assert_eq!(sealed.block.body.transactions.len(), 1);
        }
        chain
    }

    #[test]
    fn range_answers_stop_at_the_byte_budget() {
        let dir = tempfile::tempdir().unwrap();
        let chain = chain_of_large_blocks(dir.path());
        let sizes = |r: SyncResponse| match r {
            SyncResponse::Blocks(b) => b.iter().map(Vec::len).collect::<Vec<_>>(),
            other => panic!("not blocks: {other:?}"),
        };
        let all = sizes(serve_blocks(&chain, 1, 3, usize::MAX));
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|s| *s > 60_000));
        // At the budget, just under it, and a budget smaller than one block (one is always sent).
        assert_eq!(sizes(serve_blocks(&chain, 1, 3, all[0] + all[1])), all[..2]);
        assert_eq!(sizes(serve_blocks(&chain, 1, 3, all[0] + all[1] - 1)), all[..1]);
        assert_eq!(sizes(serve_blocks(&chain, 1, 3, 1)), all[..1]);
        // The count still applies, and the next request picks up where the answer stopped.
        assert_eq!(sizes(serve_blocks(&chain, 1, 2, usize::MAX)), all[..2]);
        assert_eq!(sizes(serve_blocks(&chain, 2, 256, all[1])), all[1..2]);
        // The real budget holds all three.
        assert_eq!(sizes(serve(&chain, SyncRequest::Blocks { from: 1, count: 256 })), all);
    }
}
