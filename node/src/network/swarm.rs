//! Building the libp2p swarm: transport, behaviours and connection limits.
//!
//! The behaviours that gate connections come first: `allowed` (the `--p2p-allow` list, when
//! given), `blocked` (bans and admin blocks) and `limits` (`--max-peers`, connections per peer).
//! They refuse a connection as soon as the peer's identity is known (after the Noise handshake),
//! before any protocol runs on it, so a peer that is not admitted is never served anything, not
//! even a status.

use std::collections::HashSet;
use std::time::Duration;

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity, noise, request_response, tcp, yamux,
    PeerId, StreamProtocol, Swarm,
};

use super::protocol::*;
use super::{NetworkConfig, SyncCodec};

/// Connections one peer may hold at once. Two, not one: when two nodes dial each other at the same
/// moment, each may keep its own outgoing connection and refuse the other's, which would leave
/// them with none.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 2;

/// Default of `--max-peers`: connections in total (a peer normally holds one), as geth's
/// `--maxpeers` (50). A microgrid's network has a handful of signers and some followers; each
/// connection costs gossip bandwidth, a sync status poll every 3 s and memory, so a flood of new
/// identities must not take them all. Bootnodes are not counted (geth's trusted peers), so the
/// node can always reach the peers it was configured with.
pub const DEFAULT_MAX_PEERS: u32 = 50;

/// The network behaviours.
#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub allowed: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<SyncCodec>,
    pub pool: request_response::cbor::Behaviour<PoolBatch, PoolAck>,
    pub identify: identify::Behaviour,
}

fn gossip_id(msg: &gossipsub::Message) -> gossipsub::MessageId {
    gossipsub::MessageId::from(alloy_primitives::keccak256(&msg.data).to_vec())
}

/// The connection limits of `cfg`, with the bootnodes exempt.
fn limits(cfg: &NetworkConfig) -> connection_limits::Behaviour {
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(cfg.max_peers))
        .with_max_pending_incoming(Some(cfg.max_peers))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER));
    let mut behaviour = connection_limits::Behaviour::new(limits);
    for id in bootnode_ids(cfg) {
        behaviour.bypass_peer_id(&id);
    }
    behaviour
}

/// The peer ids of the bootnodes (those given with `/p2p/<id>`).
pub(super) fn bootnode_ids(cfg: &NetworkConfig) -> HashSet<PeerId> {
    cfg.bootnodes
        .iter()
        .filter_map(|a| {
            a.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            })
        })
        .collect()
}

fn behaviour(key: &identity::Keypair, cfg: &NetworkConfig) -> anyhow::Result<Behaviour> {
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(gossip_id)
        .heartbeat_interval(Duration::from_millis(700))
        .build()
        .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
    let gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_cfg)
            .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
    let sync = request_response::Behaviour::with_codec(
        SyncCodec::default(),
        [(StreamProtocol::new(SYNC_PROTOCOL), request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(30))
            .with_max_concurrent_streams(32),
    );
    let codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_POOL_REQUEST_BYTES)
        .set_response_size_maximum(1024);
    let pool = request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(POOL_PROTOCOL), request_response::ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
    );
    let identify = identify::Behaviour::new(identify::Config::new("/p2pe/1".into(), key.public()));
    let allowed = cfg.allow.as_ref().map(|peers| {
        let mut b = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
        for p in peers {
            b.allow_peer(*p);
        }
        b
    });
    Ok(Behaviour {
        allowed: Toggle::from(allowed),
        blocked: Default::default(),
        limits: limits(cfg),
        gossipsub,
        sync,
        pool,
        identify,
    })
}

/// Builds the swarm (TCP + Noise + Yamux) with identity `key`.
pub(super) fn build(key: identity::Keypair, cfg: &NetworkConfig) -> anyhow::Result<Swarm<Behaviour>> {
    let behaviour = behaviour(&key, cfg)?;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|_| behaviour)
        .map_err(|e| anyhow::anyhow!("network behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}
