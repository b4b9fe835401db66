//! The swarm task: one loop owns the swarm and reacts to swarm events, chain and pool events,
//! commands, served requests and timers. Anything slower than a hash or a decode (importing
//! blocks, validating transactions, reading blocks to serve) runs on blocking threads and comes
//! back as a [`Command`] or a [`Served`] answer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::B256;
use futures_util::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

mod commands;
mod pool;

use super::blocks::{import_gossip, Deferred, Verdict};
use super::compact::{self, Body, GossipBlock};
use super::peers::{Offence, PeerBook};
use super::protocol::*;
use super::ratelimit::{Decision, RateLimiter, POOL_LIMIT, STATUS_COST, SYNC_LIMIT};
use super::serve::{Job, Served};
use super::swarm::{Behaviour, BehaviourEvent};
use super::txgossip::{self, accept_batch, decode_batch, Batcher, RecentHashes};
use super::{Command, NetworkConfig, RequestFailure};
use crate::blockchain::{unix_now, Blockchain};
use crate::primitives::Block;

/// Blocks whose timestamp is older than this many seconds are not gossiped when they join our
/// chain (sync fetched them; every peer that has them, or can fetch them, needs no announcement).
const GOSSIP_MAX_AGE_SECS: u64 = 30;
/// How often deferred blocks are looked at.
const DEFERRED_CHECK: Duration = Duration::from_millis(250);

/// What the driver is built from.
pub(super) struct Parts {
    pub swarm: Swarm<Behaviour>,
    pub chain: Arc<Blockchain>,
    pub cfg: NetworkConfig,
    pub local: PeerId,
    pub listen_addrs: Arc<Mutex<Vec<Multiaddr>>>,
    pub peers: Arc<Mutex<HashSet<PeerId>>>,
    pub cmd_tx: mpsc::Sender<Command>,
    pub sync_tx: mpsc::Sender<(PeerId, Option<Block>)>,
    pub serve_tx: mpsc::Sender<Job>,
}

/// The swarm task's state.
pub(super) struct Driver {
    p: Parts,
    book: PeerBook,
    blocks_topic: IdentTopic,
    txs_topic: IdentTopic,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<SyncResponse, RequestFailure>>>,
    /// Hashes of the blocks and transactions that arrived by gossip: gossipsub forwards those
    /// itself, so they are not published again when they reach the chain or the pool. (Sized
    /// for bursts: a hash forgotten too early made a node publish a received transaction again.)
    from_gossip: RecentHashes,
    /// Transactions entering the pool, published together (see `txgossip`).
    batcher: Batcher,
    /// When set, the whole pool is gossiped again at the next tick (our pool events lagged, so
    /// some transactions may never have been announced).
    reannounce: bool,
    deferred: Deferred,
    /// Compact blocks whose bodies import workers are fetching (see [`compact::MAX_FETCHES`]).
    fetching: Arc<AtomicUsize>,
    sync_limit: RateLimiter,
    pool_limit: RateLimiter,
}

impl Driver {
    /// Subscribes to the chain's topics.
    pub fn new(mut p: Parts) -> anyhow::Result<Self> {
        let spec = p.chain.spec();
        let blocks_topic = IdentTopic::new(blocks_topic(spec.chain_id, &spec.genesis_hash));
        let txs_topic = IdentTopic::new(txs_topic(spec.chain_id, &spec.genesis_hash));
        p.swarm.behaviour_mut().gossipsub.subscribe(&blocks_topic)?;
        p.swarm.behaviour_mut().gossipsub.subscribe(&txs_topic)?;
        Ok(Self {
            book: PeerBook::new(p.cfg.allow.clone()),
            p,
            blocks_topic,
            txs_topic,
            pending: HashMap::new(),
            from_gossip: RecentHashes::new(1 << 16),
            batcher: Batcher::default(),
            reannounce: false,
            deferred: Deferred::default(),
            fetching: Arc::default(),
            sync_limit: RateLimiter::new(SYNC_LIMIT),
            pool_limit: RateLimiter::new(POOL_LIMIT),
        })
    }

