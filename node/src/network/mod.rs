//! The peer network (rust-libp2p): TCP + Noise + Yamux; gossipsub carries new blocks and
//! transactions; a request/response protocol serves chain status and canonical block ranges
//! for sync.
//!
//! - [`protocol`]: topics, sync messages and size limits;
//! - [`peers`]: reputation, bans and the optional peer allowlist;
//! - [`sync`]: header-first catching up with a better peer (headers verified before any block
//!   is fetched) and switching branches under EIP-3436;
//! - [`txgossip`]: transactions gossiped in batches.
//!
//! Everything a peer sends is size-capped by the transport and validated before any work is
//! spent on it (decoding, then the Clique header rules, then execution); a peer that sends
//! invalid blocks or garbage loses score and is disconnected and banned.

pub mod peers;
pub mod protocol;
mod sync;

pub use sync::{RequestFailure, SyncCodec, SyncProgress, SYNCING_THRESHOLD};
pub mod txgossip;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy_eips::eip2718::Encodable2718;
use alloy_rlp::{Decodable, Encodable};
use futures_util::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, identity, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::blockchain::{Blockchain, ImportError};
use crate::primitives::Block;
use crate::storage::BlockQuery;
use peers::{Offence, PeerBook};
use protocol::*;
use txgossip::{accept_batch, decode_batch, Batcher, RecentHashes};

/// Network options.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Address to listen on, e.g. `/ip4/0.0.0.0/tcp/30303`.
    pub listen: Multiaddr,
    /// Peers to dial at start (with `/p2p/<peer id>`).
    pub bootnodes: Vec<Multiaddr>,
    /// If set, only these peers may connect.
    pub allow: Option<HashSet<PeerId>>,
    /// File holding this node's identity key (created on first start).
    pub identity_file: PathBuf,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    identify: identify::Behaviour,
}

/// Blocks whose timestamp is older than this many seconds are not gossiped when they join our
/// chain (sync fetched them; every peer that has them, or can fetch them, needs no announcement).
const GOSSIP_MAX_AGE_SECS: u64 = 30;

/// Requests to the swarm loop (from the sync and import workers, and admin RPC).
pub enum Command {
    Request {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, RequestFailure>>,
    },
    Validated {
        id: MessageId,
        peer: PeerId,
        acceptance: MessageAcceptance,
        offence: Option<Offence>,
        /// Transactions to publish ourselves (valid ones of a rejected batch).
        republish: Vec<alloy_primitives::B256>,
    },
    Punish {
        peer: PeerId,
        offence: Offence,
    },
    /// Admin: cut a peer off (and refuse it) until unblocked.
    Block(PeerId),
    /// Admin: accept a blocked peer again.
    Unblock(PeerId),
    /// Admin: publish raw bytes as a block, without validating them (tests of peer scoring).
    BroadcastRawBlock(Vec<u8>),
    /// Admin: scores of the connected peers.
    Scores(oneshot::Sender<Vec<(PeerId, i32)>>),
}

/// A running network.
pub struct NetworkHandle {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// Addresses it listens on (with `/p2p/<peer id>`), filled once listening.
    pub listen_addrs: Arc<Mutex<Vec<Multiaddr>>>,
    /// Connected peers.
    pub peers: Arc<Mutex<HashSet<PeerId>>>,
    /// The running sync, for `eth_syncing`.
    pub sync: Arc<SyncProgress>,
    commands: mpsc::Sender<Command>,
}

impl NetworkHandle {
    /// Sends an admin command to the swarm loop.
    pub async fn admin(&self, cmd: Command) -> bool {
        self.commands.send(cmd).await.is_ok()
    }

    /// Blocking variant of [`NetworkHandle::admin`] for RPC handlers.
    pub fn admin_blocking(&self, cmd: Command) -> bool {
        self.commands.blocking_send(cmd).is_ok()
    }

    /// Number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.lock().len()
    }
}

