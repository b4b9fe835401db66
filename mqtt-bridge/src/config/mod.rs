//! The bridge's TOML configuration (`p2pe-mqtt-bridge --config bridge.toml`).
//!
//! Two steps, so that every error names the dotted key at fault (`broker.url`,
//! `meters.plug-07.address`, `chain.rpc_urls[1]`) and says what is wrong:
//! - [`raw`]: serde reads the file's shape; every table refuses unknown keys (a typo must not
//!   silently fall back to a default) and `serde_path_to_error` names the key of a value of the
//!   wrong type;
//! - [`validate`]: required keys, ranges, files, addresses, URLs and the rules between keys.
//!
//! Relative paths are resolved against the directory of the configuration file. See the README's
//! "MQTT bridge" section for an example.

mod raw;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use alloy_primitives::Address;

/// A configuration error: the dotted key at fault and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct ConfigError {
    /// Dotted path of the key (`broker.url`), or `<file>` for errors about the whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), message: message.into() }
}

/// Whether the broker connection is plain TCP or TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `mqtt://`
    Tcp,
    /// `mqtts://`
    Tls,
}

/// `[broker]`: how to reach the MQTT broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// The URL as written (`mqtt://host:port` or `mqtts://host:port`).
    pub url: String,
    /// TCP or TLS, from the URL scheme.
    pub transport: Transport,
    /// Host name or IP address from the URL.
    pub host: String,
    /// Port from the URL (default 1883 for mqtt, 8883 for mqtts).
    pub port: u16,
    /// MQTT client id; must be fixed and unique, because the persistent session is keyed by it.
    pub client_id: String,
    /// User name for the broker, if any.
    pub username: Option<String>,
    /// Password for the broker (from `password_file`, or `password`).
    pub password: Option<String>,
    /// CA certificate (PEM) that signed the broker's certificate (mqtts only).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub client_key_file: Option<PathBuf>,
    /// Topic filters the shared session (`client_id`) subscribes to at QoS 1 (default: every
    /// meter's topic).
    pub topics: Vec<String>,
    /// Also give each meter a session of its own (`client_id.meter-id`, its topic only), so that a
    /// meter flooding the broker fills only its own queue there (default false: opt-in, see README).
    pub meter_sessions: bool,
    /// MQTT keep-alive in seconds.
    pub keep_alive_secs: u64,
    /// First reconnect delay in milliseconds.
    pub reconnect_initial_ms: u64,
    /// Largest reconnect delay in milliseconds (the delay doubles up to this).
    pub reconnect_max_ms: u64,
}

/// `[chain]`: the node(s) and the contract.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// JSON-RPC URLs; the first that answers is used, the next ones on failure.
    pub rpc_urls: Vec<String>,
    /// CA certificate(s) (PEM) that https:// node URLs must chain to, instead of the system's roots (a
    /// lab node behind a TLS proxy with its own CA). Only with an https:// URL.
    pub rpc_ca_file: Option<PathBuf>,
    /// Address of the `MeterReadings` contract (`readings`, or `readings` from `contracts_file`).
    pub readings: Address,
    /// Expected chain id; when set, a node reporting another one is refused.
    pub chain_id: Option<u64>,
    /// Keystore of the account that relays batches (`submitReadings`); default: the first meter's key.
    pub relayer: Option<KeyConfig>,
    /// Most readings in one `submitReadings` transaction.
    pub max_batch: usize,
    /// Most new transactions built per round.
    pub max_txs_per_round: usize,
    /// How often (ms) receipts are polled and new transactions built.
    pub poll_interval_ms: u64,
    /// How long (ms) a transaction waits for a receipt before it is sent again, verbatim.
    pub resend_interval_ms: u64,
    /// Timeout of one JSON-RPC request in milliseconds.
    pub request_timeout_ms: u64,
    /// Blocks on top of a transaction's block before its readings count as confirmed (0: the
    /// receipt is enough). Until then the receipt is checked every round; a transaction that left
    /// the canonical chain (reorg) is sent again.
    pub confirmations: u64,
}

/// A keystore and where its password comes from.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// Web3 Secret Storage keystore file.
    pub keystore: PathBuf,
    /// File whose first line is the keystore password.
    pub password_file: PathBuf,
}

/// What a counter that goes down (without a reset marker) means for a meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecreasePolicy {
    /// The reading is refused (dead letter `counter_backwards`): a glitch must not double the counter.
    Reject,
    /// The meter is known to restart its counters (e.g. a plug after a power cut): treat it as a reset.
    Rebase,
}