    /// Runs until `shutdown` fires.
    pub async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut served_rx: mpsc::Receiver<Served>,
    ) {
        let mut chain_events = self.p.chain.subscribe();
        let mut sealed_events = self.p.chain.subscribe_sealed();
        let mut pool_events = self.p.chain.pool().subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(3));
        let mut deferred_check = tokio::time::interval(DEFERRED_CHECK);
        let mut flush = tokio::time::interval(txgossip::BATCH_DELAY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                ev = self.p.swarm.select_next_some() => self.on_swarm_event(ev),
                ev = chain_events.recv() => {
                    if let Ok(ev) = ev {
                        self.on_chain_event(&ev);
                    }
                }
                ev = sealed_events.recv() => {
                    if let Ok(sealed) = ev {
                        self.on_sealed(&sealed);
                    }
                }
                ev = pool_events.recv() => match ev {
                    Ok(hash) => {
                        if !self.from_gossip.contains(&hash) {
                            self.queue_tx(&hash);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "pool events outran the network; announcing the whole pool again");
                        self.reannounce = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                _ = flush.tick(), if !self.batcher.is_empty() => self.publish_txs(),
                Some(served) = served_rx.recv() => self.on_served(served),
                cmd = cmd_rx.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => return,
                },
                _ = deferred_check.tick() => self.import_due_blocks(),
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with(libp2p::multiaddr::Protocol::P2p(self.p.local));
                tracing::info!(%full, "p2p listening");
                self.p.listen_addrs.lock().push(full);
            }
            SwarmEvent::ConnectionEstablished { peer_id: peer, num_established, .. } => {
                // The swarm's allow and block lists refused every peer not admitted before the
                // connection was established; a ban may have come since.
                if !self.book.admits(&peer) {
                    let _ = self.p.swarm.disconnect_peer_id(peer);
                    return;
                }
                if num_established.get() == 1 {
                    self.p.peers.lock().insert(peer);
                    let _ = self.p.sync_tx.try_send((peer, None));
                    self.announce_pool_to(peer);
                }
            }
            SwarmEvent::ConnectionClosed { peer_id: peer, num_established: 0, .. } => {
                self.p.peers.lock().remove(&peer);
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                tracing::debug!(%send_back_addr, %error, "incoming connection refused");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_sync_event(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Pool(ev)) => self.on_pool_event(ev),
            _ => {}
        }
    }

    /// Records an offence; a peer that must now be banned is put on the swarm's block list,
    /// which closes its connections and refuses new ones until the ban ends.
    pub(super) fn punish(&mut self, peer: PeerId, offence: Offence) {
        if self.book.punish(peer, offence) {
            tracing::warn!(%peer, ?offence, ban_secs = super::peers::BAN_DURATION.as_secs(),
                "peer banned: its score fell to the threshold");
            self.p.swarm.behaviour_mut().blocked.block_peer(peer);
            let _ = self.p.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: MessageId, message: gossipsub::Message) {
        if !self.book.admits(&source) {
            return;
        }
        if message.topic == self.blocks_topic.hash() {
            match GossipBlock::decode(&message.data) {
                Ok(block) => {
                    self.from_gossip.insert(block.header().hash_slow());
                    self.import_gossip_block(id, source, block);
                }
                Err(e) => {
                    tracing::debug!(peer = %source, error = %e, "garbage block message");
                    self.reject(id, source, Offence::Garbage);
                }
            }
        } else if message.topic == self.txs_topic.hash() {
            match decode_batch(&message.data) {
                Ok(txs) => {
                    for raw in &txs {
                        self.from_gossip.insert(alloy_primitives::keccak256(raw));
                    }
                    let (chain, cmd) = (self.p.chain.clone(), self.p.cmd_tx.clone());
                    tokio::task::spawn_blocking(move || {
                        let v = accept_batch(&chain, &txs);
                        let (acceptance, offence, republish) = (v.acceptance, v.offence, v.republish);
                        let _ = cmd.blocking_send(Command::Validated {
                            id,
                            peer: source,
                            acceptance,
                            offence,
                            republish,
                        });
                    });
                }
                Err(e) => {
                    tracing::debug!(peer = %source, error = %e, "garbage transaction batch");
                    self.reject(id, source, Offence::Garbage);
                }
            }
        }
    }

    fn reject(&mut self, id: MessageId, peer: PeerId, offence: Offence) {
        self.p.swarm.behaviour_mut().gossipsub.report_message_validation_result(
            &id,
            &peer,
            MessageAcceptance::Reject,
        );
        self.punish(peer, offence);
    }

    /// Imports a gossiped block on a blocking worker (a compact one once its body is found in
    /// the pool or fetched from `peer`); its verdict comes back as a command.
    fn import_gossip_block(&mut self, id: MessageId, peer: PeerId, block: GossipBlock) {
        let (chain, cmd, sync_tx) = (self.p.chain.clone(), self.p.cmd_tx.clone(), self.p.sync_tx.clone());
        let fetching = self.fetching.clone();
        tokio::task::spawn_blocking(move || {
            let block = match block {
                GossipBlock::Full(block) => {
                    crate::metrics::gossip_block("full", "received");
                    block
                }
                GossipBlock::Compact(compact) => {
                    match compact::resolve(&chain, compact, peer, &cmd, &sync_tx, &fetching) {
                        Body::Found(block) => *block,
                        Body::Judged(acceptance, offence) => {
                            let republish = Vec::new();
                            let _ = cmd.blocking_send(Command::Validated {
                                id,
                                peer,
                                acceptance,
                                offence,
                                republish,
                            });
                            return;
                        }
                    }
                }
            };
            import_full(&chain, &cmd, &sync_tx, (id, peer), block);
        });
    }

    /// Imports a whole gossiped block on a blocking worker; its verdict comes back as a command.
    fn import_block(&mut self, id: MessageId, peer: PeerId, block: Block) {
        let (chain, cmd, sync_tx) = (self.p.chain.clone(), self.p.cmd_tx.clone(), self.p.sync_tx.clone());
        tokio::task::spawn_blocking(move || import_full(&chain, &cmd, &sync_tx, (id, peer), block));
    }

    /// Keeps a block from the near future; one that finds the queue full is ignored (it comes
    /// back by sync once its time has come).
    pub(super) fn defer(&mut self, id: MessageId, peer: PeerId, block: Box<Block>) {
        if let Err(refused) = self.deferred.push(id, peer, block) {
            tracing::info!(%peer, number = refused.block.header.number, "too many blocks from the future wait already; ignored");
            self.p.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &refused.id,
                &peer,
                MessageAcceptance::Ignore,
            );
        }
    }

    fn import_due_blocks(&mut self) {
        for d in self.deferred.take_due(unix_now()) {
            self.import_block(d.id, d.peer, *d.block);
        }
    }

    fn on_chain_event(&mut self, ev: &crate::blockchain::NewBlock) {
        // Blocks that arrived by gossip are forwarded by gossipsub itself; old blocks (imported
        // while catching up by sync) are not announced at all: peers have them or fetch them by
        // sync, as geth does not propagate downloaded blocks. Announcing each of a long sync's
        // blocks made every peer verify and forward one signed message per block.
        let fresh = ev.block.block.header.timestamp + GOSSIP_MAX_AGE_SECS >= unix_now();
        if !ev.removed && fresh && !self.from_gossip.contains(&ev.block.hash) {
            let message = GossipBlock::of(&ev.block.block).encode();
            let _ = self.p.swarm.behaviour_mut().gossipsub.publish(self.blocks_topic.clone(), message);
        }
    }

    /// Gossips a block this node sealed before its commit ends (its commit event then finds it
    /// among the blocks not to announce again).
    fn on_sealed(&mut self, sealed: &crate::primitives::SealedBlock) {
        self.from_gossip.insert(sealed.hash);
        let message = GossipBlock::of(&sealed.block).encode();
        let _ = self.p.swarm.behaviour_mut().gossipsub.publish(self.blocks_topic.clone(), message);
    }

    fn on_sync_event(&mut self, ev: request_response::Event<SyncRequest, SyncResponse>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.on_sync_request(peer, request, channel)
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(error.into()));
                }
            }
            _ => {}
        }
    }

    /// Checks the peer and its rate limit, then queues the request for the serving threads.
    fn on_sync_request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
        if !self.book.admits(&peer) {
            return; // dropping the channel closes the stream unanswered
        }
        let cost = match request {
            SyncRequest::Status => STATUS_COST,
            _ => 1.0,
        };
        if let Some(why) = self.over_limit(peer, false, cost) {
            let _ = self.p.swarm.behaviour_mut().sync.send_response(channel, SyncResponse::Error(why));
            return;
        }
        match self.p.serve_tx.try_send(Job { peer, request, channel }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) => {
                let busy = format!(
                    "busy: {} sync requests wait to be served already; ask again later",
                    super::serve::SERVE_QUEUE
                );
                let _ =
                    self.p.swarm.behaviour_mut().sync.send_response(job.channel, SyncResponse::Error(busy));
            }
        }
    }

    /// `None` when `peer` may make one more (sync or pool) request of `cost` now, else the
    /// refusal's reason; a gross excess is punished.
    fn over_limit(&mut self, peer: PeerId, pool: bool, cost: f64) -> Option<String> {
        let (limiter, what) = if pool {
            (&mut self.pool_limit, "pool announcements")
        } else {
            (&mut self.sync_limit, "sync requests")
        };
        let limit = if pool { POOL_LIMIT } else { SYNC_LIMIT };
        let decision = limiter.check(peer, cost, Instant::now());
        if decision == Decision::Serve {
            return None;
        }
        if decision == Decision::RefuseGross {
            self.punish(peer, Offence::RequestFlood);
        }
        Some(format!(
            "refused by the per-peer rate limit: at most {} {what} per second ({} at once) and {} MiB per second",
            limit.requests_per_sec,
            limit.request_burst,
            limit.bytes_per_sec / (1024.0 * 1024.0)
        ))
    }

    fn on_served(&mut self, served: Served) {
        self.sync_limit.charge(served.peer, served.bytes, Instant::now());
        let _ = self.p.swarm.behaviour_mut().sync.send_response(served.channel, served.response);
    }

    fn on_tick(&mut self) {
        if std::mem::take(&mut self.reannounce) {
            for hash in self.p.chain.pool().hashes() {
                self.queue_tx(&hash);
            }
        }
        let now = Instant::now();
        for peer in self.book.expire(now) {
            self.p.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
        self.sync_limit.forget_idle(now);
        self.pool_limit.forget_idle(now);
        // Keep checking peers' heads, and redial bootnodes we lost.
        let connected: Vec<PeerId> = self.p.peers.lock().iter().copied().collect();
        for p in connected {
            let _ = self.p.sync_tx.try_send((p, None));
        }
        self.redial(false);
    }

    /// Dials the bootnodes we are not connected to (all of them when `all`) that we admit.
    pub(super) fn redial(&mut self, all: bool) {
        for addr in self.p.cfg.bootnodes.clone() {
            let target = addr.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            });
            let connected = !all && target.is_some_and(|id| self.p.peers.lock().contains(&id));
            let allowed = target.is_none_or(|id| self.book.admits(&id));
            if !connected && allowed {
                let _ = self.p.swarm.dial(addr);
            }
        }
    }

    /// Adds pool transaction `hash` (if still there) to the next batch, publishing the batch when full.
    pub(super) fn queue_tx(&mut self, hash: &B256) {
        if let Some(tx) = self.p.chain.pool().get(hash) {
            if self.batcher.push(tx.inner().encoded_2718().into()) {
                self.publish_txs();
            }
        }
    }

    /// Publishes the batched transactions as one gossip message.
    fn publish_txs(&mut self) {
        let message = self.batcher.take_message();
        let copy = message.clone();
        match self.p.swarm.behaviour_mut().gossipsub.publish(self.txs_topic.clone(), message) {
            Ok(_) => {}
            // No subscribed peer. Alone, the pool is given to each peer when it connects. But a
            // peer connected a moment ago whose subscriptions have not arrived yet got our pool
            // before these transactions were in it: give them the batch directly (else a keeper
            // that starts with its node would never be heard).
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                let peers: Vec<_> = self.p.peers.lock().iter().copied().collect();
                for peer in peers {
                    self.p
                        .swarm
                        .behaviour_mut()
                        .pool
                        .send_request(&peer, crate::network::protocol::PoolBatch(copy.clone()));
                }
            }
            // The same batch went out before.
            Err(gossipsub::PublishError::Duplicate) => {}
            Err(e) => tracing::warn!(error = %e, "cannot gossip transactions"),
        }
    }
}

/// Imports a whole gossiped block (on a blocking worker) and sends its verdict to the swarm task.
fn import_full(
    chain: &Blockchain,
    cmd: &mpsc::Sender<Command>,
    sync_tx: &mpsc::Sender<(PeerId, Option<Block>)>,
    (id, peer): (MessageId, PeerId),
    block: Block,
) {
    let command = match import_gossip(chain, block, peer, sync_tx) {
        Verdict::Done(acceptance, offence) => {
            Command::Validated { id, peer, acceptance, offence, republish: Vec::new() }
        }
        Verdict::Defer(block) => Command::Defer { id, peer, block },
    };
    let _ = cmd.blocking_send(command);
}
