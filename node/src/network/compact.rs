//! Blocks on the gossip topic: whole, or compact (header and transaction hashes).
//!
//! A sealer gossips a block with transactions as its header and its transactions' hashes: its
//! peers hold nearly all of those transactions in their pools already (transaction gossip runs
//! ahead of sealing), so they rebuild the block from there instead of receiving every
//! transaction a second time. A peer that misses any of them fetches the whole block from the
//! peer that sent the compact one ([`super::protocol::SyncRequest::BlockByHash`]); whether the
//! rebuilt block is the sealed one is checked by the import like any block (its transactions
//! root is in the signed header), so a pool never decides a block's validity.
//!
//! A message is one tag byte, then RLP: [`FULL`] and a block, or [`COMPACT`] and a
//! [`CompactBlock`]. A block without transactions travels whole (it is as small).

use std::sync::atomic::{AtomicUsize, Ordering};

use alloy_consensus::{BlockBody, Header};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::B256;
use alloy_rlp::{Decodable, Encodable, RlpDecodable, RlpEncodable};
use libp2p::gossipsub::MessageAcceptance;
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use super::peers::Offence;
use super::protocol::{SyncRequest, SyncResponse};
use super::Command;
use crate::blockchain::Blockchain;
use crate::consensus::clique::recover_sealer;
use crate::primitives::Block;
use crate::txpool::TxPool;

/// Compact blocks whose bodies are being fetched at once, at most: a fetch holds an import
/// worker for up to the request timeout, so a peer sending compact blocks it cannot serve holds
/// at most this many.
pub const MAX_FETCHES: usize = 4;

/// Tag of a whole block.
pub const FULL: u8 = 0;
/// Tag of a compact block.
pub const COMPACT: u8 = 1;

/// A block as its header and its transactions' hashes, in block order. Its ommers and
/// withdrawals are empty, as on every block of this chain.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct CompactBlock {
    /// The sealed header.
    pub header: Header,
    /// The transactions' hashes, in block order.
    pub tx_hashes: Vec<B256>,
}

/// A gossiped block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipBlock {
    /// The whole block.
    Full(Block),
    /// Header and transaction hashes.
    Compact(CompactBlock),
}

/// Why a gossip message is no block.
#[derive(Debug, thiserror::Error)]
pub enum GossipBlockError {
    /// No bytes.
    #[error("empty block message")]
    Empty,
    /// A tag this version does not know.
    #[error("unknown block message tag {0}")]
    UnknownTag(u8),
    /// The RLP after the tag does not decode, or bytes are left over.
    #[error("block message does not decode: {0}")]
    Rlp(#[from] alloy_rlp::Error),
}

impl GossipBlock {
    /// The gossip form of `block`: compact when it has transactions, else whole.
    pub fn of(block: &Block) -> Self {
        if block.body.transactions.is_empty() {
            return Self::Full(block.clone());
        }
        Self::Compact(CompactBlock {
            header: block.header.clone(),
            tx_hashes: block.body.transactions.iter().map(|tx| *tx.tx_hash()).collect(),
        })
    }

    /// The message bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        match self {
            Self::Full(block) => {
                buf.push(FULL);
                block.encode(&mut buf);
            }
            Self::Compact(compact) => {
                buf.push(COMPACT);
                compact.encode(&mut buf);
            }
        }
        buf
    }

    /// Decodes a message; every byte must be used.
    pub fn decode(bytes: &[u8]) -> Result<Self, GossipBlockError> {
        let (&tag, mut rest) = bytes.split_first().ok_or(GossipBlockError::Empty)?;
        let message = match tag {
            FULL => Self::Full(Block::decode(&mut rest)?),
            COMPACT => Self::Compact(CompactBlock::decode(&mut rest)?),
            other => return Err(GossipBlockError::UnknownTag(other)),
        };
        if !rest.is_empty() {
            return Err(alloy_rlp::Error::UnexpectedLength.into());
        }
        Ok(message)
    }

    /// The block's header.
    pub fn header(&self) -> &Header {
        match self {
            Self::Full(block) => &block.header,
            Self::Compact(compact) => &compact.header,
        }
    }
}

/// Why a compact block could not be rebuilt from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebuild {
    /// This many of its transactions are not in the pool.
    Missing(usize),
    /// Its transactions add up to more than the byte budget (a block over the chain's byte limit
    /// is invalid; and a list that names one large pooled transaction thousands of times must
    /// not make the receiver copy it thousands of times).
    TooLarge,
}

