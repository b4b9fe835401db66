//! `p2pe-liar`: a peer that speaks the node's sync protocol (the node library's own request and
//! response types, codec and protocol name, so it speaks the same wire) and lies, for
//! `tests/tests/adversary_sync.rs`.
//!
//! It dials one node and keeps redialling it after every disconnection (so a ban shows as a
//! node that refuses it). It learns the node's chain by asking the node itself (status and
//! headers, twice a second), and answers the node's requests:
//!
//! - status: a head [`CLAIMED_AHEAD`] blocks ahead of the node's, with a total difficulty that
//!   such a chain could carry;
//! - headers, by `--mode`:
//!   - `far-garbage`: about 1 MiB of bytes that are no headers;
//!   - `valid-then-garbage`: the node's own headers up to below its head, then a valid header the
//!     node does not have (a sibling of its head, sealed with `--key-file`, the key of an
//!     authorised signer), then headers that link up but whose seals are garbage;
//!   - `stall`: no answer at all;
//! - blocks: nothing (an empty answer).
//!
//! It prints one line per event on stdout: `peer <id>` first, then `connected`, `closed`,
//! `asked headers <from> <count>`, `valid header <number> <hash>` (the one valid header it put
//! in an answer), `answered headers <n> <bytes>`.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy_consensus::Header;
use alloy_primitives::{Bytes, B256, U256};
use alloy_rlp::{Decodable, Encodable};
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use libp2p::request_response::{self, Message, ProtocolSupport, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol, Swarm};
use p2pe_node::consensus::clique::sign_header;
use p2pe_node::crypto::SigningKey;
use p2pe_node::network::protocol::{SyncRequest, SyncResponse, SYNC_PROTOCOL};
use p2pe_node::network::SyncCodec;

/// How far ahead of the node the liar claims its head is.
const CLAIMED_AHEAD: u64 = 1_000_000;

/// What the liar serves for headers.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// About 1 MiB of bytes that do not decode as headers.
    FarGarbage,
    /// The node's headers, one valid header it lacks, then headers with garbage seals.
    ValidThenGarbage,
    /// Never answers a header request.
    Stall,
}

#[derive(Parser, Debug)]
#[command(about = "A sync peer that lies (for the adversary tests)")]
struct Args {
    /// The node to attack, with `/p2p/<peer id>`.
    #[arg(long)]
    dial: Multiaddr,
    /// What to serve for headers.
    #[arg(long, value_enum)]
    mode: Mode,
    /// File holding the hex private key of an authorised signer (for `valid-then-garbage`).
    #[arg(long)]
    key_file: Option<std::path::PathBuf>,
}

/// What the liar knows of the node's chain.
#[derive(Default)]
struct Known {
    genesis: [u8; 32],
    head: u64,
    total_difficulty: U256,
    headers: BTreeMap<u64, Header>,
}

type Behaviour = request_response::Behaviour<SyncCodec>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let key = match &args.key_file {
        Some(path) => {
            let hex = std::fs::read_to_string(path)?;
            Some(SigningKey::from_bytes(&hex.trim().parse::<B256>()?).map_err(|e| format!("{e:?}"))?)
        }
        None => None,
    };
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|_| {
            Behaviour::with_codec(
                SyncCodec::default(),
                [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(3600)),
            )
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    println!("peer {}", swarm.local_peer_id());
    let target = args.dial.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    });
    let target = target.ok_or("--dial needs a /p2p/<peer id>")?;
    swarm.dial(args.dial.clone())?;
    let mut known = Known::default();
    let mut connected = false;
    // Requests of the `stall` mode, never answered (dropping the channel would answer).
    let mut stalled: Vec<ResponseChannel<SyncResponse>> = Vec::new();
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = poll.tick() => {
                if connected {
                    learn(&mut swarm, &target, &known);
                } else {
                    let _ = swarm.dial(args.dial.clone());
                }
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::ConnectionEstablished { .. } => {
                    connected = true;
                    println!("connected");
                    swarm.behaviour_mut().send_request(&target, SyncRequest::Status);
                }
                SwarmEvent::ConnectionClosed { num_established: 0, .. } => {
                    connected = false;
                    println!("closed");
                }
                SwarmEvent::Behaviour(request_response::Event::Message { message, .. }) => match message {
                    Message::Response { response, .. } => note(&mut known, response),
                    Message::Request { request, channel, .. } => {
                        let answer = lie(&known, args.mode, key.as_ref(), request);
                        match answer {
                            Some(a) => { let _ = swarm.behaviour_mut().send_response(channel, a); }
                            None => stalled.push(channel),
                        }
                    }
                },
                _ => {}
            }
        }
    }
}