/// Loads the node identity from `path`, creating it (mode 0600, atomically) when there is no file.
/// A file that exists but cannot be read or decoded stops the node: it is never replaced, because
/// a new identity is a new peer id, which other nodes' `--p2p-allow` and bootnode lists would no
/// longer know.
pub fn load_identity(path: &Path) -> anyhow::Result<identity::Keypair> {
    match std::fs::read(path) {
        Ok(bytes) => {
            return identity::Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a node identity key ({e}); fix or remove it (removing it gives this node a new peer id)",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!(
            "cannot read the node identity {}: {e}; the node does not start with a new identity in its place (that would change its peer id): fix the file's permissions or move it away",
            path.display()
        ),
    }
    let key = identity::Keypair::generate_ed25519();
    let bytes = key.to_protobuf_encoding().map_err(|e| anyhow::anyhow!("encoding identity: {e}"))?;
    crate::keystore::write_secret_file(path, &bytes)?;
    Ok(key)
}

fn gossip_id(msg: &gossipsub::Message) -> MessageId {
    MessageId::from(alloy_primitives::keccak256(&msg.data).to_vec())
}

/// Starts the network; it runs until `shutdown` fires.
pub async fn start(
    chain: Arc<Blockchain>,
    cfg: NetworkConfig,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(NetworkHandle, tokio::task::JoinHandle<()>)> {
    let key = load_identity(&cfg.identity_file)?;
    let peer_id = key.public().to_peer_id();
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(gossip_id)
        .heartbeat_interval(Duration::from_millis(700))
        .build()
        .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key| {
            let gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_cfg)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            let sync = request_response::Behaviour::with_codec(
                SyncCodec::default(),
                [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            );
            let identify = identify::Behaviour::new(identify::Config::new("/p2pe/1".into(), key.public()));
            Ok(Behaviour { gossipsub, sync, identify })
        })
        .map_err(|e| anyhow::anyhow!("network behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let spec = chain.spec();
    let blocks_topic = IdentTopic::new(blocks_topic(spec.chain_id, &spec.genesis_hash));
    let txs_topic = IdentTopic::new(txs_topic(spec.chain_id, &spec.genesis_hash));
    swarm.behaviour_mut().gossipsub.subscribe(&blocks_topic)?;
    swarm.behaviour_mut().gossipsub.subscribe(&txs_topic)?;
    swarm
        .listen_on(cfg.listen.clone())
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    for addr in &cfg.bootnodes {
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot dial bootnode");
        }
    }
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(1024);
    let (sync_tx, sync_rx) = mpsc::channel::<(PeerId, Option<Block>)>(256);
    let listen_addrs = Arc::new(Mutex::new(Vec::new()));
    let peers = Arc::new(Mutex::new(HashSet::new()));
    let handle = NetworkHandle {
        peer_id,
        listen_addrs: listen_addrs.clone(),
        peers: peers.clone(),
        sync: Arc::new(sync::SyncProgress::default()),
        commands: cmd_tx.clone(),
    };
    tokio::spawn(sync::run(chain.clone(), cmd_tx.clone(), sync_rx, handle.sync.clone()));
    let mut book = PeerBook::new(cfg.allow.clone());
    let bootnodes = cfg.bootnodes.clone();
    let task = tokio::spawn(async move {
        let mut chain_events = chain.subscribe();
        let mut pool_events = chain.pool().subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(3));
        let mut pending: HashMap<OutboundRequestId, oneshot::Sender<Result<SyncResponse, RequestFailure>>> =
            HashMap::new();
        // Hashes of the blocks and transactions that arrived by gossip: gossipsub forwards those
        // itself, so they are not published again when they reach the chain or the pool. (Sized
        // for bursts: a hash forgotten too early made a node publish a received transaction again.)
        let mut from_gossip = RecentHashes::new(1 << 16);
        // Transactions entering the pool, published together (see `txgossip`).
        let mut batcher = Batcher::default();
        let mut flush = tokio::time::interval(txgossip::BATCH_DELAY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When set, the whole pool is announced again at the next tick: after a peer connects
        // (it may lack what we accepted while it was away) and after our pool events lagged.
        let mut reannounce = false;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        let full = address.with(libp2p::multiaddr::Protocol::P2p(peer_id));
                        tracing::info!(%full, "p2p listening");
                        listen_addrs.lock().push(full);
                    }
                    SwarmEvent::ConnectionEstablished { peer_id: peer, .. } => {
                        if !book.admits(&peer) {
                            tracing::info!(%peer, "refusing peer (not allowed or banned)");
                            let _ = swarm.disconnect_peer_id(peer);
                            continue;
                        }
                        peers.lock().insert(peer);
                        let _ = sync_tx.try_send((peer, None));
                        reannounce = true;
                    }
                    SwarmEvent::ConnectionClosed { peer_id: peer, num_established: 0, .. } => {
                        peers.lock().remove(&peer);
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message })) => {
                        if !book.admits(&propagation_source) {
                            continue;
                        }
                        if message.topic == blocks_topic.hash() {
                            match Block::decode(&mut message.data.as_slice()) {
                                Ok(block) => {
                                    from_gossip.insert(block.header.hash_slow());
                                    let chain = chain.clone();
                                    let cmd = cmd_tx.clone();
                                    let sync_tx = sync_tx.clone();
                                    tokio::task::spawn_blocking(move || {
                                        let (acceptance, offence) = import_gossip(&chain, block, propagation_source, &sync_tx);
                                        let _ = cmd.blocking_send(Command::Validated { id: message_id, peer: propagation_source, acceptance, offence, republish: Vec::new() });
                                    });
                                }
                                Err(_) => {
                                    swarm.behaviour_mut().gossipsub.report_message_validation_result(&message_id, &propagation_source, MessageAcceptance::Reject);
                                    if book.punish(propagation_source, Offence::Garbage) {
                                        let _ = swarm.disconnect_peer_id(propagation_source);
                                    }
                                }
                            }
                        } else if message.topic == txs_topic.hash() {
                            match decode_batch(&message.data) {
                                Ok(txs) => {
                                    for raw in &txs {
                                        from_gossip.insert(alloy_primitives::keccak256(raw));
                                    }
                                    let chain = chain.clone();
                                    let cmd = cmd_tx.clone();
                                    tokio::task::spawn_blocking(move || {
                                        let v = accept_batch(&chain, &txs);
                                        let _ = cmd.blocking_send(Command::Validated { id: message_id, peer: propagation_source, acceptance: v.acceptance, offence: v.offence, republish: v.republish });
                                    });
                                }
                                Err(e) => {
                                    tracing::debug!(peer = %propagation_source, error = %e, "garbage transaction batch");
                                    swarm.behaviour_mut().gossipsub.report_message_validation_result(&message_id, &propagation_source, MessageAcceptance::Reject);
                                    if book.punish(propagation_source, Offence::Garbage) {
                                        let _ = swarm.disconnect_peer_id(propagation_source);
                                    }
                                }
                            }
                        }
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. })) => match message {
                        request_response::Message::Request { request, channel, .. } => {
                            let response = serve(&chain, request);
                            let _ = swarm.behaviour_mut().sync.send_response(channel, response);
                        }
                        request_response::Message::Response { request_id, response } => {
                            if let Some(reply) = pending.remove(&request_id) {
                                let _ = reply.send(Ok(response));
                            }
                            let _ = peer;
                        }
                    },
                    SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure { request_id, error, .. })) => {
                        if let Some(reply) = pending.remove(&request_id) {
                            let _ = reply.send(Err(error.into()));
                        }
                    }
                    _ => {}
                },
                ev = chain_events.recv() => {
                    if let Ok(ev) = ev {
                        // Blocks that arrived by gossip are forwarded by gossipsub itself; old
                        // blocks (imported while catching up by sync) are not announced at all:
                        // peers have them or fetch them by sync, as geth does not propagate
                        // downloaded blocks. Announcing each of a long sync's blocks made every
                        // peer verify and forward one signed message per block.
                        let fresh = ev.block.block.header.timestamp + GOSSIP_MAX_AGE_SECS
                            >= crate::blockchain::unix_now();
                        if !ev.removed && fresh && !from_gossip.contains(&ev.block.hash) {
                            let mut buf = Vec::new();
                            ev.block.block.encode(&mut buf);
                            let _ = swarm.behaviour_mut().gossipsub.publish(blocks_topic.clone(), buf);
                        }
                    }
                }
                ev = pool_events.recv() => match ev {
                    Ok(hash) => {
                        if !from_gossip.contains(&hash) {
                            queue_tx(&chain, &hash, &mut swarm, &txs_topic, &mut batcher);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "pool events outran the network; announcing the whole pool again");
                        reannounce = true;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
                },
                _ = flush.tick(), if !batcher.is_empty() => {
                    publish_txs(&mut swarm, &txs_topic, &mut batcher);
                }
                cmd = cmd_rx.recv() => match cmd {
                    Some(Command::Request { peer, request, reply }) => {
                        let id = swarm.behaviour_mut().sync.send_request(&peer, request);
                        pending.insert(id, reply);
                    }
                    Some(Command::Validated { id, peer, acceptance, offence, republish }) => {
                        swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &peer, acceptance);
                        if let Some(o) = offence {
                            if book.punish(peer, o) {
                                let _ = swarm.disconnect_peer_id(peer);
                            }
                        }
                        for hash in republish {
                            queue_tx(&chain, &hash, &mut swarm, &txs_topic, &mut batcher);
                        }
                    }
                    Some(Command::Punish { peer, offence }) => {
                        if book.punish(peer, offence) {
                            let _ = swarm.disconnect_peer_id(peer);
                        }
                    }
                    Some(Command::Block(peer)) => {
                        book.block(peer);
                        let _ = swarm.disconnect_peer_id(peer);
                    }
                    Some(Command::Unblock(peer)) => {
                        book.unblock(&peer);
                        for addr in &bootnodes {
                            let _ = swarm.dial(addr.clone());
                        }
                    }
                    Some(Command::BroadcastRawBlock(bytes)) => {
                        if let Err(e) = swarm.behaviour_mut().gossipsub.publish(blocks_topic.clone(), bytes) {
                            tracing::warn!(error = %e, "admin broadcast failed");
                        }
                    }
                    Some(Command::Scores(reply)) => {
                        let connected: Vec<PeerId> = peers.lock().iter().copied().collect();
                        let _ = reply.send(connected.into_iter().map(|p| (p, book.score(&p))).collect());
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    if reannounce {
                        reannounce = false;
                        for hash in chain.pool().hashes() {
                            queue_tx(&chain, &hash, &mut swarm, &txs_topic, &mut batcher);
                        }
                    }
                    // Keep checking peers' heads, and redial bootnodes we lost.
                    let connected: Vec<PeerId> = peers.lock().iter().copied().collect();
                    for p in connected {
                        let _ = sync_tx.try_send((p, None));
                    }
                    for addr in &bootnodes {
                        let target = addr.iter().find_map(|p| match p {
                            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                            _ => None,
                        });
                        let connected = target.is_some_and(|id| peers.lock().contains(&id));
                        let allowed = target.is_none_or(|id| book.admits(&id));
                        if !connected && allowed {
                            let _ = swarm.dial(addr.clone());
                        }
                    }
                }
            }
        }
    });
    Ok((handle, task))
}

