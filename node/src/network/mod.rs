//! The peer network (rust-libp2p): TCP + Noise + Yamux; gossipsub carries new blocks and
//! transactions; a request/response protocol serves chain status, header ranges and block ranges
//! for sync, and another gives a node's pool to a peer that just connected.
//!
//! - [`swarm`]: the behaviours, connection limits (`--max-peers`), allow and block lists;
//! - [`driver`]: the swarm task (events, commands, gossip, pool announcements);
//! - [`serve`]: sync requests answered on blocking threads behind a bounded queue;
//! - [`ratelimit`]: per-peer rate limits on requests;
//! - [`blocks`]: gossiped blocks, and blocks from the near future deferred until their time;
//! - [`protocol`]: topics, sync and pool messages and size limits;
//! - [`peers`]: reputation (decaying scores), bans and the optional peer allowlist;
//! - [`sync`]: header-first catching up with a better peer (headers verified before any block
//!   is fetched) and switching branches under EIP-3436;
//! - [`txgossip`]: transactions gossiped in batches.
//!
//! Everything a peer sends is size-capped by the transport and validated before any work is
//! spent on it (decoding, then the Clique header rules, then execution); a peer that sends
//! invalid blocks or garbage loses score and is disconnected and banned.

pub mod blocks;
pub mod compact;
mod driver;
pub mod peers;
pub mod protocol;
pub mod ratelimit;
pub mod serve;
pub mod swarm;
mod sync;

pub use sync::{RequestFailure, SyncCodec, SyncProgress, SYNCING_THRESHOLD};
pub mod txgossip;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::{identity, Multiaddr, PeerId};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::blockchain::Blockchain;
use crate::primitives::Block;
use peers::Offence;
use protocol::*;

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
    /// Most connections in total, bootnodes not counted (`--max-peers`).
    pub max_peers: u32,
}

/// Requests to the swarm loop (from the sync and import workers, and admin RPC).
pub enum Command {
    /// Send a sync request to a peer (from the sync worker).
    Request {
        /// The peer asked.
        peer: PeerId,
        /// The request.
        request: SyncRequest,
        /// Where its answer (or why there is none) goes.
        reply: oneshot::Sender<Result<SyncResponse, RequestFailure>>,
    },
    /// The verdict on a gossip message, validated off the swarm task.
    Validated {
        /// The gossip message.
        id: MessageId,
        /// The peer it came from.
        peer: PeerId,
        /// Forward, ignore or reject it.
        acceptance: MessageAcceptance,
        /// The sender's offence, if any.
        offence: Option<Offence>,
        /// Transactions to publish ourselves (valid ones of a rejected batch).
        republish: Vec<alloy_primitives::B256>,
    },
    /// Record a peer's offence (from the sync and validation workers).
    Punish {
        /// The peer.
        peer: PeerId,
        /// What it did.
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
    /// A gossiped block from the near future (see [`blocks`]), to keep until its time.
    Defer {
        /// The gossip message.
        id: MessageId,
        /// The peer it came from.
        peer: PeerId,
        /// The block.
        block: Box<Block>,
    },
    /// Our pool in transaction batches, for a peer that just connected (made off the swarm task).
    GivePool {
        /// The new peer.
        peer: PeerId,
        /// The batches (see [`txgossip::encode_batch`]).
        batches: Vec<Vec<u8>>,
    },
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
    p2pe_keystore::write_secret_file(path, &bytes)?;
    Ok(key)
}

/// Starts the network; it runs until `shutdown` fires.
pub async fn start(
    chain: Arc<Blockchain>,
    cfg: NetworkConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(NetworkHandle, tokio::task::JoinHandle<()>)> {
    let key = load_identity(&cfg.identity_file)?;
    let peer_id = key.public().to_peer_id();
    let mut swarm = swarm::build(key, &cfg)?;
    swarm
        .listen_on(cfg.listen.clone())
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    for addr in &cfg.bootnodes {
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot dial bootnode");
        }
    }
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(1024);
    let (sync_tx, sync_rx) = mpsc::channel::<(PeerId, Option<Block>)>(256);
    let handle = NetworkHandle {
        peer_id,
        listen_addrs: Arc::new(Mutex::new(Vec::new())),
        peers: Arc::new(Mutex::new(HashSet::new())),
        sync: Arc::new(sync::SyncProgress::default()),
        commands: cmd_tx.clone(),
    };
    tokio::spawn(sync::run(chain.clone(), cmd_tx.clone(), sync_rx, handle.sync.clone()));
    let (served_tx, served_rx) = mpsc::channel(serve::SERVE_QUEUE + serve::SERVE_WORKERS);
    let serve_tx = serve::start_workers(chain.clone(), served_tx);
    let driver = driver::Driver::new(driver::Parts {
        swarm,
        chain,
        cfg,
        local: peer_id,
        listen_addrs: handle.listen_addrs.clone(),
        peers: handle.peers.clone(),
        cmd_tx,
        sync_tx,
        serve_tx,
    })?;
    let task = tokio::spawn(driver.run(shutdown, cmd_rx, served_rx));
    Ok((handle, task))
}
