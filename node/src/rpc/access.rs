//! Who may call the node over HTTP and WebSocket, checked on the server for every request before
//! anything else runs (geth's `--http.vhosts` / `--http.corsdomain`, enforced rather than left to
//! the browser):
//!
//! - **Host** (`--http-vhosts`, default `localhost`): a request whose `Host` names a host that is
//!   not listed is refused with 403. A `Host` that is an IP address is always accepted, as in geth.
//!   This defeats DNS rebinding, where a hostile name is made to resolve to 127.0.0.1.
//! - **Origin** (`--http-corsdomain`, default none): a request carrying an `Origin` that is not
//!   listed, not a browser extension's ([`EXTENSION_SCHEMES`], MetaMask), and not the node's own origin (`http(s)://` + the request's `Host`, where the
//!   node serves the dApp), is refused with 403, HTTP and WebSocket upgrade alike. CORS alone
//!   would not do: a "simple" POST (`text/plain`) and a WebSocket upgrade have no preflight, so
//!   the browser sends them whatever the answer's headers say. Requests without `Origin` (curl,
//!   cast, ethers or web3.py outside a browser) are not web pages and pass.
//! - **Content type**: a JSON-RPC POST must say `Content-Type: application/json` (parameters such
//!   as `; charset=utf-8` allowed); anything else gets 415 ([`check_content_type`]).
//!
//! The CORS answer headers echo only an origin that passed ([`with_cors`]). warp's own `cors()`
//! is not used because its origin list is fixed when the server starts, while the node's own
//! origin depends on the `Host` of each request.

use std::net::IpAddr;

use warp::host::Authority;
use warp::http::{header, HeaderValue, Uri};

/// The value that allows any host or any origin.
pub const ANY: &str = "*";

/// Origin schemes of browser extensions, such as MetaMask (`chrome-extension://<id>`). They are
/// allowed by default: a web page cannot send such an origin, MetaMask's requests carry it (so
/// refusing it would lock every MetaMask user out), and an extension installed in the operator's
/// browser already controls that browser. geth serves them for the same reason.
pub const EXTENSION_SCHEMES: [&str; 3] =
    ["chrome-extension://", "moz-extension://", "safari-web-extension://"];

/// Whether `origin` (lower case) is a browser extension's.
fn is_wallet_extension(origin: &str) -> bool {
    EXTENSION_SCHEMES
        .iter()
        .any(|s| origin.strip_prefix(s).is_some_and(|id| !id.is_empty() && !id.contains('/')))
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The `Host` header names a host outside `--http-vhosts`.
    #[error("host {0} is not allowed: this node answers only the host names given with --http-vhosts (default: localhost) and IP addresses")]
    Host(String),
    /// The `Origin` header names a web origin outside `--http-corsdomain`.
    #[error("origin {0} is not allowed: web pages of other origins may call this node only when it runs with --http-corsdomain {0}")]
    Origin(String),
    /// The body is not declared as JSON.
    #[error("content type {0:?} is not supported: JSON-RPC over HTTP needs Content-Type: application/json")]
    ContentType(String),
}

impl warp::reject::Reject for AccessError {}

/// A bad `--http-vhosts` or `--http-corsdomain` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessConfigError {
    /// Not `*` nor a host name.
    #[error(
        "{0:?} is not a host name (or *): give names like localhost or node.example, without port or scheme"
    )]
    Host(String),
    /// Not `*` nor `scheme://host[:port]`.
    #[error("{0:?} is not a web origin (or *): give scheme://host[:port], e.g. http://localhost:3000, without a path")]
    Origin(String),
}

/// Parses one `--http-vhosts` entry: `*` or a host name, lower-cased.
pub fn parse_vhost(s: &str) -> Result<String, AccessConfigError> {
    let s = s.trim();
    if s == ANY {
        return Ok(ANY.to_string());
    }
    let valid =
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if valid {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(AccessConfigError::Host(s.to_string()))
    }
}

/// Parses one `--http-corsdomain` entry: `*` or `scheme://host[:port]`, lower-cased, in the form
/// browsers send in `Origin`.
pub fn parse_origin(s: &str) -> Result<String, AccessConfigError> {
    let s = s.trim();
    if s == ANY {
        return Ok(ANY.to_string());
    }
    let bad = || AccessConfigError::Origin(s.to_string());
    let uri: Uri = s.parse().map_err(|_| bad())?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(bad());
    };
    let path_ok = uri.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/");
    if !path_ok || authority.as_str().contains('@') {
        return Err(bad());
    }
    Ok(format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// The hosts and origins the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// `--http-vhosts` entries ([`parse_vhost`]).
    pub vhosts: Vec<String>,
    /// `--http-corsdomain` entries ([`parse_origin`]).
    pub cors_domains: Vec<String>,
}

impl Default for AccessPolicy {
    /// geth's defaults: host `localhost` (and IP addresses), no other origin.
    fn default() -> Self {
        Self { vhosts: vec!["localhost".to_string()], cors_domains: Vec::new() }
    }
}

impl AccessPolicy {
    /// Whether a request to `host` (the host part of `Host`) is served.
    pub fn host_allowed(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok() || self.vhosts.iter().any(|v| v == ANY || v.eq_ignore_ascii_case(host))
    }