/// Adds pool transaction `hash` (if still there) to the next batch, publishing the batch when full.
fn queue_tx(
    chain: &Blockchain,
    hash: &alloy_primitives::B256,
    swarm: &mut libp2p::Swarm<Behaviour>,
    topic: &IdentTopic,
    batcher: &mut Batcher,
) {
    if let Some(tx) = chain.pool().get(hash) {
        if batcher.push(tx.inner().encoded_2718().into()) {
            publish_txs(swarm, topic, batcher);
        }
    }
}

/// Publishes the batched transactions as one gossip message.
fn publish_txs(swarm: &mut libp2p::Swarm<Behaviour>, topic: &IdentTopic, batcher: &mut Batcher) {
    let message = batcher.take_message();
    match swarm.behaviour_mut().gossipsub.publish(topic.clone(), message) {
        Ok(_) => {}
        // Alone (no peer yet): the pool is announced again when a peer connects.
        Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
        // The same batch went out before (a re-announced pool that has not changed).
        Err(gossipsub::PublishError::Duplicate) => {}
        Err(e) => tracing::warn!(error = %e, "cannot gossip transactions"),
    }
}

/// Imports a gossiped block when it extends our head; otherwise hands the peer to sync.
fn import_gossip(
    chain: &Blockchain,
    block: Block,
    peer: PeerId,
    sync_tx: &mpsc::Sender<(PeerId, Option<Block>)>,
) -> (MessageAcceptance, Option<Offence>) {
    let head = chain.head();
    if block.header.parent_hash != head.hash {
        let known = block.header.number <= head.header.number
            && chain.reads().with(|c| c.canonical_hash(block.header.number)).ok().flatten()
                == Some(block.header.hash_slow());
        if !known {
            let _ = sync_tx.try_send((peer, Some(block)));
        }
        return (MessageAcceptance::Ignore, None);
    }
    match chain.import(block, Some(crate::blockchain::unix_now())) {
        Ok(_) => (MessageAcceptance::Accept, None),
        Err(ImportError::Consensus {
            source: crate::consensus::clique::CliqueError::FutureBlock(_), ..
        }) => (MessageAcceptance::Ignore, None),
        Err(ImportError::NotOnHead { .. }) => (MessageAcceptance::Ignore, None),
        Err(e @ (ImportError::Consensus { .. } | ImportError::Invalid { .. })) => {
            tracing::warn!(%peer, error = %e, "invalid block from peer");
            (MessageAcceptance::Reject, Some(Offence::InvalidBlock))
        }
        Err(e) => {
            tracing::error!(error = %e, "importing a gossiped block failed");
            (MessageAcceptance::Ignore, None)
        }
    }
}

