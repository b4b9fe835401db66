//! A libp2p peer driven by a test: it speaks the node's protocols (gossipsub topics, sync and
//! pool request/response, from `p2pe_node::network::protocol`) and records what it receives, so
//! that tests can act as a hostile or a brand-new peer of a real node process.
//!
//! The probe runs its swarm on its own tokio runtime; its methods block.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{gossipsub, identity, noise, request_response, tcp, yamux, Multiaddr, PeerId, StreamProtocol};
use p2pe_node::network::protocol::{
    PoolAck, PoolBatch, SyncRequest, SyncResponse, MAX_GOSSIP_BYTES, MAX_POOL_REQUEST_BYTES,
    MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, POOL_PROTOCOL, SYNC_PROTOCOL,
};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

#[derive(NetworkBehaviour)]
struct ProbeBehaviour {
    gossipsub: gossipsub::Behaviour,
    sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
    pool: request_response::cbor::Behaviour<PoolBatch, PoolAck>,
}

/// What the probe has received.
#[derive(Debug, Default, Clone)]
pub struct ProbeLog {
    /// Gossip messages: (topic, data).
    pub gossip: Vec<(String, Vec<u8>)>,
    /// Pool announcements received over the pool protocol (each a transaction batch).
    pub pool_batches: Vec<Vec<u8>>,
    /// Sync requests the node sent us.
    pub sync_requests: usize,
    /// Blocks the probe serves by hash (`BlockByHash`), RLP-encoded; other requests are refused.
    pub blocks: std::collections::HashMap<[u8; 32], Vec<u8>>,
    /// The hashes of the `BlockByHash` requests the node sent us, in order.
    pub block_requests: Vec<[u8; 32]>,
    /// Connections now open.
    pub open: usize,
    /// Connections ever established.
    pub established: usize,
    /// Dials that failed (refused before the probe saw the connection established).
    pub failed_dials: usize,
}

type Reply = oneshot::Sender<Result<SyncResponse, String>>;

enum Cmd {
    Dial(Multiaddr, PeerId),
    Request(PeerId, SyncRequest, Reply),
    Subscribe(String),
    Publish(String, Vec<u8>),
}

/// A test peer.
pub struct Probe {
    /// Its peer id.
    pub peer_id: PeerId,
    rt: tokio::runtime::Runtime,
    cmds: mpsc::UnboundedSender<Cmd>,
    log: Arc<Mutex<ProbeLog>>,
}

/// The identity of probe `seed` (so a node can be told to allow it before it exists).
pub fn probe_key(seed: u8) -> identity::Keypair {
    let mut bytes = [0u8; 32];
    bytes[0] = seed;
    bytes[31] = 0x9b;
    identity::Keypair::ed25519_from_bytes(bytes).expect("a 32-byte ed25519 secret")
}

fn behaviour(key: &identity::Keypair) -> ProbeBehaviour {
    let cfg = gossipsub::ConfigBuilder::default()
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .heartbeat_interval(Duration::from_millis(700))
        .build()
        .expect("gossipsub config");
    let gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), cfg)
        .expect("gossipsub behaviour");
    let codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_REQUEST_BYTES)
        .set_response_size_maximum(MAX_RESPONSE_BYTES);
    let rr = request_response::Config::default()
        .with_request_timeout(Duration::from_secs(20))
        .with_max_concurrent_streams(10_000);
    let sync = request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(SYNC_PROTOCOL), request_response::ProtocolSupport::Full)],
        rr.clone(),
    );
    let codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_POOL_REQUEST_BYTES)
        .set_response_size_maximum(1024);
    let pool = request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(POOL_PROTOCOL), request_response::ProtocolSupport::Full)],
        rr,
    );
    ProbeBehaviour { gossipsub, sync, pool }
}