/// Asks the node for its status and its last headers.
fn learn(swarm: &mut Swarm<Behaviour>, node: &libp2p::PeerId, known: &Known) {
    swarm.behaviour_mut().send_request(node, SyncRequest::Status);
    if known.head > 0 {
        let from = known.head.saturating_sub(80).max(1);
        swarm.behaviour_mut().send_request(node, SyncRequest::Headers { from, count: 100 });
    }
}

/// Records what the node told us.
fn note(known: &mut Known, response: SyncResponse) {
    match response {
        SyncResponse::Status { genesis, head, total_difficulty, .. } => {
            known.genesis = genesis;
            known.head = head;
            known.total_difficulty = U256::from_be_bytes(total_difficulty);
        }
        SyncResponse::Headers(raw) => {
            for bytes in raw {
                if let Ok(h) = Header::decode(&mut bytes.as_ref()) {
                    known.headers.insert(h.number, h);
                }
            }
            while known.headers.len() > 256 {
                known.headers.pop_first();
            }
        }
        _ => {}
    }
}

/// The liar's answer to a request from the node (`None`: never answer).
fn lie(known: &Known, mode: Mode, key: Option<&SigningKey>, request: SyncRequest) -> Option<SyncResponse> {
    match request {
        // Not ready to lie (a wrong genesis would be a different offence): no answer the node
        // acts on.
        SyncRequest::Status if known.genesis == [0; 32] => Some(SyncResponse::Error("starting".into())),
        SyncRequest::Status if matches!(mode, Mode::ValidThenGarbage) && known.headers.is_empty() => {
            Some(SyncResponse::Status {
                genesis: known.genesis,
                head: known.head,
                head_hash: [0; 32],
                total_difficulty: [0; 32],
            })
        }
        SyncRequest::Status => {
            let head = known.head + CLAIMED_AHEAD;
            // At most 2 per block: a total difficulty the claimed chain could carry.
            let td = known.total_difficulty + U256::from(2 * CLAIMED_AHEAD);
            Some(SyncResponse::Status {
                genesis: known.genesis,
                head,
                head_hash: B256::repeat_byte(0x11).0,
                total_difficulty: td.to_be_bytes(),
            })
        }
        SyncRequest::Headers { from, count } => {
            println!("asked headers {from} {count}");
            let answer = match mode {
                Mode::Stall => return None,
                Mode::FarGarbage => far_garbage(from),
                Mode::ValidThenGarbage => valid_then_garbage(known, key, from, count),
            };
            println!("answered headers {} {}", answer.len(), answer.iter().map(|b| b.len()).sum::<usize>());
            Some(SyncResponse::Headers(answer))
        }
        SyncRequest::Blocks { .. } | SyncRequest::BlockByHash { .. } => {
            Some(SyncResponse::Blocks(Vec::new()))
        }
    }
}

/// 512 entries of 2,000 bytes that are no RLP header: about 1 MiB, just under the answer cap.
fn far_garbage(from: u64) -> Vec<Bytes> {
    (0..512u64)
        .map(|i| {
            let seed = alloy_primitives::keccak256((from + i).to_be_bytes());
            Bytes::from(seed.iter().copied().cycle().take(2000).collect::<Vec<u8>>())
        })
        .collect()
}

/// The node's headers from `from` up to below the newest one the liar knows, then a sibling of
/// that newest one (valid: same parent, sealed by `key`), then headers that link to it but carry
/// garbage seals.
fn valid_then_garbage(known: &Known, key: Option<&SigningKey>, from: u64, count: u32) -> Vec<Bytes> {
    let (Some(key), Some((&top, newest))) = (key, known.headers.last_key_value()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let end = from + u64::from(count);
    for n in from..top.min(end) {
        match known.headers.get(&n) {
            Some(h) => out.push(encode(h)),
            None => return out,
        }
    }
    if top < from || top >= end {
        return out;
    }
    let mut sibling = newest.clone();
    let mut extra = sibling.extra_data.to_vec();
    extra[0] ^= 0x5a; // another vanity: another block
    sibling.extra_data = extra.into();
    sign_header(&mut sibling, key).expect("a Clique header has room for its seal");
    let mut parent = sibling.hash_slow();
    println!("valid header {top} {parent}");
    out.push(encode(&sibling));
    for n in top + 1..end {
        let mut junk = sibling.clone();
        junk.number = n;
        junk.parent_hash = parent;
        junk.timestamp = sibling.timestamp + (n - top);
        let mut extra = junk.extra_data.to_vec();
        let len = extra.len();
        extra[len - 65..].copy_from_slice(&[0x42; 65]);
        junk.extra_data = extra.into();
        parent = junk.hash_slow();
        out.push(encode(&junk));
    }
    out
}

fn encode(h: &Header) -> Bytes {
    let mut buf = Vec::new();
    h.encode(&mut buf);
    buf.into()
}