    /// Whether a request from a page of `origin` to a server reached as `host` is served:
    /// a listed origin, or the node's own (`http(s)://` + `Host`).
    pub fn origin_allowed(&self, origin: &str, host: Option<&Authority>) -> bool {
        let origin = origin.to_ascii_lowercase();
        if self.cors_domains.iter().any(|o| o == ANY || *o == origin) || is_wallet_extension(&origin) {
            return true;
        }
        let Some(host) = host else { return false };
        let host = host.as_str().to_ascii_lowercase();
        origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host.as_str())
    }

    /// Checks a request's `Host` and `Origin`; returns the origin to echo in CORS headers.
    pub fn check(
        &self,
        host: Option<&Authority>,
        origin: Option<&str>,
    ) -> Result<Option<String>, AccessError> {
        if let Some(h) = host {
            if !self.host_allowed(h.host()) {
                return Err(AccessError::Host(h.host().to_string()));
            }
        }
        match origin {
            None => Ok(None),
            Some(o) if self.origin_allowed(o, host) => Ok(Some(o.to_string())),
            Some(o) => Err(AccessError::Origin(o.to_string())),
        }
    }
}

/// Refuses a POST body not declared as `application/json` (with or without parameters).
pub fn check_content_type(content_type: Option<&str>) -> Result<(), AccessError> {
    let declared = content_type.unwrap_or("");
    match declared.parse::<mime::Mime>() {
        Ok(m) if m.essence_str() == "application/json" => Ok(()),
        _ => Err(AccessError::ContentType(if declared.is_empty() { "none".into() } else { declared.into() })),
    }
}

/// Methods a page of an allowed origin may use (CORS preflight answer).
pub const CORS_METHODS: &str = "POST, GET, OPTIONS";
/// Request headers a page of an allowed origin may send (CORS preflight answer).
pub const CORS_HEADERS: &str = "content-type, authorization, accept, origin, x-requested-with";

/// Adds the CORS headers for an allowed `origin` (echoed, never `*`) to a response.
pub fn with_cors(origin: Option<String>, mut res: warp::reply::Response) -> warp::reply::Response {
    let h = res.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(v) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    res
}

/// The answer to a CORS preflight (`OPTIONS`) of an origin that passed [`AccessPolicy::check`].
pub fn preflight() -> warp::reply::Response {
    use warp::Reply;
    let mut res = warp::http::StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(CORS_METHODS));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(CORS_HEADERS));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(s: &str) -> Authority {
        s.parse().unwrap()
    }

    #[test]
    fn entries_are_parsed_and_bad_ones_named() {
        assert_eq!(parse_origin("http://OK.example/").unwrap(), "http://ok.example");
        assert_eq!(parse_origin("http://localhost:3000").unwrap(), "http://localhost:3000");
        assert_eq!(parse_origin("*").unwrap(), "*");
        for bad in ["ok.example", "http://ok.example/path", "http://u@ok.example", ""] {
            assert!(parse_origin(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(parse_vhost("Node.Example").unwrap(), "node.example");
        assert!(parse_vhost("node.example:8545").is_err());
        assert!(parse_vhost("http://x").is_err());
    }

    #[test]
    fn hosts_ips_and_own_origin() {
        let p = AccessPolicy::default();
        assert!(p.check(Some(&auth("localhost:8545")), None).is_ok());
        assert!(p.check(Some(&auth("127.0.0.1:8545")), None).is_ok());
        assert!(p.check(Some(&auth("[::1]:8545")), None).is_ok());
        assert_eq!(
            p.check(Some(&auth("evil.example:8545")), None),
            Err(AccessError::Host("evil.example".into()))
        );
        // The page the node serves calls its own origin.
        let own = p.check(Some(&auth("127.0.0.1:8545")), Some("http://127.0.0.1:8545"));
        assert_eq!(own, Ok(Some("http://127.0.0.1:8545".into())));
        // Another port on the same machine is another origin.
        assert!(p.check(Some(&auth("127.0.0.1:8545")), Some("http://127.0.0.1:8546")).is_err());
        assert!(p.check(Some(&auth("127.0.0.1:8545")), Some("null")).is_err());
        assert!(p.check(None, Some("http://127.0.0.1:8545")).is_err());
    }

    #[test]
    fn wallet_extensions_pass_and_look_alikes_do_not() {
        let p = AccessPolicy::default();
        let host = auth("127.0.0.1:8545");
        assert!(p.check(Some(&host), Some("chrome-extension://nkbihfbeogaeaoehlefnkodbefgpgknn")).is_ok());
        assert!(p.check(Some(&host), Some("moz-extension://0f9b-4c1e")).is_ok());
        for bad in [
            "chrome-extension://",
            "http://chrome-extension.evil",
            "chrome-extension://a/b",
            "https://evil.example",
        ] {
            assert!(p.check(Some(&host), Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn listed_and_any_origins() {
        let p = AccessPolicy { vhosts: vec![ANY.into()], cors_domains: vec!["http://ok.example".into()] };
        assert!(p.check(Some(&auth("evil.example")), None).is_ok());
        assert!(p.check(Some(&auth("127.0.0.1:1")), Some("http://ok.example")).is_ok());
        assert!(p.check(Some(&auth("127.0.0.1:1")), Some("http://ok.example:81")).is_err());
        let any = AccessPolicy { cors_domains: vec![ANY.into()], ..Default::default() };
        assert!(any.check(Some(&auth("127.0.0.1:1")), Some("http://evil.example")).is_ok());
    }

    #[test]
    fn only_json_bodies() {
        assert!(check_content_type(Some("application/json")).is_ok());
        assert!(check_content_type(Some("Application/JSON; charset=utf-8")).is_ok());
        for bad in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("json")] {
            assert!(check_content_type(bad).is_err(), "{bad:?} accepted");
        }
    }
}