impl Probe {
    /// A probe with identity [`probe_key`]`(seed)`, not yet connected.
    pub fn new(seed: u8) -> Self {
        let key = probe_key(seed);
        let peer_id = key.public().to_peer_id();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let log = Arc::new(Mutex::new(ProbeLog::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let swarm = rt.block_on(async {
            libp2p::SwarmBuilder::with_existing_identity(key)
                .with_tokio()
                .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
                .expect("tcp transport")
                .with_behaviour(behaviour)
                .expect("behaviour")
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
                .build()
        });
        rt.spawn(run(swarm, rx, log.clone()));
        Self { peer_id, rt, cmds: tx, log }
    }

    /// Opens one more connection to `node` at `addr` (even if one is open already).
    pub fn dial(&self, addr: &Multiaddr, node: PeerId) {
        let _ = self.cmds.send(Cmd::Dial(addr.clone(), node));
    }

    /// Sends `request` to `node` and waits for its answer (or the failure).
    pub fn request(&self, node: PeerId, request: SyncRequest) -> Result<SyncResponse, String> {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmds.send(Cmd::Request(node, request, tx));
        self.rt.block_on(async { rx.await.unwrap_or_else(|_| Err("probe stopped".into())) })
    }

    /// Sends `n` copies of `request` at once and waits for all the answers.
    pub fn burst(&self, node: PeerId, request: SyncRequest, n: usize) -> Vec<Result<SyncResponse, String>> {
        let rxs: Vec<_> = (0..n)
            .map(|_| {
                let (tx, rx) = oneshot::channel();
                let _ = self.cmds.send(Cmd::Request(node, request.clone(), tx));
                rx
            })
            .collect();
        self.rt.block_on(async {
            let mut out = Vec::new();
            for rx in rxs {
                out.push(rx.await.unwrap_or_else(|_| Err("probe stopped".into())));
            }
            out
        })
    }

    /// Subscribes to a gossip topic.
    pub fn subscribe(&self, topic: &str) {
        let _ = self.cmds.send(Cmd::Subscribe(topic.to_string()));
    }

    /// Publishes `data` on a gossip topic.
    pub fn publish(&self, topic: &str, data: Vec<u8>) {
        let _ = self.cmds.send(Cmd::Publish(topic.to_string(), data));
    }

    /// What the probe received so far.
    /// Serves `raw` (an RLP block) to `BlockByHash` requests for `hash` from now on.
    pub fn serve_block(&self, hash: [u8; 32], raw: Vec<u8>) {
        self.log.lock().blocks.insert(hash, raw);
    }

    pub fn log(&self) -> ProbeLog {
        self.log.lock().clone()
    }
}

async fn run(
    mut swarm: libp2p::Swarm<ProbeBehaviour>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    log: Arc<Mutex<ProbeLog>>,
) {
    let mut pending = std::collections::HashMap::<request_response::OutboundRequestId, Reply>::new();
    let mut topics = HashSet::new();
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(Cmd::Dial(addr, node)) => {
                    let opts = DialOpts::peer_id(node).addresses(vec![addr]).condition(PeerCondition::Always).build();
                    let _ = swarm.dial(opts);
                }
                Some(Cmd::Request(node, req, reply)) => {
                    let id = swarm.behaviour_mut().sync.send_request(&node, req);
                    pending.insert(id, reply);
                }
                Some(Cmd::Subscribe(topic)) => {
                    let _ = swarm.behaviour_mut().gossipsub.subscribe(&gossipsub::IdentTopic::new(&topic));
                    topics.insert(topic);
                }
                Some(Cmd::Publish(topic, data)) => {
                    let _ = swarm.behaviour_mut().gossipsub.publish(gossipsub::IdentTopic::new(topic), data);
                }
            },
            ev = swarm.select_next_some() => on_event(&mut swarm, ev, &mut pending, &log),
        }
    }
}

fn on_event(
    swarm: &mut libp2p::Swarm<ProbeBehaviour>,
    ev: SwarmEvent<ProbeBehaviourEvent>,
    pending: &mut std::collections::HashMap<request_response::OutboundRequestId, Reply>,
    log: &Mutex<ProbeLog>,
) {
    use request_response::{Event, Message};
    match ev {
        SwarmEvent::ConnectionEstablished { .. } => {
            let mut l = log.lock();
            l.open += 1;
            l.established += 1;
        }
        SwarmEvent::ConnectionClosed { .. } => log.lock().open -= 1,
        SwarmEvent::OutgoingConnectionError { .. } => log.lock().failed_dials += 1,
        SwarmEvent::Behaviour(ProbeBehaviourEvent::Gossipsub(gossipsub::Event::Message {
            message, ..
        })) => {
            log.lock().gossip.push((message.topic.to_string(), message.data));
        }
        SwarmEvent::Behaviour(ProbeBehaviourEvent::Sync(ev)) => match ev {
            Event::Message { message: Message::Request { channel, request, .. }, .. } => {
                let mut l = log.lock();
                l.sync_requests += 1;
                let answer = match request {
                    SyncRequest::BlockByHash { hash } => {
                        l.block_requests.push(hash);
                        SyncResponse::Blocks(l.blocks.get(&hash).cloned().into_iter().collect())
                    }
                    _ => SyncResponse::Error("a test probe serves nothing".into()),
                };
                drop(l);
                let _ = swarm.behaviour_mut().sync.send_response(channel, answer);
            }
            Event::Message { message: Message::Response { request_id, response }, .. } => {
                if let Some(r) = pending.remove(&request_id) {
                    let _ = r.send(Ok(response));
                }
            }
            Event::OutboundFailure { request_id, error, .. } => {
                if let Some(r) = pending.remove(&request_id) {
                    let _ = r.send(Err(error.to_string()));
                }
            }
            _ => {}
        },
        SwarmEvent::Behaviour(ProbeBehaviourEvent::Pool(Event::Message {
            message: Message::Request { request, channel, .. },
            ..
        })) => {
            log.lock().pool_batches.push(request.0);
            let _ = swarm.behaviour_mut().pool.send_response(channel, PoolAck::Received);
        }
        _ => {}
    }
}
