//! JSON-RPC against hostile web pages and clients, on real `p2pe-node dev` processes: the server
//! refuses a foreign `Origin` (HTTP, preflight and WebSocket upgrade), a `Host` outside
//! `--http-vhosts` (DNS rebinding) and bodies not declared as JSON, before any method runs; and
//! the privileged methods (`clique_propose`, `clique_discard`, `debug_*`, `admin_*`) answer only
//! with `--rpc-admin`. The browser's view of the same attacks is `web/tests/browser/hostile.test.mjs`.

use std::time::{Duration, Instant};

use p2pe_tests::harness::{dev_key, NodeProcess, Rpc};
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;

const DEAD: &str = "0x000000000000000000000000000000000000dead";
const OK_ORIGIN: &str = "http://ok.example";
const EVIL_ORIGIN: &str = "http://evil.example";

fn client() -> Client {
    Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

fn propose_body() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "clique_propose", "params": [DEAD, true]}).to_string()
}

/// POSTs `body` to `url` with the given extra headers.
fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut req = client().post(url).body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().expect("HTTP request")
}

fn status_and_json(res: Response) -> (u16, Option<String>, Value) {
    let status = res.status().as_u16();
    let acao = res
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().expect("ascii header").to_string());
    let text = res.text().expect("body");
    (status, acao, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

fn error_message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_else(|| panic!("no error message in {v}"))
}

/// Opens a WebSocket to `url` with the given extra headers; `Err(status)` when the upgrade is refused.
fn ws_open(url: &str, headers: &[(&str, &str)]) -> Result<(), u16> {
    let mut req = url.replace("http://", "ws://").into_client_request().expect("ws request");
    for (k, v) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header name");
        req.headers_mut().insert(name, v.parse().expect("header value"));
    }
    match tungstenite::connect(req) {
        Ok((mut sock, _)) => {
            let call = json!({"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []});
            sock.send(tungstenite::Message::text(call.to_string())).expect("ws send");
            let answer: Value =
                serde_json::from_str(sock.read().expect("ws read").to_text().unwrap()).unwrap();
            assert_eq!(answer["result"], "0x539", "the upgraded connection serves JSON-RPC");
            Ok(())
        }
        Err(tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("WebSocket to {url} failed without an HTTP answer: {e}"),
    }
}

fn no_votes(rpc: &Rpc) {
    assert_eq!(rpc.call("clique_proposals", json!([])), json!({}), "a vote was recorded");
}

#[test]
fn foreign_origins_are_refused_on_http_and_websocket() {
    // --rpc-admin: the origin check alone must stop clique_propose here.
    let node = NodeProcess::dev(&["--period", "1", "--rpc-admin", "--http-corsdomain", OK_ORIGIN]);
    let rpc = node.rpc();
    let url = &node.url;
    let json_ct = ("content-type", "application/json");

    // A hostile page: JSON fetch, "simple" text/plain POST, preflight and WebSocket, all 403.
    let (status, acao, body) =
        status_and_json(post(url, &[json_ct, ("origin", EVIL_ORIGIN)], &propose_body()));
    assert_eq!(status, 403, "{body}");
    assert_eq!(acao, None, "a refused origin is never echoed");
    assert!(error_message(&body).contains("--http-corsdomain"), "{body}");
    let simple =
        post(url, &[("content-type", "text/plain;charset=UTF-8"), ("origin", EVIL_ORIGIN)], &propose_body());
    assert_eq!(simple.status().as_u16(), 403);
    let preflight = client()
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", EVIL_ORIGIN)
        .header("access-control-request-method", "POST")
        .send()
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 403);
    assert!(preflight.headers().get("access-control-allow-origin").is_none());
    assert_eq!(ws_open(url, &[("origin", EVIL_ORIGIN)]), Err(403));
    // Another port of the same machine is another origin.
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let neighbour = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    assert_eq!(post(url, &[json_ct, ("origin", &neighbour)], &propose_body()).status().as_u16(), 403);
    assert_eq!(ws_open(url, &[("origin", &neighbour)]), Err(403));
    no_votes(&rpc);

    // The allowed origin is served and echoed; so is the node's own (the dApp it serves).
    let chain_id = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).to_string();
    let (status, acao, body) = status_and_json(post(url, &[json_ct, ("origin", OK_ORIGIN)], &chain_id));
    assert_eq!((status, acao.as_deref(), &body["result"]), (200, Some(OK_ORIGIN), &json!("0x539")));
    let pre = client()
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", OK_ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .unwrap();
    assert_eq!(pre.status().as_u16(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], OK_ORIGIN);
    assert!(pre.headers()["access-control-allow-headers"].to_str().unwrap().contains("content-type"));
    assert_eq!(ws_open(url, &[("origin", OK_ORIGIN)]), Ok(()));
    let own = url.as_str();
    let (status, acao, _) = status_and_json(post(url, &[json_ct, ("origin", own)], &chain_id));
    assert_eq!((status, acao.as_deref()), (200, Some(own)));
    assert_eq!(ws_open(url, &[("origin", own)]), Ok(()));

    // Clients without Origin (curl, cast, the bridge) keep working, and their votes do count.
    assert_eq!(ws_open(url, &[]), Ok(()));
    rpc.call("clique_propose", json!([DEAD, true]));
    assert_eq!(rpc.call("clique_proposals", json!([])), json!({DEAD: true}));
}