/// `[meters.<id>]`: one meter.
#[derive(Debug, Clone)]
pub struct MeterConfig {
    /// The meter id (the table name).
    pub id: String,
    /// On-chain meter address (must be the keystore's address).
    pub address: Address,
    /// The meter's key.
    pub key: KeyConfig,
    /// Payload format name (see [`crate::decode::FORMATS`]).
    pub format: String,
    /// The exact topic the meter publishes on.
    pub topic: String,
    /// Component index for Shelly (`emdata:N`, `em1data:N`, `switch:N`).
    pub channel: u32,
    /// Offset of the device's local clock from UTC, in seconds (Tasmota `Time` has no zone).
    pub utc_offset_secs: i64,
    /// What a decreasing counter means.
    pub on_counter_decrease: DecreasePolicy,
    /// Expected Shelly `src` (device id); other values are dead-lettered (`device_mismatch`).
    pub device_id: Option<String>,
    /// Rated current of the meter (A, default 63; up to 1,000,000 for simulators that compress time).
    pub rated_current_a: u64,
    /// Number of phases (1 or 3, default 3).
    pub phases: u64,
    /// Nominal voltage per phase (V, default 230).
    pub voltage_v: u64,
}

impl MeterConfig {
    /// The most power the meter can physically carry: `phases × voltage_v × rated_current_a` watts
    /// (default 3 × 230 V × 63 A = 43,470 W, i.e. 12.075 Wh per second). A counter rising faster
    /// than this is quarantined (see [`crate::ingest`]).
    pub fn max_power_w(&self) -> u64 {
        self.phases * self.voltage_v * self.rated_current_a
    }
}

/// Default rated current (A) of a meter: a 63 A main fuse.
pub const DEFAULT_RATED_CURRENT_A: u64 = 63;
/// Default number of phases.
pub const DEFAULT_PHASES: u64 = 3;
/// Default nominal voltage (V).
pub const DEFAULT_VOLTAGE_V: u64 = 230;

/// `[limits]`: input validation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Payloads larger than this are dead-lettered unparsed.
    pub max_payload_bytes: usize,
    /// Readings more than this far ahead of the bridge's clock are refused.
    pub max_future_secs: u64,
    /// Readings older than this are refused.
    pub max_past_secs: u64,
    /// Most counter resets of one meter accepted within `counter_reset_window_secs` (device time);
    /// the next one is quarantined (`epoch_flapping`).
    pub max_counter_resets: u64,
    /// The window of `max_counter_resets`, in seconds.
    pub counter_reset_window_secs: u64,
    /// Refused messages stored per minute and source (a meter, or all unknown topics together);
    /// beyond it they are counted and acked but not stored.
    pub dead_letters_per_minute: u64,
    /// Dead letters and quarantined readings older than this are deleted.
    pub dead_letter_retention_secs: u64,
    /// Most rows kept in each of the dead-letter and quarantine tables (the oldest go first).
    pub max_dead_letters: u64,
    /// Byte budget of messages received but not yet committed and acked; the broker connection
    /// stops reading while it is used up.
    pub max_inflight_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 16 * 1024,
            max_future_secs: 30,
            max_past_secs: 7 * 86_400,
            max_counter_resets: 3,
            counter_reset_window_secs: 86_400,
            dead_letters_per_minute: 60,
            dead_letter_retention_secs: 30 * 86_400,
            max_dead_letters: 100_000,
            max_inflight_bytes: 64 << 20,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[broker]`
    pub broker: BrokerConfig,
    /// `[chain]`
    pub chain: ChainConfig,
    /// `[outbox] path`: the SQLite outbox.
    pub outbox_path: PathBuf,
    /// `[http] listen`: address of `/metrics` and `/health`.
    pub http_listen: SocketAddr,
    /// `[limits]`
    pub limits: Limits,
    /// `[meters.<id>]`, by id.
    pub meters: BTreeMap<String, MeterConfig>,
}

/// Parses an address written as 0x-prefixed hex.
fn parse_address(key: &str, s: &str) -> Result<Address, ConfigError> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
    match hex {
        Some(h) if h.len() == 40 => {
            s.parse::<Address>().map_err(|e| err(key, format!("not a valid address `{s}`: {e}")))
        }
        _ => Err(err(key, format!("expected a 0x-prefixed 20-byte hex address, found `{s}`"))),
    }
}

/// Reads the first line of a password file.
pub fn read_password_file(key: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(key, format!("cannot read password file {}: {e}", path.display())))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// Parses a `+HH:MM` / `-HH:MM` / `Z` offset into seconds.
fn parse_utc_offset(key: &str, s: &str) -> Result<i64, ConfigError> {
    if s == "Z" || s == "UTC" {
        return Ok(0);
    }
    let bad = || err(key, format!("expected an offset like \"+02:00\", \"-05:30\" or \"Z\", found `{s}`"));
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let h: i64 = h.parse().map_err(|_| bad())?;
    let m: i64 = m.parse().map_err(|_| bad())?;
    if h > 14 || m > 59 || rest.len() != 5 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// Splits `mqtt://host:port` / `mqtts://host:port`.
