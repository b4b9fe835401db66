//! Sync attempts against a peer played in process: a real chain of its own answers through the
//! node's own `serve`, and a test hook may alter each answer on its way (a liar).

use std::path::Path;

use alloy_primitives::Bytes;
use alloy_rlp::Encodable;

use super::*;
use crate::blockchain::{unix_now, ChainOptions};
use crate::chain::{build_genesis, ChainSpec, GenesisParams};
use crate::crypto::SigningKey;
use crate::storage::Store;
use crate::txpool::{PoolConfig, TxPool};

type Tamper = Box<dyn Fn(&SyncRequest, SyncResponse) -> SyncResponse + Send + Sync>;

fn signer() -> SigningKey {
    SigningKey::from_bytes(&B256::repeat_byte(0x61)).unwrap()
}

/// A one-signer chain from the genesis at `t0`, with `blocks` empty blocks sealed `offset`
/// seconds after their number (so two chains with different offsets fork at genesis).
fn chain(dir: &Path, t0: u64, blocks: u64, offset: u64) -> Arc<Blockchain> {
    let params = GenesisParams {
        chain_id: 61,
        signers: vec![signer().address()],
        timestamp: t0,
        period: 1,
        ..Default::default()
    };
    let json = serde_json::to_string(&build_genesis(&params)).unwrap();
    let spec = ChainSpec::from_json(&json).unwrap();
    let mut store = Store::open(dir, None).unwrap();
    store.init_genesis(&spec, &json).unwrap();
    let opts = ChainOptions { read_connections: 1, ..Default::default() };
    let chain = Blockchain::open(spec, store, Arc::new(TxPool::new(PoolConfig::default())), &opts).unwrap();
    for n in 1..=blocks {
        chain.seal_next(&signer(), t0 + 2 * n + offset, None).unwrap().unwrap();
    }
    Arc::new(chain)
}

/// A peer serving `theirs`, each answer passed through `tamper`.
fn peer(theirs: Arc<Blockchain>, tamper: Tamper) -> mpsc::Sender<Command> {
    let (tx, mut rx) = mpsc::channel::<Command>(16);
    tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            if let Command::Request { request, reply, .. } = cmd {
                let answer = crate::network::serve::serve(&theirs, request.clone());
                let _ = reply.send(Ok(tamper(&request, answer)));
            }
        }
    });
    tx
}

fn honest() -> Tamper {
    Box::new(|_, answer| answer)
}

/// One attempt of `ours` against a peer serving `theirs` through `tamper`.
async fn attempt(ours: &Arc<Blockchain>, theirs: Arc<Blockchain>, tamper: Tamper) -> Result<(), Failure> {
    attempt_within(ours, theirs, tamper, ATTEMPT_TIMEOUT).await
}

/// [`attempt`] with another time limit than [`ATTEMPT_TIMEOUT`].
async fn attempt_within(
    ours: &Arc<Blockchain>,
    theirs: Arc<Blockchain>,
    tamper: Tamper,
    limit: Duration,
) -> Result<(), Failure> {
    let cmds = peer(theirs, tamper);
    let a = Attempt { chain: ours, cmds: &cmds, peer: PeerId::random(), deadline: Instant::now() + limit };
    let mut batch = MAX_BLOCKS_PER_REQUEST;
    sync_with(&a, &mut batch, &SyncProgress::default()).await
}

/// A header answer with header `n`'s seal replaced by garbage.
fn garble_seal(n: u64) -> Tamper {
    Box::new(move |_, answer| match answer {
        SyncResponse::Headers(raw) => SyncResponse::Headers(
            raw.into_iter()
                .map(|bytes| {
                    let mut h =
                        <alloy_consensus::Header as alloy_rlp::Decodable>::decode(&mut bytes.as_ref())
                            .unwrap();
                    if h.number != n {
                        return bytes;
                    }
                    let mut extra = h.extra_data.to_vec();
                    let len = extra.len();
                    extra[len - 65..].fill(0x42);
                    h.extra_data = extra.into();
                    let mut buf = Vec::new();
                    h.encode(&mut buf);
                    Bytes::from(buf)
                })
                .collect(),
        ),
        other => other,
    })
}

