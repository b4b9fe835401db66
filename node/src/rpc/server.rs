//! The HTTP and WebSocket server (warp): one port, JSON-RPC 2.0 with batches, limits, and the
//! host, origin and content-type checks of [`super::access`] in front of every route.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Filter;

use super::access::{self, AccessError};
use super::connections::ConnectionCap;
use super::dispatch;
use super::error::RpcError;
use super::pubsub::WsConnection;
use super::ui;
use super::RpcContext;

fn error_response(id: Value, e: RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": e})
}

/// Handles one request object; `None` for notifications (no `id`). `arrived`: when the body it
/// came in arrived (the heavy calls of one body share one time limit from then).
fn handle_one(
    ctx: &Arc<RpcContext>,
    req: Value,
    conn: Option<&Arc<WsConnection>>,
    arrived: Instant,
) -> Option<Value> {
    let Value::Object(mut obj) = req else {
        return Some(error_response(Value::Null, RpcError::invalid_request("request must be a JSON object")));
    };
    let id = obj.remove("id");
    let notification = id.is_none();
    let id = id.unwrap_or(Value::Null);
    if !matches!(id, Value::Null | Value::Number(_) | Value::String(_)) {
        return Some(error_response(
            Value::Null,
            RpcError::invalid_request("id must be a string, number or null"),
        ));
    }
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(error_response(id, RpcError::invalid_request("jsonrpc must be \"2.0\"")));
    }
    let Some(Value::String(method)) = obj.remove("method") else {
        return Some(error_response(id, RpcError::invalid_request("method must be a string")));
    };
    let result = dispatch::call(ctx, &method, obj.remove("params"), conn, arrived);
    if notification {
        return None;
    }
    Some(match result {
        Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
        Err(e) => {
            if e.code == -32603 {
                tracing::warn!(%method, error = %e.message, "RPC internal error");
            }
            error_response(id, e)
        }
    })
}

/// Handles a request body: a single request or a batch. Returns `None` when nothing is due
/// (only notifications).
pub fn handle_body(ctx: &Arc<RpcContext>, body: &[u8], conn: Option<&Arc<WsConnection>>) -> Option<Value> {
    let arrived = Instant::now();
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Some(error_response(Value::Null, RpcError::parse(e))),
    };
    match parsed {
        Value::Array(items) => {
            if items.is_empty() {
                return Some(error_response(Value::Null, RpcError::invalid_request("empty batch")));
            }
            if items.len() > ctx.config.max_batch {
                return Some(error_response(
                    Value::Null,
                    RpcError::limit_exceeded(format!(
                        "batch of {} requests is over the limit of {}",
                        items.len(),
                        ctx.config.max_batch
                    )),
                ));
            }
            let out = handle_batch(ctx, items, conn, arrived);
            if out.is_empty() {
                None
            } else {
                Some(Value::Array(out))
            }
        }
        other => handle_one(ctx, other, conn, arrived),
    }
}

/// Serialized size of a JSON value, without keeping the bytes.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Runs the calls of a batch in order while the responses so far hold at most
/// `--rpc-batch-response-max-size` bytes; once they hold more, every call left answers a limit
/// error without being run. As in geth, the response that crosses the limit is kept (its call has
/// run, and a client must learn, say, the hash of a transaction it sent).
fn handle_batch(
    ctx: &Arc<RpcContext>,
    items: Vec<Value>,
    conn: Option<&Arc<WsConnection>>,
    arrived: Instant,
) -> Vec<Value> {
    let max = ctx.config.max_batch_response_bytes;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut items = items.into_iter();
    for item in items.by_ref() {
        if let Some(response) = handle_one(ctx, item, conn, arrived) {
            bytes += json_len(&response);
            out.push(response);
        }
        if bytes > max {
            break;
        }
    }
    let refused = |id: Value| {
        error_response(
            id,
            RpcError::limit_exceeded(format!(
                "response too large: the responses of this batch passed {max} bytes \
                 (--rpc-batch-response-max-size), so this call was not run"
            )),
        )
    };
    // Calls without an id are notifications: neither run nor answered.
    out.extend(
        items
            .filter_map(|r| match r {
                Value::Object(o) => o.get("id").cloned(),
                _ => Some(Value::Null),
            })
            .map(refused),
    );
    out
}