fn parse_broker_url(key: &str, url: &str) -> Result<(Transport, String, u16), ConfigError> {
    let (transport, rest, default_port) = if let Some(r) = url.strip_prefix("mqtts://") {
        (Transport::Tls, r, 8883)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (Transport::Tcp, r, 1883)
    } else {
        return Err(err(key, format!("must start with mqtt:// or mqtts://, found `{url}`")));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(err(key, format!("expected mqtt[s]://host[:port] without a path, found `{url}`")));
    }
    let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
        // [v6]:port
        let (h, p) = stripped.split_once(']').ok_or_else(|| err(key, "unterminated IPv6 address"))?;
        let port = match p.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| err(key, format!("bad port `{p}`")))?,
            None => default_port,
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| err(key, format!("bad port `{p}`")))?),
            None => (rest.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err(err(key, "missing host"));
    }
    Ok((transport, host, port))
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("<file>", format!("cannot read {}: {e}", path.display())))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &base)
    }

    /// Parses configuration text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        validate::config(raw::read(text)?, base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.json"), "{}").unwrap();
        std::fs::write(dir.path().join("pw"), "secret\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
        dir
    }

    const GOOD: &str = r#"
[broker]
url = "mqtts://127.0.0.1:8883"
client_id = "bridge-1"
username = "bridge"
password_file = "pw"
ca_file = "ca.pem"

[chain]
rpc_urls = ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]
readings = "0x00000000000000000000000000000000000000aa"

[outbox]
path = "outbox.sqlite"

[keys]
password_file = "pw"