fn offence(r: Result<(), Failure>) -> Offence {
    match r {
        Err(Failure::Offence(o, _)) => o,
        other => panic!("expected an offence, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_honest_longer_chain_is_verified_and_imported() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let t0 = unix_now() - 1000;
    let (ours, theirs) = (chain(d1.path(), t0, 0, 0), chain(d2.path(), t0, 5, 0));
    attempt(&ours, theirs.clone(), honest()).await.unwrap();
    assert_eq!(ours.head().hash, theirs.head().hash);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_heavier_fork_is_switched_to_only_once_verified() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let t0 = unix_now() - 1000;
    let (ours, theirs) = (chain(d1.path(), t0, 3, 0), chain(d2.path(), t0, 5, 1));
    let before = ours.head().hash;
    // Valid headers 1 and 2 of their fork, then a garbage seal: nothing of ours is reverted.
    assert!(matches!(offence(attempt(&ours, theirs.clone(), garble_seal(3)).await), Offence::BadBranch));
    assert_eq!(ours.head().hash, before);
    // A block whose body is not the one its header commits to.
    let no_withdrawals: Tamper = Box::new(|_, answer| match answer {
        SyncResponse::Blocks(raw) => SyncResponse::Blocks(
            raw.into_iter()
                .map(|bytes| {
                    let mut b = <Block as alloy_rlp::Decodable>::decode(&mut bytes.as_slice()).unwrap();
                    b.body.withdrawals = None;
                    let mut buf = Vec::new();
                    b.encode(&mut buf);
                    buf
                })
                .collect(),
        ),
        other => other,
    });
    assert!(matches!(offence(attempt(&ours, theirs.clone(), no_withdrawals).await), Offence::BadBranch));
    assert_eq!(ours.head().hash, before);
    // Honest, it is taken.
    attempt(&ours, theirs.clone(), honest()).await.unwrap();
    assert_eq!(ours.head().hash, theirs.head().hash);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_claimed_but_not_served_is_a_false_head() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let t0 = unix_now() - 1000;
    let (ours, theirs) = (chain(d1.path(), t0, 1, 0), chain(d2.path(), t0, 4, 0));
    // Claims block 1,000,004 with a total difficulty that chain could have; serves up to block 4.
    let far: Tamper = Box::new(|_, answer| match answer {
        SyncResponse::Status { genesis, head, .. } => SyncResponse::Status {
            genesis,
            head: head + 1_000_000,
            head_hash: B256::repeat_byte(9).0,
            total_difficulty: U256::from(1 + 2 * (head + 1_000_000)).to_be_bytes(),
        },
        other => other,
    });
    assert!(matches!(offence(attempt(&ours, theirs.clone(), far).await), Offence::FalseHead));
    // Nothing of a peer caught lying is taken, not even the valid part.
    assert_eq!(ours.head_number(), 1);
    // A total difficulty more than its claimed blocks could carry is refused before any header.
    let heavy: Tamper = Box::new(|_, answer| match answer {
        SyncResponse::Status { genesis, head, head_hash, .. } => SyncResponse::Status {
            genesis,
            head,
            head_hash,
            total_difficulty: U256::from(2 * head + 1_000).to_be_bytes(),
        },
        other => other,
    });
    assert!(matches!(offence(attempt(&ours, theirs, heavy).await), Offence::FalseHead));
}

#[test]
fn header_answers_stop_at_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let c = chain(dir.path(), unix_now() - 1000, 3, 0);
    let sizes = |r: SyncResponse| match r {
        SyncResponse::Headers(h) => h.iter().map(|b| b.len()).collect::<Vec<_>>(),
        other => panic!("not headers: {other:?}"),
    };
    let all = sizes(serve_headers(&c, 1, 3, usize::MAX));
    assert_eq!(all.len(), 3);
    assert_eq!(sizes(serve_headers(&c, 1, 3, all[0] + all[1])), all[..2], "at the budget");
    assert_eq!(sizes(serve_headers(&c, 1, 3, all[0] + all[1] - 1)), all[..1], "just under");
    assert_eq!(sizes(serve_headers(&c, 1, 3, 1)), all[..1], "always one");
    assert_eq!(sizes(serve_headers(&c, 4, 3, usize::MAX)), Vec::<usize>::new(), "past the head");
    assert_eq!(sizes(serve_headers(&c, 2, 0, usize::MAX)), Vec::<usize>::new(), "none asked");
    assert_eq!(sizes(serve_headers(&c, 0, 5, usize::MAX)).len(), 4, "genesis to head");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_contradiction_from_a_peer_whose_head_moved_is_no_offence() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let t0 = unix_now() - 1000;
    let (ours, theirs) = (chain(d1.path(), t0, 1, 0), chain(d2.path(), t0, 4, 0));
    // Like a peer that reorganised between its status and our requests: each status names
    // another head, so the headers not reaching the first one are not a lie.
    let calls = std::sync::atomic::AtomicU8::new(0);
    let moving: Tamper = Box::new(move |_, answer| match answer {
        SyncResponse::Status { genesis, head, .. } => SyncResponse::Status {
            genesis,
            head: head + 10,
            head_hash: B256::repeat_byte(calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst)).0,
            total_difficulty: U256::from(1 + 2 * (head + 10)).to_be_bytes(),
        },
        other => other,
    });
    let r = attempt(&ours, theirs, moving).await;
    assert!(matches!(&r, Err(Failure::Other(why)) if why.contains("moved")), "{r:?}");
    assert_eq!(ours.head_number(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_that_leaves_ours_below_the_reorg_window_is_unverifiable() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let t0 = unix_now() - 1000;
    // Forks at genesis; our head is REORG_WINDOW + 6 blocks up, so the walk starts above the fork.
    let (ours, theirs) =
        (chain(d1.path(), t0, REORG_WINDOW + 6, 0), chain(d2.path(), t0, REORG_WINDOW + 10, 1));
    let before = ours.head().hash;
    assert!(matches!(offence(attempt(&ours, theirs, honest()).await), Offence::Unverifiable));
    assert_eq!(ours.head().hash, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_ends_at_its_time_limit_without_calling_the_peer_stalled() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let t0 = unix_now() - 1000;
    let (ours, theirs) = (chain(d1.path(), t0, 0, 0), chain(d2.path(), t0, 3, 0));
    // Each answer takes 400 ms; the attempt has 1 s: the status and a header answer come, the
    // block answer would end past the limit.
    let slow: Tamper = Box::new(|_, answer| {
        std::thread::sleep(Duration::from_millis(400));
        answer
    });
    let started = Instant::now();
    let r = attempt_within(&ours, theirs, slow, Duration::from_secs(1)).await;
    assert!(matches!(&r, Err(Failure::Other(why)) if why.contains("time is up")), "{r:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    assert_eq!(ours.head_number(), 0, "nothing half-taken");
}
