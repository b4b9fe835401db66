//! `/metrics` (Prometheus text format) and `/health` (JSON; 200 when the broker connection is up and
//! the last JSON-RPC round succeeded, else 503), served by warp.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use crate::metrics::Metrics;

/// The routes, for tests and [`serve`].
pub fn routes(
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let m1 = metrics.clone();
    let prom = warp::path!("metrics")
        .and(warp::get())
        .map(move || warp::reply::with_header(m1.render(), "content-type", "text/plain; version=0.0.4"));
    let health = warp::path!("health").and(warp::get()).map(move || {
        let mqtt = metrics.mqtt_connected();
        let rpc = metrics.rpc_up.load(Ordering::Relaxed);
        let d = metrics.depth();
        let body = json!({
            "status": if mqtt && rpc { "ok" } else { "degraded" },
            "mqtt_connected": mqtt,
            "mqtt_sessions": metrics.mqtt_sessions.load(Ordering::Relaxed),
            "mqtt_sessions_connected": metrics.mqtt_sessions_connected.load(Ordering::Relaxed),
            "rpc_up": rpc,
            "outbox_pending": d.pending,
            "outbox_in_flight": d.in_flight,
            "txs_in_flight": d.txs_in_flight,
            "dead_letters": d.dead_letters,
            "quarantined": d.quarantined,
            "confirmed": metrics.confirmed.load(Ordering::Relaxed),
        });
        let code = if mqtt && rpc { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        warp::reply::with_status(warp::reply::json(&body), code)
    });
    prom.or(health)
}

/// Binds `addr` and serves the routes until the process ends. Returns the bound address.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let server = warp::serve(routes(metrics)).incoming(listener);
    tokio::spawn(server.run());
    Ok(bound)
}
