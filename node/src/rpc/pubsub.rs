//! WebSocket connections and `eth_subscribe` / `eth_unsubscribe`.
//!
//! Each connection has one bounded outgoing queue. Responses to requests wait for room;
//! notifications never wait: if a subscriber cannot keep up and its queue is full, or it fell
//! behind the node's event stream, the connection is closed with a close frame that says why.
//! A stalled client therefore costs at most one queue of messages, never unbounded memory.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use alloy_rpc_types_eth::Filter;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::convert;
use super::error::{RpcError, RpcResult};
use super::params::Params;
use super::RpcContext;
use crate::storage::LogFilterQuery;

/// The state of one WebSocket connection.
pub struct WsConnection {
    out: mpsc::Sender<String>,
    queue: usize,
    close: watch::Sender<Option<String>>,
    subs: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl WsConnection {
    fn closing(&self, reason: String) {
        tracing::info!(%reason, "closing WebSocket subscriber");
        let _ = self.close.send(Some(reason));
    }

    /// Queues a notification without waiting; a full queue closes the connection.
    fn notify(&self, id: &str, result: Value) -> bool {
        let msg = json!({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": id, "result": result}});
        match self.out.try_send(msg.to_string()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.closing(format!("subscriber too slow: {} messages queued", self.queue));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl Drop for WsConnection {
    fn drop(&mut self) {
        for (_, task) in self.subs.lock().drain() {
            task.abort();
        }
    }
}

fn new_id() -> String {
    format!("{:#x}", rand::random::<u128>())
}

/// `eth_subscribe` and `eth_unsubscribe` on a WebSocket connection.
pub fn call(ctx: &Arc<RpcContext>, conn: &Arc<WsConnection>, method: &str, p: Params) -> RpcResult {
    match method {
        "eth_subscribe" => subscribe(ctx, conn, p),
        "eth_unsubscribe" => {
            p.at_most(1)?;
            let id: String = p.req(0)?;
            Ok(json!(match conn.subs.lock().remove(&id) {
                Some(task) => {
                    task.abort();
                    true
                }
                None => false,
            }))
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

fn lagged(conn: &WsConnection, n: u64) {
    conn.closing(format!("subscriber too slow: fell {n} events behind"));
}

fn subscribe(ctx: &Arc<RpcContext>, conn: &Arc<WsConnection>, p: Params) -> RpcResult {
    p.at_most(2)?;
    let kind: String = p.req(0)?;
    let max = ctx.config.max_subscriptions_per_connection;
    if conn.subs.lock().len() >= max {
        return Err(RpcError::limit_exceeded(format!(
            "this connection has {max} subscriptions open, the limit (--rpc-max-subscriptions-per-connection); close some with eth_unsubscribe"
        )));
    }
    let id = new_id();
    let weak = Arc::downgrade(conn);
    let sid = id.clone();
    let task = match kind.as_str() {
        "newHeads" => heads_task(ctx, weak, sid),
        "logs" => logs_task(ctx, weak, sid, p.opt(1)?.unwrap_or_default()),
        "newPendingTransactions" => pending_task(ctx, weak, sid, p.opt(1)?.unwrap_or(false)),
        other => {
            return Err(RpcError::invalid_params(format!(
                "unknown subscription {other:?}: use newHeads, logs or newPendingTransactions"
            )))
        }
    };
    conn.subs.lock().insert(id.clone(), task);
    Ok(json!(id))
}

/// Forwards each event of `rx` to the connection's subscription `sid`, as the values `render`
/// makes of it (none: nothing to send), until the connection goes, a send fails or the subscriber
/// falls behind the channel (the connection is then closed, [`lagged`]).
fn forward<T: Clone + Send + 'static>(
    mut rx: broadcast::Receiver<T>,
    weak: Weak<WsConnection>,
    sid: String,
    render: impl Fn(T) -> Vec<Value> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let ev = rx.recv().await;
            let Some(conn) = weak.upgrade() else { return };
            match ev {
                Ok(ev) => {
                    for value in render(ev) {
                        if !conn.notify(&sid, value) {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => return lagged(&conn, n),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// `newHeads`: each new canonical block's header (blocks a reorg removed are not sent again).
fn heads_task(ctx: &Arc<RpcContext>, weak: Weak<WsConnection>, sid: String) -> JoinHandle<()> {
    forward(ctx.chain.subscribe(), weak, sid, |b| {
        if b.removed {
            return Vec::new();
        }
        vec![json!(convert::header(&b.block, b.total_difficulty))]
    })
}

/// `logs`: the logs of each new block that match `filter`; a reorg's removed logs come again with
/// `removed: true`.
fn logs_task(ctx: &Arc<RpcContext>, weak: Weak<WsConnection>, sid: String, filter: Filter) -> JoinHandle<()> {
    let mut topics: [Vec<_>; 4] = Default::default();
    for (i, t) in filter.topics.iter().enumerate() {
        topics[i] = t.iter().copied().collect();
    }
    let query =
        LogFilterQuery { from: 0, to: u64::MAX, addresses: filter.address.iter().copied().collect(), topics };
    forward(ctx.chain.subscribe(), weak, sid, move |b| {
        convert::block_logs(&b.block, &b.receipts)
            .iter()
            .filter(|log| query.matches(&log.log))
            .map(|log| json!(convert::log(log, b.removed)))
            .collect()
    })
}

/// `newPendingTransactions`: each transaction the pool accepts, by hash or (`full`) whole.
fn pending_task(ctx: &Arc<RpcContext>, weak: Weak<WsConnection>, sid: String, full: bool) -> JoinHandle<()> {
    let chain = ctx.chain.clone();
    forward(ctx.chain.pool().subscribe(), weak, sid, move |hash| match full {
        // A transaction that left the pool meanwhile is not sent.
        true => {
            chain.pool().get(&hash).map(|tx| json!(convert::pending_transaction(&tx))).into_iter().collect()
        }
        false => vec![json!(hash)],
    })
}

/// Serves one upgraded WebSocket until either side closes.
pub async fn serve_connection(ctx: Arc<RpcContext>, socket: warp::ws::WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let queue = ctx.config.ws_queue.max(1);
    let (out_tx, mut out_rx) = mpsc::channel::<String>(queue);
    let (close_tx, mut close_rx) = watch::channel::<Option<String>>(None);
    let conn =
        Arc::new(WsConnection { out: out_tx, queue, close: close_tx, subs: Mutex::new(HashMap::new()) });
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = out_rx.recv() => match msg {
                    Some(text) => {
                        if sink.send(warp::ws::Message::text(text)).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                _ = close_rx.changed() => {
                    let reason = close_rx.borrow().clone().unwrap_or_default();
                    let frame = warp::ws::Message::close_with(1008u16, reason);
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sink.send(frame)).await;
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sink.close()).await;
                    return;
                }
            }
        }
    });
    let mut closed = conn.close.subscribe();
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = closed.changed() => break,
        };
        let Some(Ok(msg)) = msg else { break };
        if msg.is_close() {
            break;
        }
        if !(msg.is_text() || msg.is_binary()) {
            continue;
        }
        let body = msg.into_bytes();
        let (c, k) = (ctx.clone(), conn.clone());
        let response = tokio::task::spawn_blocking(move || super::server::handle_body(&c, &body, Some(&k)))
            .await
            .ok()
            .flatten();
        if let Some(v) = response {
            if conn.out.send(v.to_string()).await.is_err() {
                break;
            }
        }
    }
    drop(conn);
    let _ = writer.await;
}