[meters.plug-07]
address = "0x00000000000000000000000000000000000000bb"
keystore = "k.json"
format = "tasmota"
topic = "meters/plug-07/tele/SENSOR"
utc_offset = "+02:00"
"#;

    fn parse(text: &str, dir: &Path) -> Result<Config, ConfigError> {
        Config::parse(text, dir)
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let dir = setup();
        let c = parse(GOOD, dir.path()).unwrap();
        assert_eq!(c.broker.transport, Transport::Tls);
        assert_eq!(c.broker.port, 8883);
        assert_eq!(c.broker.password.as_deref(), Some("secret"));
        assert_eq!(c.broker.topics, vec!["meters/plug-07/tele/SENSOR".to_string()]);
        assert!(!c.broker.meter_sessions, "one shared session by default");
        let per_meter = parse(
            &GOOD.replace("ca_file = \"ca.pem\"\n", "ca_file = \"ca.pem\"\nmeter_sessions = true\n"),
            dir.path(),
        )
        .unwrap();
        assert!(per_meter.broker.meter_sessions);
        let bad = parse(
            &GOOD.replace("ca_file = \"ca.pem\"\n", "ca_file = \"ca.pem\"\nmeter_sessions = \"yes\"\n"),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("meter_sessions"), "{bad}");
        let slash = GOOD
            .replace("[meters.plug-07]", "[meters.\"lab/plug-07\"]")
            .replace("ca_file = \"ca.pem\"\n", "ca_file = \"ca.pem\"\nmeter_sessions = true\n");
        let e = parse(&slash, dir.path()).unwrap_err().to_string();
        assert!(e.contains("meters.lab/plug-07") && e.contains("meter_sessions = false"), "{e}");
        let ok = slash.replace("meter_sessions = true\n", "");
        assert!(parse(&ok, dir.path()).is_ok(), "without meter sessions the id names no session");
        assert_eq!(c.chain.rpc_urls.len(), 2);
        let m = &c.meters["plug-07"];
        assert_eq!(m.utc_offset_secs, 7200);
        assert_eq!(m.key.password_file, dir.path().join("pw"));
        assert_eq!(c.outbox_path, dir.path().join("outbox.sqlite"));
        assert_eq!(c.limits.max_future_secs, 30);
        assert_eq!(c.chain.confirmations, 2);
        assert_eq!((m.rated_current_a, m.phases, m.voltage_v, m.device_id.as_deref()), (63, 3, 230, None));
        assert_eq!(m.max_power_w(), 43_470, "3 x 230 V x 63 A");
        assert_eq!(c.limits.max_counter_resets, 3);
        assert_eq!(c.limits.dead_letters_per_minute, 60);
    }

    #[test]
    fn meter_rating_and_device_id() {
        let dir = setup();
        let text = GOOD
            .replace("format = \"tasmota\"", "format = \"shelly\"\ndevice_id = \"shellyplusplugs-80646fe1a0b2\"\nrated_current_a = 16\nphases = 1\nvoltage_v = 240")
            + "\n[limits]\nmax_counter_resets = 0\ncounter_reset_window_secs = 3600\ndead_letters_per_minute = 5\ndead_letter_retention_secs = 600\nmax_dead_letters = 1000\nmax_inflight_bytes = 2097152\n";
        let c = parse(&text, dir.path()).unwrap();
        let m = &c.meters["plug-07"];
        assert_eq!(m.device_id.as_deref(), Some("shellyplusplugs-80646fe1a0b2"));
        assert_eq!(m.max_power_w(), 3840);
        let l = &c.limits;
        assert_eq!(
            (l.max_counter_resets, l.counter_reset_window_secs, l.dead_letters_per_minute),
            (0, 3600, 5)
        );
        assert_eq!(
            (l.dead_letter_retention_secs, l.max_dead_letters, l.max_inflight_bytes),
            (600, 1000, 2 << 20)
        );
    }

    /// `chain.rpc_ca_file`: a file that exists, and only with an https:// URL to use it.
    #[test]
    fn rpc_ca_file_needs_a_file_and_an_https_url() {
        let dir = setup();
        let https = GOOD.replace("\"http://127.0.0.1:8546\"]", "\"https://node.lab:8545\"]");
        let with_ca = https.replace("[chain]\n", "[chain]\nrpc_ca_file = \"ca.pem\"\n");
        let c = parse(&with_ca, dir.path()).unwrap();
        assert_eq!(c.chain.rpc_ca_file, Some(dir.path().join("ca.pem")));
        assert_eq!(parse(&https, dir.path()).unwrap().chain.rpc_ca_file, None, "system roots by default");
        expect_err(
            &with_ca.replace("rpc_ca_file = \"ca.pem\"", "rpc_ca_file = \"no.pem\""),
            "chain.rpc_ca_file",
            "does not exist",
        );
        expect_err(
            &GOOD.replace("[chain]\n", "[chain]\nrpc_ca_file = \"ca.pem\"\n"),
            "chain.rpc_ca_file",
            "no https:// URL",
        );
    }

    fn expect_err(text: &str, key: &str, contains: &str) {
        let dir = setup();
        let e = parse(text, dir.path()).expect_err("must fail");
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.contains(contains), "{e}");
    }

    /// `contracts_file`: the node's `contracts.json` gives the `MeterReadings` address; a file
    /// that is not a market deployment is refused naming `chain.contracts_file` and its key.
    #[test]
    fn contracts_file_gives_the_readings_address() {
        let dir = setup();
        let deployment = serde_json::json!({
            "registry": "0x0000000000000000000000000000000000000001",
            "token": "0x0000000000000000000000000000000000000002",
            "readings": "0x00000000000000000000000000000000000000aa",
            "market": "0x0000000000000000000000000000000000000004",
            "grid": "0x0000000000000000000000000000000000000005",
            "admins": [],
            "startTime": 0, "slotLength": 900, "gateClosure": 60, "gracePeriod": 60,
            "mode": "payAsClear", "chainId": 1337
        });
        let with_file = GOOD.replace(
            "readings = \"0x00000000000000000000000000000000000000aa\"",
            "contracts_file = \"contracts.json\"",
        );
        std::fs::write(dir.path().join("contracts.json"), deployment.to_string()).unwrap();
        let c = parse(&with_file, dir.path()).unwrap();
        assert_eq!(c.chain.readings, Address::with_last_byte(0xaa));

        let mut bad = deployment.clone();
        bad.as_object_mut().unwrap().remove("readings");
        std::fs::write(dir.path().join("contracts.json"), bad.to_string()).unwrap();
        let e = parse(&with_file, dir.path()).unwrap_err();
        assert_eq!(e.key, "chain.contracts_file", "{e}");
        assert!(e.message.contains("missing field `readings`"), "{e}");
        bad = deployment;
        bad["readings"] = "0x12".into();
        std::fs::write(dir.path().join("contracts.json"), bad.to_string()).unwrap();
        let e = parse(&with_file, dir.path()).unwrap_err();
        assert!(e.message.contains("contracts.json: readings: "), "{e}");
        std::fs::remove_file(dir.path().join("contracts.json")).unwrap();
        let e = parse(&with_file, dir.path()).unwrap_err();
        assert!(e.message.starts_with("cannot read ") && e.message.contains("contracts.json"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        expect_err(&GOOD.replace("mqtts://127.0.0.1:8883", "tcp://x"), "broker.url", "mqtt://");
        expect_err(
            &GOOD.replace("\"0x00000000000000000000000000000000000000bb\"", "\"0x12\""),
            "meters.plug-07.address",
            "20-byte",
        );
        expect_err(
            &GOOD.replace("format = \"tasmota\"", "format = \"modbus\""),
            "meters.plug-07.format",
            "unknown format",
        );
        expect_err(
            &GOOD.replace("format = \"tasmota\"", "format = 5"),
            "meters.plug-07.format",
            "expected a string, found integer",
        );
        expect_err(&GOOD.replace("client_id = \"bridge-1\"\n", ""), "broker.client_id", "missing");
        expect_err(
            &GOOD.replace("ca_file = \"ca.pem\"", "ca_file = \"nope.pem\""),
            "broker.ca_file",
            "does not exist",
        );
        expect_err(&GOOD.replace("ca_file = \"ca.pem\"\n", ""), "broker.ca_file", "needs the CA");
        expect_err(
            &GOOD.replace("keystore = \"k.json\"", "keystore = \"k.json\"\nkeystor = 1"),
            "meters.plug-07.keystor",
            "unknown key",
        );
        expect_err(
            &GOOD.replace("utc_offset = \"+02:00\"", "utc_offset = \"2h\""),
            "meters.plug-07.utc_offset",
            "offset",
        );
        expect_err(
            &GOOD.replace("[\"http://127.0.0.1:8545\", \"http://127.0.0.1:8546\"]", "[\"http://a\", 7]"),
            "chain.rpc_urls[1]",
            "expected a string",
        );
        expect_err(&GOOD.replace("rpc_urls = ", "rpc_url = "), "chain.rpc_url", "unknown key");
        expect_err(
            &format!("{GOOD}\n[http]\nlisten = 5\n"),
            "http.listen",
            "expected a string, found integer",
        );
        expect_err(
            &format!("{GOOD}\n[limits]\nmax_past_secs = \"1d\"\n"),
            "limits.max_past_secs",
            "expected an integer, found string",
        );
        expect_err(
            &format!("outbox = 5\n{}", GOOD.replace("[outbox]\npath = \"outbox.sqlite\"\n", "")),
            "outbox",
            "expected a table, found integer",
        );
        expect_err(&GOOD.replace("[outbox]\npath = \"outbox.sqlite\"\n", ""), "outbox", "missing table");
        expect_err("[broker\nurl=1", "<file>", "not valid TOML");
        expect_err(
            &GOOD.replace("format = \"tasmota\"", "format = \"tasmota\"\ndevice_id = \"shellypro3em-1\""),
            "meters.plug-07.device_id",
            "only valid for format \"shelly\"",
        );
        expect_err(
            &GOOD.replace("format = \"tasmota\"", "format = \"tasmota\"\nphases = 2"),
            "meters.plug-07.phases",
            "1 or 3",
        );
        expect_err(
            &GOOD.replace("format = \"tasmota\"", "format = \"tasmota\"\nrated_current_a = 0"),
            "meters.plug-07.rated_current_a",
            "between 1 and 1000000",
        );
        expect_err(
            &GOOD.replace("format = \"tasmota\"", "format = \"tasmota\"\nrated_current_a = \"63A\""),
            "meters.plug-07.rated_current_a",
            "expected an integer",
        );
        expect_err(
            &GOOD.replace("readings = ", "confirmations = -1\nreadings = "),
            "chain.confirmations",
            "must not be negative",
        );
        expect_err(
            &format!("{GOOD}\n[limits]\ndead_letters_per_minute = 0\n"),
            "limits.dead_letters_per_minute",
            "between 1 and",
        );
        expect_err(
            &format!("{GOOD}\n[limits]\nmax_inflight_bytes = 1000\n"),
            "limits.max_inflight_bytes",
            "between 1048576 and",
        );
        expect_err(
            &format!("{GOOD}\n[limits]\nmax_dead_letter = 5\n"),
            "limits.max_dead_letter",
            "unknown key",
        );
        expect_err(
            &format!("{GOOD}\n[limits]\nmax_future_secs = 3600\n"),
            "limits.max_future_secs",
            "between 0 and 60",
        );
        expect_err(
            &format!("{GOOD}\n[meters.other]\naddress = \"0x00000000000000000000000000000000000000cc\"\nkeystore = \"k.json\"\nformat = \"json\"\ntopic = \"meters/plug-07/tele/SENSOR\"\n"),
            "meters.plug-07.topic",
            "already used by meter `other`",
        );
    }
}
