//! The file's shape, as serde reads it: every table refuses unknown keys
//! (`deny_unknown_fields`), and `serde_path_to_error` names the dotted key of the first value of
//! the wrong type. What the values mean (ranges, files, addresses, required keys) is checked
//! afterwards, in [`super::validate`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{err, ConfigError};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub broker: Option<RawBroker>,
    pub chain: Option<RawChain>,
    pub outbox: Option<RawOutbox>,
    pub http: Option<RawHttp>,
    pub limits: Option<RawLimits>,
    pub keys: Option<RawKeys>,
    pub meters: Option<BTreeMap<String, RawMeter>>,
}

/// `[broker]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBroker {
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
    pub topics: Option<Vec<String>>,
    pub meter_sessions: Option<bool>,
    pub keep_alive_secs: Option<i64>,
    pub reconnect_initial_ms: Option<i64>,
    pub reconnect_max_ms: Option<i64>,
}

/// `[chain]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChain {
    pub rpc_urls: Option<Vec<String>>,
    pub rpc_ca_file: Option<String>,
    pub readings: Option<String>,
    pub contracts_file: Option<String>,
    pub chain_id: Option<i64>,
    pub relayer_keystore: Option<String>,
    pub relayer_password_file: Option<String>,
    pub max_batch: Option<i64>,
    pub max_txs_per_round: Option<i64>,
    pub poll_interval_ms: Option<i64>,
    pub resend_interval_ms: Option<i64>,
    pub request_timeout_ms: Option<i64>,
    pub confirmations: Option<i64>,
}

/// `[outbox]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutbox {
    pub path: Option<String>,
}

/// `[http]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub listen: Option<String>,
}

/// `[keys]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeys {
    pub password_file: Option<String>,
}

/// `[limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_payload_bytes: Option<i64>,
    pub max_future_secs: Option<i64>,
    pub max_past_secs: Option<i64>,
    pub max_counter_resets: Option<i64>,
    pub counter_reset_window_secs: Option<i64>,
    pub dead_letters_per_minute: Option<i64>,
    pub dead_letter_retention_secs: Option<i64>,
    pub max_dead_letters: Option<i64>,
    pub max_inflight_bytes: Option<i64>,
}

/// `[meters.<id>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeter {
    pub address: Option<String>,
    pub keystore: Option<String>,
    pub password_file: Option<String>,
    pub format: Option<String>,
    pub topic: Option<String>,
    pub channel: Option<i64>,
    pub utc_offset: Option<String>,
    pub on_counter_decrease: Option<String>,
    pub device_id: Option<String>,
    pub rated_current_a: Option<i64>,
    pub phases: Option<i64>,
    pub voltage_v: Option<i64>,
}

/// Reads the file's shape; errors name the dotted key (`chain.rpc_urls[1]`).
pub(super) fn read(text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| err("<file>", format!("not valid TOML: {}", e.to_string().replace('\n', " "))))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().message().to_string();
        keyed(if path == "." { String::new() } else { path }, &message)
    })
}

/// Turns serde's message at `path` into the bridge's wording: the key at fault, then what is
/// wrong with it.
fn keyed(path: String, message: &str) -> ConfigError {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // The path already ends with the unknown key.
        let expected = rest.split_once('`').map(|(_, e)| e).unwrap_or("");
        let expected = expected
            .trim_start_matches(", expected one of ")
            .trim_start_matches(", expected ")
            .replace('`', "");
        return err(path, format!("unknown key (expected one of: {expected})"));
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        // "invalid type: integer `5`, expected a string"
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "another type"));
        let found = found.split(" `").next().unwrap_or(found).split(" \"").next().unwrap_or(found);
        return err(path, format!("expected {}, found {found}", plain_type(expected)));
    }
    err(if path.is_empty() { "<file>".to_string() } else { path }, message.to_string())
}

/// serde's type names in the words of a TOML user.
fn plain_type(expected: &str) -> &str {
    match expected {
        "i64" | "u64" | "i32" | "u32" => "an integer",
        "a sequence" => "an array",
        "a map" => "a table",
        e if e.starts_with("struct ") => "a table",
        e => e,
    }
}