#[test]
fn hosts_outside_the_vhosts_and_non_json_bodies_are_refused() {
    let node = NodeProcess::dev(&["--period", "1"]);
    let url = &node.url;
    let port = url.rsplit(':').next().unwrap();
    let json_ct = ("content-type", "application/json");
    let chain_id = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).to_string();

    // DNS rebinding: evil.example resolves to 127.0.0.1; its page is same-origin with itself.
    let evil_host = format!("evil.example:{port}");
    let evil_page = format!("http://evil.example:{port}");
    for headers in [
        vec![json_ct, ("host", evil_host.as_str())],
        vec![json_ct, ("host", &evil_host), ("origin", &evil_page)],
    ] {
        let (status, _, body) = status_and_json(post(url, &headers, &chain_id));
        assert_eq!(status, 403, "{body}");
        assert!(error_message(&body).contains("--http-vhosts"), "{body}");
    }
    assert_eq!(ws_open(url, &[("host", &evil_host)]), Err(403));
    let page = client().get(format!("{url}/")).header("host", &evil_host).send().unwrap();
    assert_eq!(page.status().as_u16(), 403, "the dApp's files too");
    // localhost (the default vhost) and IP addresses are served.
    for host in [format!("localhost:{port}"), format!("LocalHost:{port}"), format!("127.0.0.1:{port}")] {
        let (status, _, body) = status_and_json(post(url, &[json_ct, ("host", &host)], &chain_id));
        assert_eq!((status, &body["result"]), (200, &json!("0x539")), "Host {host}");
    }
    let own_localhost = format!("http://localhost:{port}");
    let headers = [json_ct, ("host", &format!("localhost:{port}")), ("origin", &own_localhost)];
    assert_eq!(post(url, &headers, &chain_id).status().as_u16(), 200);

    // Only JSON bodies: anything else is 415 with a JSON-RPC error naming the rule.
    for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let (status, _, body) = status_and_json(post(url, &[("content-type", ct)], &chain_id));
        assert_eq!(status, 415, "{ct}: {body}");
        assert!(error_message(&body).contains("application/json"), "{body}");
    }
    let (status, _, body) = status_and_json(post(url, &[], &chain_id));
    assert_eq!(status, 415, "no content type: {body}");
    for ct in ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"] {
        let (status, _, body) = status_and_json(post(url, &[("content-type", ct)], &chain_id));
        assert_eq!((status, &body["result"]), (200, &json!("0x539")), "{ct}");
    }

    // With --http-vhosts naming the host, and * for any host.
    let named = NodeProcess::dev(&["--period", "1", "--http-vhosts", "node.example,other.example"]);
    let port = named.url.rsplit(':').next().unwrap();
    for (host, want) in
        [("node.example", 200), ("other.example", 200), ("localhost", 403), ("evil.example", 403)]
    {
        let res = post(&named.url, &[json_ct, ("host", &format!("{host}:{port}"))], &chain_id);
        assert_eq!(res.status().as_u16(), want, "Host {host}");
    }
}