impl CompactBlock {
    /// The block rebuilt from the transactions waiting in `pool`, if they are all there and
    /// their encodings add up to at most `max_tx_bytes`. Nothing is copied before both are
    /// known.
    pub fn rebuild(&self, pool: &TxPool, max_tx_bytes: usize) -> Result<Block, Rebuild> {
        let found = pool.get_many(&self.tx_hashes);
        let missing = found.iter().filter(|t| t.is_none()).count();
        if missing > 0 {
            return Err(Rebuild::Missing(missing));
        }
        let bytes: usize = found.iter().flatten().map(|tx| tx.inner().encode_2718_len()).sum();
        if bytes > max_tx_bytes {
            return Err(Rebuild::TooLarge);
        }
        let transactions = found.into_iter().flatten().map(|tx| tx.inner().clone()).collect();
        let body = BlockBody { transactions, ommers: Vec::new(), withdrawals: Some(Default::default()) };
        Ok(Block { header: self.header.clone(), body })
    }
}

/// What became of a compact block's body.
#[derive(Debug)]
pub(super) enum Body {
    /// The whole block, rebuilt or fetched.
    Found(Box<Block>),
    /// No block to import: the gossip verdict and the sender's offence, if any.
    Judged(MessageAcceptance, Option<Offence>),
}

/// Finds the body of a compact block `peer` sent: from our pool, else from `peer` (a blocking
/// call, on an import worker). Before a fetch, the block must extend our head (one on another
/// branch goes to sync) under the seal of one of its signers (else it is invalid).
pub(super) fn resolve(
    chain: &Blockchain,
    compact: CompactBlock,
    peer: PeerId,
    cmd: &mpsc::Sender<Command>,
    sync_tx: &mpsc::Sender<(PeerId, Option<Block>)>,
    fetching: &AtomicUsize,
) -> Body {
    let max_bytes = usize::try_from(chain.spec().max_block_bytes()).unwrap_or(usize::MAX);
    let missing = match compact.rebuild(chain.pool(), max_bytes) {
        Err(Rebuild::TooLarge) => {
            tracing::warn!(%peer, "compact block whose transactions exceed the block byte limit");
            return Body::Judged(MessageAcceptance::Reject, Some(Offence::InvalidBlock));
        }
        Err(Rebuild::Missing(missing)) => missing,
        Ok(block) => {
            crate::metrics::gossip_block("compact", "rebuilt");
            tracing::debug!(%peer, number = block.header.number, "compact block rebuilt from the pool");
            return Body::Found(Box::new(block));
        }
    };
    let head = chain.head();
    if compact.header.parent_hash != head.hash {
        let _ = sync_tx.try_send((peer, None));
        return Body::Judged(MessageAcceptance::Ignore, None);
    }
    if !recover_sealer(&compact.header).is_ok_and(|s| head.snapshot.signers.contains(&s)) {
        return Body::Judged(MessageAcceptance::Reject, Some(Offence::InvalidBlock));
    }
    if fetching.fetch_add(1, Ordering::SeqCst) >= MAX_FETCHES {
        fetching.fetch_sub(1, Ordering::SeqCst);
        crate::metrics::gossip_block("compact", "missing");
        tracing::debug!(%peer, "compact block ignored: {MAX_FETCHES} block bodies are being fetched already");
        return Body::Judged(MessageAcceptance::Ignore, None);
    }
    let hash = compact.header.hash_slow();
    let fetched = fetch(cmd, peer, hash);
    fetching.fetch_sub(1, Ordering::SeqCst);
    match fetched {
        Ok(block) if block.header.hash_slow() == hash => {
            crate::metrics::gossip_block("compact", "fetched");
            tracing::debug!(%peer, number = block.header.number, missing, "compact block's body fetched");
            Body::Found(Box::new(block))
        }
        Ok(_) => {
            tracing::warn!(%peer, "peer answered a compact block's body with another block");
            Body::Judged(MessageAcceptance::Reject, Some(Offence::InvalidBlock))
        }
        Err(why) => {
            crate::metrics::gossip_block("compact", "missing");
            tracing::info!(%peer, number = compact.header.number, missing, %why,
                "compact block not imported: its body could not be fetched (sync will find the block)");
            Body::Judged(MessageAcceptance::Ignore, None)
        }
    }
}

/// Asks `peer` for the block `hash` and waits for the answer.
fn fetch(cmd: &mpsc::Sender<Command>, peer: PeerId, hash: B256) -> Result<Block, String> {
    let (reply, answer) = oneshot::channel();
    let request = SyncRequest::BlockByHash { hash: hash.0 };
    cmd.blocking_send(Command::Request { peer, request, reply })
        .map_err(|_| "network stopped".to_string())?;
    let raw = match answer.blocking_recv() {
        Ok(Ok(SyncResponse::Blocks(mut blocks))) if blocks.len() == 1 => blocks.remove(0),
        Ok(Ok(SyncResponse::Blocks(_))) => return Err("the peer does not have it".into()),
        Ok(Ok(SyncResponse::Error(e))) => return Err(e),
        Ok(Ok(_)) => return Err("unexpected answer".into()),
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("network stopped".into()),
    };
    Block::decode(&mut raw.as_slice()).map_err(|e| format!("the answer does not decode: {e}"))
}