/// How long a connection may take to send a request head, idle keep-alive time included: geth's
/// idle timeout (120 s), longer than the idle time of common clients' pools (reqwest: 90 s), so a
/// client does not send on a connection the server is closing.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Most bytes of an over-limit request body the server reads and throws away before it answers 413.
/// Answering without reading the body would close the connection under a client that is still
/// writing, and the client would see a connection reset instead of the JSON-RPC error; a body longer
/// than this still gets the answer, and then the connection is closed.
const DRAIN_LIMIT: u64 = 64 << 20;

/// The buffer first reserved for a body: what arrives beyond it grows the buffer as it arrives,
/// so a declared `Content-Length` (which may be a lie) never sizes an allocation.
const INITIAL_BODY_BUFFER: usize = 16 * 1024;

/// Reads a request body of at most `limit` bytes; `None` when it is longer (declared in
/// `Content-Length` or sent chunked), after draining up to [`DRAIN_LIMIT`] bytes of it. The buffer
/// grows with the bytes received, never from the declared length.
async fn read_body<S, B>(limit: u64, declared: Option<u64>, body: S) -> Result<Option<Bytes>, warp::Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures_util::StreamExt;
    futures_util::pin_mut!(body);
    let too_large = declared.is_some_and(|n| n > limit);
    let mut buf = Vec::with_capacity(if too_large {
        0
    } else {
        declared.unwrap_or(0).min(INITIAL_BODY_BUFFER as u64) as usize
    });
    let mut seen: u64 = 0;
    while let Some(chunk) = body.next().await {
        let Ok(mut chunk) = chunk else {
            return Err(warp::reject::reject());
        };
        seen += chunk.remaining() as u64;
        if too_large || seen > limit {
            if seen > DRAIN_LIMIT {
                break;
            }
            chunk.advance(chunk.remaining());
            buf = Vec::new();
            continue;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok((!too_large && seen <= limit).then(|| Bytes::from(buf)))
}

async fn handle_http<S, B>(
    ctx: Arc<RpcContext>,
    content_type: Option<String>,
    declared: Option<u64>,
    body: S,
) -> Result<warp::reply::Response, warp::Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    if let Err(e) = access::check_content_type(content_type.as_deref()) {
        // Drained, so that the client reads the answer rather than a reset connection.
        read_body(0, declared, body).await?;
        return Err(warp::reject::custom(e));
    }
    let limit = ctx.config.max_body_bytes;
    let Some(body) = read_body(limit, declared, body).await? else {
        return Err(warp::reject::custom(BodyTooLarge { limit }));
    };
    let response = tokio::task::spawn_blocking(move || handle_body(&ctx, &body, None))
        .await
        .unwrap_or_else(|e| Some(error_response(Value::Null, RpcError::internal(e))));
    Ok(match response {
        Some(v) => warp::reply::with_status(warp::reply::json(&v), StatusCode::OK).into_response_boxed(),
        None => warp::reply::with_status(warp::reply(), StatusCode::OK).into_response_boxed(),
    })
}

trait IntoBoxed {
    fn into_response_boxed(self) -> warp::reply::Response;
}

impl<T: warp::Reply> IntoBoxed for T {
    fn into_response_boxed(self) -> warp::reply::Response {
        self.into_response()
    }
}

/// A request body over `--rpc-max-body`.
#[derive(Debug)]
struct BodyTooLarge {
    limit: u64,
}

impl warp::reject::Reject for BodyTooLarge {}