/// Sends a transaction from dev account 0 and returns its hash once mined.
fn mined_tx(rpc: &Rpc) -> Value {
    let from = dev_key(0).address();
    let hash = rpc.call("eth_sendTransaction", json!([{"from": from, "to": DEAD, "value": "0x1"}]));
    rpc.wait_receipt(hash.as_str().unwrap(), Duration::from_secs(30));
    hash
}

#[test]
fn privileged_methods_need_rpc_admin() {
    let node = NodeProcess::dev(&["--period", "1"]);
    let rpc = node.rpc();
    let tx = mined_tx(&rpc);
    let privileged = [
        ("clique_propose", json!([DEAD, true])),
        ("clique_discard", json!([DEAD])),
        ("debug_traceTransaction", json!([tx])),
        ("debug_getRawBlock", json!(["latest"])),
        ("admin_peers", json!([])),
        ("admin_nodeInfo", json!([])),
    ];
    for (method, params) in &privileged {
        let e = rpc.try_call(method, params.clone()).unwrap_err();
        assert_eq!(e.code, -32601, "{method}: {e:?}");
        assert!(e.message.contains("--rpc-admin") && e.message.contains(method), "{method}: {}", e.message);
    }
    no_votes(&rpc);
    // The read-only clique methods stay public.
    assert_eq!(rpc.call("clique_getSigners", json!([])).as_array().map(Vec::len), Some(1));
    assert!(rpc.call("clique_getSnapshot", json!([]))["signers"].is_object());
    assert!(rpc.call("clique_status", json!([]))["numBlocks"].is_number());

    let admin = NodeProcess::dev(&["--period", "1", "--rpc-admin"]);
    let rpc = admin.rpc();
    let tx = mined_tx(&rpc);
    let trace = rpc.call("debug_traceTransaction", json!([tx]));
    assert_eq!(trace["failed"], false, "{trace}");
    assert!(rpc.call("debug_getRawBlock", json!(["latest"])).as_str().unwrap().starts_with("0x"));
    // admin_* exists with the flag; this dev node has no peer network, which it says.
    let e = rpc.try_call("admin_peers", json!([])).unwrap_err();
    assert!(e.message.contains("without the peer network"), "{e:?}");
    rpc.call("clique_propose", json!([DEAD, true]));
    rpc.call("clique_discard", json!([DEAD]));
    no_votes(&rpc);
    // The vote that halts a one-signer chain: with --rpc-admin it is cast and counted.
    rpc.call("clique_propose", json!([DEAD, true]));
    let start = Instant::now();
    loop {
        let signers = rpc.call("clique_getSigners", json!([]));
        if signers.as_array().unwrap().iter().any(|s| s.as_str() == Some(DEAD)) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the vote was not counted: {signers}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One `eth_chainId` answer with a one-digit id: `{"id":1,"jsonrpc":"2.0","result":"0x539"}`.
const CHAIN_ID_ANSWER: usize = 41;

fn ws_call(
    sock: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    id: u64,
    method: &str,
    params: Value,
) -> Value {
    let call = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    sock.send(tungstenite::Message::text(call.to_string())).expect("ws send");
    loop {
        let v: Value = serde_json::from_str(sock.read().expect("ws read").to_text().unwrap()).unwrap();
        if v["id"] == json!(id) {
            return v;
        }
    }
}

#[test]
fn batch_responses_subscriptions_and_filters_are_capped() {
    let cap = 3 * CHAIN_ID_ANSWER;
    let node = NodeProcess::dev(&[
        "--period",
        "1",
        "--rpc-batch-response-max-size",
        &cap.to_string(),
        "--rpc-max-subscriptions-per-connection",
        "2",
        "--rpc-max-filters",
        "2",
    ]);
    let rpc = node.rpc();
    let chain_id = |id: u64| json!({"jsonrpc": "2.0", "id": id, "method": "eth_chainId", "params": []});
    let single =
        client().post(&node.url).header("content-type", "application/json").body(chain_id(1).to_string());
    assert_eq!(single.send().unwrap().text().unwrap().len(), CHAIN_ID_ANSWER);

    // Before each call the responses so far hold 0, 41, 82 (under), 123 (at) and 164 bytes (over
    // the 123-byte cap): the first four calls run, the fifth, a transaction, is refused and not run.
    let from = dev_key(0).address();
    let nonce = rpc.call("eth_getTransactionCount", json!([from, "pending"]));
    let send = json!({"jsonrpc": "2.0", "id": 5, "method": "eth_sendTransaction", "params": [{"from": from, "to": DEAD}]});
    let notification = json!({"jsonrpc": "2.0", "method": "eth_chainId", "params": []});
    let batch = json!([chain_id(1), chain_id(2), chain_id(3), chain_id(4), send, notification, chain_id(6)]);
    let (status, answer) = rpc.raw(&batch.to_string()).unwrap();
    assert_eq!(status, 200);
    let answer = answer.as_array().expect("batch answer").clone();
    assert_eq!(answer.len(), 6, "no answer for the notification: {answer:?}");
    for a in &answer[..4] {
        assert_eq!(a["result"], "0x539", "{a}");
    }
    for (a, id) in answer[4..].iter().zip([5, 6]) {
        assert_eq!((a["id"].as_u64(), a["error"]["code"].as_i64()), (Some(id), Some(-32005)), "{a}");
        assert!(error_message(a).contains("--rpc-batch-response-max-size"), "{a}");
    }
    assert_eq!(rpc.call("eth_getTransactionCount", json!([from, "pending"])), nonce, "the refused call ran");
    // Exactly at the cap the batch is whole.
    let (_, answer) = rpc.raw(&json!([chain_id(1), chain_id(2), chain_id(3)]).to_string()).unwrap();
    assert!(answer.as_array().unwrap().iter().all(|a| a["result"] == "0x539"), "{answer}");

    // Subscriptions per connection: 1 and 2 (at the limit) open, the third is refused; closing
    // one makes room; another connection has its own.
    let (mut sock, _) = tungstenite::connect(node.url.replace("http://", "ws://")).expect("ws");
    let first = ws_call(&mut sock, 1, "eth_subscribe", json!(["newHeads"]))["result"].clone();
    assert!(first.is_string());
    assert!(ws_call(&mut sock, 2, "eth_subscribe", json!(["logs", {}]))["result"].is_string());
    let over = ws_call(&mut sock, 3, "eth_subscribe", json!(["newPendingTransactions"]));
    assert_eq!(over["error"]["code"], -32005, "{over}");
    assert!(error_message(&over).contains("--rpc-max-subscriptions-per-connection"), "{over}");
    assert_eq!(ws_call(&mut sock, 4, "eth_unsubscribe", json!([first]))["result"], true);
    assert!(ws_call(&mut sock, 5, "eth_subscribe", json!(["newHeads"]))["result"].is_string());
    let (mut other, _) = tungstenite::connect(node.url.replace("http://", "ws://")).expect("ws");
    for id in [1, 2] {
        assert!(ws_call(&mut other, id, "eth_subscribe", json!(["newHeads"]))["result"].is_string());
    }

    // Filters on the node: 1 and 2 (at the limit) installed, the third refused until one goes.
    let f1 = rpc.call("eth_newBlockFilter", json!([]));
    rpc.call("eth_newFilter", json!([{}]));
    let e = rpc.try_call("eth_newPendingTransactionFilter", json!([])).unwrap_err();
    assert_eq!(e.code, -32005, "{e:?}");
    assert!(e.message.contains("--rpc-max-filters"), "{e:?}");
    assert_eq!(rpc.call("eth_uninstallFilter", json!([f1])), true);
    assert!(rpc.call("eth_newPendingTransactionFilter", json!([])).is_string());
}