#[cfg(test)]
mod tests {
    use alloy_consensus::transaction::Recovered;
    use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{Address, TxKind};

    use super::*;
    use crate::crypto::SigningKey;
    use crate::txpool::PoolConfig;

    fn tx(key: &SigningKey, nonce: u64) -> TxEnvelope {
        let t = TxEip1559 {
            chain_id: 1,
            nonce,
            gas_limit: 21_000,
            to: TxKind::Call(Address::repeat_byte(3)),
            ..Default::default()
        };
        let sig = key.sign_hash(&t.signature_hash());
        TxEnvelope::Eip1559(t.into_signed(sig))
    }

    fn block(txs: Vec<TxEnvelope>) -> Block {
        let mut header = Header { number: 7, gas_limit: 30_000_000, ..Default::default() };
        header.transactions_root = alloy_consensus::proofs::calculate_transaction_root(&txs);
        Block {
            header,
            body: BlockBody { transactions: txs, ommers: Vec::new(), withdrawals: Some(Default::default()) },
        }
    }

    #[test]
    fn a_block_with_transactions_travels_compact_and_an_empty_one_whole() {
        let key = SigningKey::from_bytes(&B256::repeat_byte(1)).unwrap();
        let full = block(vec![tx(&key, 0), tx(&key, 1)]);
        let compact = GossipBlock::of(&full);
        assert!(matches!(&compact, GossipBlock::Compact(c) if c.tx_hashes.len() == 2));
        assert_eq!(GossipBlock::decode(&compact.encode()).unwrap(), compact);
        assert!(compact.encode().len() < GossipBlock::Full(full.clone()).encode().len());
        let empty = block(Vec::new());
        assert_eq!(GossipBlock::of(&empty), GossipBlock::Full(empty.clone()));
        assert_eq!(GossipBlock::decode(&GossipBlock::of(&empty).encode()).unwrap(), GossipBlock::Full(empty));
    }

    #[test]
    fn garbage_tags_and_trailing_bytes_are_errors() {
        assert!(matches!(GossipBlock::decode(&[]), Err(GossipBlockError::Empty)));
        assert!(matches!(GossipBlock::decode(&[2, 0xc0]), Err(GossipBlockError::UnknownTag(2))));
        assert!(matches!(GossipBlock::decode(&[COMPACT, 0xc0]), Err(GossipBlockError::Rlp(_))));
        let mut bytes = GossipBlock::of(&block(Vec::new())).encode();
        bytes.push(0);
        assert!(matches!(GossipBlock::decode(&bytes), Err(GossipBlockError::Rlp(_))));
    }

    #[test]
    fn a_compact_block_is_rebuilt_from_the_pool_or_counts_what_is_missing() {
        let key = SigningKey::from_bytes(&B256::repeat_byte(1)).unwrap();
        let txs: Vec<_> = (0..3).map(|n| tx(&key, n)).collect();
        let full = block(txs.clone());
        let GossipBlock::Compact(compact) = GossipBlock::of(&full) else { panic!("compact") };
        let pool = TxPool::new(PoolConfig::default());
        let recovered = |t: &TxEnvelope| Recovered::new_unchecked(t.clone(), key.address());
        for t in &txs[..2] {
            pool.add(recovered(t), 0).unwrap();
        }
        assert_eq!(compact.rebuild(&pool, usize::MAX), Err(Rebuild::Missing(1)));
        pool.add(recovered(&txs[2]), 0).unwrap();
        assert_eq!(compact.rebuild(&pool, usize::MAX), Ok(full.clone()));
        // The byte budget: just under, at and over the transactions' total.
        let total: usize = txs.iter().map(|t| t.encode_2718_len()).sum();
        assert_eq!(compact.rebuild(&pool, total - 1), Err(Rebuild::TooLarge));
        assert_eq!(compact.rebuild(&pool, total), Ok(full));
        // One pooled transaction named many times counts every time, before anything is copied.
        let repeated =
            CompactBlock { header: compact.header.clone(), tx_hashes: vec![compact.tx_hashes[0]; 10_000] };
        let one = txs[0].encode_2718_len();
        assert_eq!(repeated.rebuild(&pool, one * 9_999), Err(Rebuild::TooLarge));
        assert_eq!(repeated.rebuild(&pool, one * 10_000).map(|b| b.body.transactions.len()), Ok(10_000));
    }
}