async fn recover(err: warp::Rejection) -> Result<warp::reply::Response, std::convert::Infallible> {
    let (status, e) = if let Some(denied) = err.find::<AccessError>() {
        tracing::debug!(error = %denied, "refused a request");
        let status = match denied {
            AccessError::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AccessError::Host(_) | AccessError::Origin(_) => StatusCode::FORBIDDEN,
        };
        (status, RpcError::invalid_request(denied.to_string()))
    } else if let Some(BodyTooLarge { limit }) = err.find::<BodyTooLarge>() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            RpcError::limit_exceeded(format!(
                "request body too large: the server reads at most {limit} bytes (--rpc-max-body)"
            )),
        )
    } else if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            RpcError::limit_exceeded("request body is over the size limit (--rpc-max-body)"),
        )
    } else if err.find::<warp::reject::LengthRequired>().is_some() {
        (StatusCode::LENGTH_REQUIRED, RpcError::invalid_request("a Content-Length header is required"))
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            RpcError::invalid_request("use POST for JSON-RPC or a WebSocket upgrade"),
        )
    } else if err.is_not_found() {
        (StatusCode::NOT_FOUND, RpcError::invalid_request("not found: JSON-RPC is served at /"))
    } else {
        (StatusCode::BAD_REQUEST, RpcError::invalid_request(format!("bad request: {err:?}")))
    };
    Ok(warp::reply::with_status(warp::reply::json(&error_response(Value::Null, e)), status)
        .into_response_boxed())
}

/// Checks `Host` and `Origin` against the policy ([`access::AccessPolicy::check`]); extracts the
/// origin to echo in CORS headers.
fn guard(
    policy: access::AccessPolicy,
) -> impl Filter<Extract = (Option<String>,), Error = warp::Rejection> + Clone {
    let policy = Arc::new(policy);
    warp::host::optional().and(warp::header::optional::<String>("origin")).and_then(
        move |host: Option<warp::host::Authority>, origin: Option<String>| {
            let checked = policy.check(host.as_ref(), origin.as_deref()).map_err(warp::reject::custom);
            async move { checked }
        },
    )
}

fn boxed<R: warp::Reply>(r: R) -> warp::reply::Response {
    r.into_response()
}

/// Binds `addr` and serves JSON-RPC until `shutdown` resolves, and the dApp too unless
/// `--ui-port` moved it or `--no-ui` turned it off (`RpcConfig::ui`). Returns the bound address.
pub async fn serve(
    ctx: Arc<RpcContext>,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let with_ui = ctx.config.ui == ui::UiMode::SamePort;
    serve_with_ui(ctx, addr, with_ui, shutdown).await
}

/// [`serve`] with the dApp's GET routes on (`with_ui`) or off.
pub async fn serve_with_ui(
    ctx: Arc<RpcContext>,
    addr: SocketAddr,
    with_ui: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let with_ctx = {
        let ctx = ctx.clone();
        warp::any().map(move || ctx.clone())
    };
    let ws = warp::path::end().and(warp::ws()).and(with_ctx.clone()).map(
        |ws: warp::ws::Ws, ctx: Arc<RpcContext>| {
            ws.max_message_size(ctx.config.max_body_bytes as usize)
                .on_upgrade(move |socket| super::pubsub::serve_connection(ctx, socket))
        },
    );
    let http = warp::path::end()
        .and(warp::post())
        .and(with_ctx)
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(handle_http);
    let preflight = warp::path::end().and(warp::options()).map(access::preflight);
    let page = warp::any()
        .and_then(move || async move {
            if with_ui {
                Ok::<(), warp::Rejection>(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(ui::routes(ctx.clone()));
    let app = ws.or(http).or(preflight).or(page).recover(recover).map(boxed);
    let routes = guard(ctx.config.access.clone()).and(app).map(access::with_cors).recover(recover);
    let cap = ConnectionCap::new(ctx.config.max_connections);
    let handle = tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let io = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((io, _)) => {
                        // Small request/response exchanges: without TCP_NODELAY a response
                        // written in two segments waits for the client's delayed ACK (about 4 ms
                        // per call on a kept-alive connection, measured by p2pe-lookupbench).
                        let _ = io.set_nodelay(true);
                        io
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as hyper's server does.
                        tracing::debug!(error = %e, "accepting a JSON-RPC connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Some(io) = cap.admit(io) else { continue };
            let service = hyper_util::service::TowerToHyperService::new(warp::service(routes.clone()));
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                // An idle or slow client must send a request head within this time, or its
                // connection (and its place under the cap) is let go.
                builder
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT);
                let conn = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), service);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(error = %e, "JSON-RPC connection ended with an error");
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
    });
    Ok((local, handle))
}
