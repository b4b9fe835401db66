//! JSON-RPC request handling: any body bytes through `rpc::server::handle_body`, the function
//! the HTTP and WebSocket paths call, against a real chain (SQLite store in a temporary
//! directory, two sealed blocks with a contract deployment and a call, unlocked dev accounts).
//!
//! Every body must produce either nothing (notifications only) or a JSON-RPC 2.0 response
//! object or array, and never panic.

#![no_main]

use std::sync::{Arc, OnceLock};

use alloy_primitives::{B256, U256};
use libfuzzer_sys::fuzz_target;
use p2pe_node::blockchain::{unix_now, Blockchain, ChainOptions};
use p2pe_node::chain::{build_genesis, ChainSpec, GenesisParams};
use p2pe_node::crypto::SigningKey;
use p2pe_node::rpc::server::handle_body;
use p2pe_node::rpc::{RpcConfig, RpcContext};
use p2pe_node::storage::Store;
use p2pe_node::txpool::{PoolConfig, TxPool};
use serde_json::{json, Value};

/// Init code of a contract whose runtime stores its first calldata word in slot 0.
const INIT: &str = "0x6007600c60003960076000f360003560005500";

fn setup() -> Arc<RpcContext> {
    // Kept (and reachable, for LeakSanitizer) for the life of the process.
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR
        .get_or_init(|| tempfile::Builder::new().prefix("p2pe-fuzz-").tempdir().expect("tempdir"))
        .path()
        .to_path_buf();
    let sealer = SigningKey::from_bytes(&B256::repeat_byte(0x51)).expect("key");
    let dev = SigningKey::from_bytes(&B256::repeat_byte(0x52)).expect("key");
    let params = GenesisParams {
        chain_id: 1337,
        period: 1,
        gas_limit: 30_000_000,
        signers: vec![sealer.address()],
        funded: vec![(dev.address(), U256::from(10u64).pow(U256::from(21)))],
        timestamp: unix_now().saturating_sub(100),
        ..Default::default()
    };
    let json = serde_json::to_string(&build_genesis(&params)).expect("genesis json");
    let spec = ChainSpec::from_json(&json).expect("spec");
    let mut store = Store::open(&dir, Some(128)).expect("store");
    store.init_genesis(&spec, &json).expect("genesis");
    // Small pool limits keep memory bounded over millions of runs.
    let pool = Arc::new(TxPool::new(PoolConfig { max_per_sender: 64, max_total: 256, ..Default::default() }));
    let chain = Arc::new(
        Blockchain::open(spec, store, pool, &ChainOptions { read_connections: 2, ..Default::default() })
            .expect("chain"),
    );
    let ctx = Arc::new(RpcContext {
        chain: chain.clone(),
        config: RpcConfig { max_batch: 100, max_logs: 1000, admin: true, ..Default::default() },
        dev_accounts: vec![dev.clone()],
        signer: Some(sealer.address()),
        client_version: "p2pe-node/fuzz".into(),
        filters: Default::default(),
        proposals: Default::default(),
        network: None,
        calls: p2pe_node::rpc::workers::CallPool::start(
            chain.open_readers(1).expect("readers"),
            Default::default(),
        )
        .expect("call workers"),
    });
    let send = |tx: Value| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction", "params": [tx]});
        let out = handle_body(&ctx, body.to_string().as_bytes(), None).expect("response");
        assert!(out.get("result").is_some(), "setup transaction refused: {out}");
    };
    let from = format!("{:#x}", dev.address());
    send(json!({"from": from, "data": INIT, "gas": "0x100000"}));
    chain.seal_next(&sealer, unix_now(), None).expect("seal").expect("block 1");
    let contract = p2pe_node_fuzz_contract(&dev);
    send(json!({"from": from, "to": contract, "data": format!("0x{}", "2a".repeat(32)), "gas": "0x100000"}));
    chain.seal_next(&sealer, unix_now(), None).expect("seal").expect("block 2");
    ctx
}

/// The address of the first contract `dev` creates (nonce 0).
fn p2pe_node_fuzz_contract(dev: &SigningKey) -> String {
    format!("{:#x}", dev.address().create(0))
}

fn ctx() -> &'static Arc<RpcContext> {
    static CTX: OnceLock<Arc<RpcContext>> = OnceLock::new();
    CTX.get_or_init(setup)
}

fuzz_target!(|data: &[u8]| {
    let ctx = ctx();
    if let Some(out) = handle_body(ctx, data, None) {
        let ok = |v: &Value| v["jsonrpc"] == "2.0" && (v.get("result").is_some() ^ v.get("error").is_some());
        match &out {
            Value::Array(items) => assert!(!items.is_empty() && items.iter().all(ok), "bad batch answer {out}"),
            other => assert!(ok(other), "bad answer {other}"),
        }
    }
});
