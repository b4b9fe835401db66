//! The trading dApp: the page built from `web/` (committed under `web/dist/`, like the contract
//! artifacts, so `cargo build` needs no npm) embedded in the binary and served on GET, next to
//! JSON-RPC (POST /) and WebSocket (upgrade on /):
//!
//! - `GET /` (and `/index.html`), `GET /assets/app.js`, `GET /assets/app.css`: the page;
//! - `GET /contracts.json`: the chain's market deployment (addresses, schedule, chain id), the same
//!   JSON as `DATADIR/contracts.json`.
//!
//! Where the page is served is chosen on the command line (`--ui-port`, `--no-ui`) and travels in
//! the RPC configuration (`RpcConfig::ui`).

use std::sync::{Arc, OnceLock};

use alloy_primitives::keccak256;
use serde_json::Value;
use warp::http::{header, HeaderValue, StatusCode};
use warp::Filter;

use warp::Reply;

use crate::rpc::RpcContext;

/// One embedded file of `web/dist/`.
pub struct Asset {
    /// Path below `web/dist/`.
    pub path: &'static str,
    /// `Content-Type` header.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static [u8],
}

/// Every file of `web/dist/` (the Vite build keeps these names fixed; a test checks that the list
/// is complete and that the files match a fresh build).
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../../web/dist/index.html"),
    },
    Asset {
        path: "assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/dist/assets/app.js"),
    },
    Asset {
        path: "assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../web/dist/assets/app.css"),
    },
];

/// The page may load only its own script and style, and connect only to its own node.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'";

/// Where the dApp is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiMode {
    /// On the JSON-RPC port (the default).
    SamePort,
    /// On its own port (same host as JSON-RPC), which answers JSON-RPC too so that the page's origin
    /// is its RPC URL; the JSON-RPC port then serves no page.
    Port(u16),
    /// Not at all.
    Off,
}

/// The embedded file at a request path, if any.
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = path.trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

fn etag(a: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS.iter().map(|a| format!("\"{}\"", &keccak256(a.body).to_string()[2..18])).collect()
    });
    let i = ASSETS.iter().position(|x| std::ptr::eq(x, a)).expect("asset from ASSETS");
    &tags[i]
}

