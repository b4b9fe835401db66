//! The simulator's reads against a node whose call workers are saturated: a real `p2pe-node dev`
//! with one call worker, one place in its queue and a 1 s call limit, flooded by three callers of
//! a 16.7M-gas loop. A plain client is refused ("the node is busy", -32005) while the flood runs;
//! the simulator's client (`p2pe_sim::chain::Rpc`, alloy's retry layer with [`BusyRetry`]) must get
//! its answer once the flood ends instead of failing the day (a day once ended with "waiting for a
//! call worker" on a loaded 2-core machine). Other -32005 answers are not retried: the second test
//! asks for more logs than the node returns and gets the refusal at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pe_sim::chain::{BusyRetry, Rpc, RpcError, BUSY_BACKOFF_MS, BUSY_RETRIES};
use p2pe_tests::harness::NodeProcess;
use serde_json::{json, Value};

const LOOP_AT: &str = "0x0000000000000000000000000000000000001000";
/// `JUMPDEST PUSH1 0 JUMP`: loops until its gas runs out or the call's time limit.
const LOOP: &str = "0x5b600056";

fn loop_params(code: &str) -> Value {
    json!([{"to": LOOP_AT, "gas": "0x1000000"}, "latest", {LOOP_AT: {"code": code}}])
}

/// Three callers that keep the one worker and the queue's one place taken until `stop`.
fn flood(node: &NodeProcess, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..3)
        .map(|_| {
            let rpc = node.rpc();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = rpc.try_call("eth_call", loop_params(LOOP));
                }
            })
        })
        .collect()
}

fn busy_node() -> NodeProcess {
    let node = NodeProcess::dev(&[
        "--period",
        "1",
        "--rpc-call-workers",
        "1",
        "--rpc-call-queue",
        "1",
        "--rpc-call-timeout",
        "1",
    ]);
    node.rpc().wait_block(1, Duration::from_secs(30));
    node
}

#[test]
fn reads_refused_as_busy_are_retried_until_the_node_answers() {
    let node = busy_node();
    let stop = Arc::new(AtomicBool::new(false));
    let flooders = flood(&node, &stop);
    let flood_started = Instant::now();

    // The node is saturated: a plain client (no retries) is refused as busy.
    let plain = node.rpc();
    let refused = loop {
        match plain.try_call("eth_call", loop_params("0x00")) {
            Err(e) if BusyRetry::is_busy(e.code, &e.message) => break e,
            _ if flood_started.elapsed() > Duration::from_secs(10) => {
                panic!("the flood never saturated the node")
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    eprintln!("plain client refused: {}", refused.message);

    // The simulator's client asks now, and the flood stops 1.5 s later (the retries span
    // BUSY_RETRIES x BUSY_BACKOFF_MS = 3 s): it is answered, not failed.
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1_500));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = Rpc::new(node.rpc().url()).unwrap();
    let asked = Instant::now();
    let answer = rt.block_on(sim.call("eth_call", loop_params("0x00")));
    let took = asked.elapsed();
    stopper.join().unwrap();
    for f in flooders {
        f.join().unwrap();
    }
    assert_eq!(answer.expect("the simulator's read is answered after the flood"), json!("0x"));
    assert!(
        took < Duration::from_millis(BUSY_BACKOFF_MS * u64::from(BUSY_RETRIES) + 3_000),
        "answered within the retries: {took:?}"
    );
    eprintln!("the simulator's read took {took:?}");
}

#[test]
fn other_limit_answers_are_not_retried() {
    // A log query over more blocks than --rpc-max-log-range: -32005 "limit exceeded", not busy:
    // the simulator halves its range itself (Rpc::logs), so the client must hand it back at once.
    let node = NodeProcess::dev(&["--period", "1", "--rpc-max-log-range", "2"]);
    let rpc = node.rpc();
    rpc.wait_block(4, Duration::from_secs(30));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = Rpc::new(rpc.url()).unwrap();
    let asked = Instant::now();
    let answer = rt.block_on(sim.call("eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": "0x4"}])));
    let took = asked.elapsed();
    match answer {
        Err(RpcError::Node { code, message, .. }) => {
            assert_eq!(code, -32005, "{message}");
            assert!(!BusyRetry::is_busy(code, &message), "{message}");
        }
        other => panic!("expected the range refusal, got {other:?}"),
    }
    assert!(took < Duration::from_millis(BUSY_BACKOFF_MS), "refused at once, not retried: {took:?}");
}