/// Answers a sync request from our chain. A range answer stops at [`SYNC_RESPONSE_BUDGET`] bytes
/// of blocks (but always carries one), so it fits the response cap whatever the blocks' sizes.
fn serve(chain: &Blockchain, request: SyncRequest) -> SyncResponse {
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
            sync::serve_headers(chain, from, count, HEADERS_RESPONSE_BUDGET)
        }
        SyncRequest::Blocks { from, count } => serve_blocks(chain, from, count, SYNC_RESPONSE_BUDGET),
    }
}

/// Canonical blocks `from..from + count` (at most [`MAX_BLOCKS_PER_REQUEST`]), RLP-encoded, up to
/// `budget` bytes of them (always at least one block).
fn serve_blocks(chain: &Blockchain, from: u64, count: u32, budget: usize) -> SyncResponse {
    let count = count.min(MAX_BLOCKS_PER_REQUEST) as u64;
    let to = from.saturating_add(count).min(chain.head_number() + 1);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    for n in from..to {
        let block = chain.reads().with(|c| match c.canonical_hash(n)? {
            Some(h) => c.block_by_hash(&h),
            None => Ok(None),
        });
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
    use super::*;
    use crate::blockchain::{unix_now, ChainOptions};
    use crate::chain::{build_genesis, ChainSpec, GenesisParams};
    use crate::crypto::SigningKey;
    use crate::storage::Store;
    use crate::txpool::{validate_tx, PoolConfig, TxPool};
    use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
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
        let opts = ChainOptions { state_history: Some(128), read_connections: 1 };
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