fn reply_asset(a: &'static Asset, if_none_match: Option<String>) -> warp::reply::Response {
    let tag = etag(a);
    let mut res = if if_none_match.as_deref() == Some(tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        a.body.into_response()
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    // Fixed file names: the browser must revalidate (cheap, with the ETag) to see a new build.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, HeaderValue::from_static(tag));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if a.path.ends_with(".html") {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    res
}

/// The chain's market deployment as served at `/contracts.json`, or `None` without a market.
pub fn contracts_json(ctx: &RpcContext) -> Option<Value> {
    let spec = ctx.chain.spec();
    let market = spec.p2pe.market.as_ref()?;
    let mut v = serde_json::to_value(market).ok()?;
    v["chainId"] = spec.chain_id.into();
    Some(v)
}

fn reply_contracts(ctx: &RpcContext) -> warp::reply::Response {
    let mut res = match contracts_json(ctx) {
        Some(v) => warp::reply::with_status(warp::reply::json(&v), StatusCode::OK).into_response(),
        None => warp::reply::with_status(
            warp::reply::json(&serde_json::json!({"error": "this chain has no market deployed at genesis"})),
            StatusCode::NOT_FOUND,
        )
        .into_response(),
    };
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// GET routes of the dApp: the embedded files and `/contracts.json`. Other paths are rejected as
/// not found.
pub fn routes(
    ctx: Arc<RpcContext>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let contracts = warp::path!("contracts.json")
        .and(warp::get().or(warp::head()).unify())
        .map(move || reply_contracts(&ctx));
    let files = warp::get()
        .or(warp::head())
        .unify()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(|path: warp::path::FullPath, inm: Option<String>| async move {
            match asset(path.as_str()) {
                Some(a) => Ok(reply_asset(a, inm)),
                None => Err(warp::reject::not_found()),
            }
        });
    contracts.or(files).unify()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn web() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
    }

    fn files_under(dir: &Path) -> BTreeSet<String> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
            for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
                let p = e.expect("dir entry").path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.insert(
                        p.strip_prefix(base).expect("below base").to_string_lossy().replace('\\', "/"),
                    );
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(dir, dir, &mut out);
        out
    }

    #[test]
    fn every_file_of_the_committed_dist_is_embedded() {
        let on_disk = files_under(&web().join("dist"));
        let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        assert_eq!(
            on_disk, embedded,
            "web/dist/ and the ASSETS list in node/src/rpc/ui.rs differ: keep the Vite file names fixed or update the list"
        );
        for a in ASSETS {
            let disk = std::fs::read(web().join("dist").join(a.path)).expect("dist file");
            assert!(disk == a.body, "{} embedded differs from web/dist (rebuild the node)", a.path);
        }
    }

    #[test]
    fn paths_map_to_files() {
        assert_eq!(asset("/").map(|a| a.path), Some("index.html"));
        assert_eq!(asset("/index.html").map(|a| a.path), Some("index.html"));
        assert_eq!(asset("/assets/app.js").map(|a| a.path), Some("assets/app.js"));
        assert!(asset("/assets/../index.html").is_none());
        assert!(asset("/nope").is_none());
        let html = std::str::from_utf8(asset("/").unwrap().body).unwrap();
        for a in ASSETS.iter().filter(|a| a.path != "index.html") {
            assert!(html.contains(&format!("/{}", a.path)), "index.html does not load /{}", a.path);
        }
    }

    /// Fails when the committed `web/dist/` differs from a fresh `npm run build` (the same idea as
    /// bindings/tests/artifacts_fresh.rs). `P2PE_CHECK_WEB=1` forces the check (and fails if npm
    /// packages are not installed in web/), `P2PE_CHECK_WEB=0` skips it; unset, it runs whenever
    /// `web/node_modules/.bin/vite` exists. Fix a failure with `cd web && npm run build` and commit
    /// `web/dist/`.
    #[test]
    fn committed_dist_matches_a_fresh_build() {
        let web = web();
        let vite = web.join("node_modules/.bin/vite");
        match std::env::var("P2PE_CHECK_WEB").unwrap_or_default().as_str() {
            "0" => {
                eprintln!("P2PE_CHECK_WEB=0: skipping the web/dist freshness check");
                return;
            }
            "1" => assert!(
                vite.exists(),
                "P2PE_CHECK_WEB=1 but {} is missing; run `npm ci` in web/",
                vite.display()
            ),
            _ if !vite.exists() => {
                eprintln!(
                    "SKIPPED web/dist freshness check: {} not found (run `npm ci` in web/, or set P2PE_CHECK_WEB=1)",
                    vite.display()
                );
                return;
            }
            _ => {}
        }
        // Removed when dropped, also when the assertions below fail (CI's disk is shared).
        let scratch = tempfile::Builder::new().prefix("p2pe-web-check-").tempdir().expect("temp dir");
        let out = scratch.path().to_path_buf();
        let status = Command::new("npm")
            .current_dir(&web)
            .args(["run", "--silent", "build", "--", "--logLevel", "warn", "--emptyOutDir", "--outDir"])
            .arg(&out)
            .status()
            .expect("running npm run build in web/");
        assert!(status.success(), "npm run build failed in web/");
        let fresh = files_under(&out);
        let committed = files_under(&web.join("dist"));
        let mut stale: Vec<String> = fresh.symmetric_difference(&committed).cloned().collect();
        for f in fresh.intersection(&committed) {
            if std::fs::read(out.join(f)).ok() != std::fs::read(web.join("dist").join(f)).ok() {
                stale.push(f.clone());
            }
        }
        assert!(
            stale.is_empty(),
            "web/dist/ is stale ({stale:?}): run `cd web && npm run build` and commit web/dist/"
        );
    }
}
