//! What the values mean: required keys, ranges, files that must exist, addresses, URLs, and the
//! rules between keys. Every error names the dotted key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use alloy_primitives::Address;

use super::raw::{RawBroker, RawChain, RawConfig, RawLimits, RawMeter};
use super::*;

/// Reads the values of one table, naming keys under its dotted path.
struct At<'a> {
    path: &'a str,
    base: &'a Path,
}

impl At<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.path)
    }

    fn text(&self, k: &str, v: Option<String>) -> Result<Option<String>, ConfigError> {
        match v {
            Some(s) if s.trim().is_empty() => Err(err(self.key(k), "must not be empty")),
            v => Ok(v),
        }
    }

    fn req_text(&self, k: &str, v: Option<String>) -> Result<String, ConfigError> {
        self.text(k, v)?.ok_or_else(|| err(self.key(k), "missing (required)"))
    }

    fn opt_num(&self, k: &str, v: Option<i64>) -> Result<Option<u64>, ConfigError> {
        match v {
            Some(i) if i < 0 => Err(err(self.key(k), format!("must not be negative, found {i}"))),
            v => Ok(v.map(|i| i as u64)),
        }
    }

    fn num(&self, k: &str, v: Option<i64>, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        let v = self.opt_num(k, v)?.unwrap_or(default);
        if v < min || v > max {
            return Err(err(self.key(k), format!("must be between {min} and {max}, found {v}")));
        }
        Ok(v)
    }

    fn path(&self, k: &str, v: Option<String>) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self.text(k, v)?.map(|s| self.base.join(s)))
    }

    fn file(&self, k: &str, v: Option<String>) -> Result<Option<PathBuf>, ConfigError> {
        match self.path(k, v)? {
            Some(p) if !p.is_file() => Err(err(self.key(k), format!("file {} does not exist", p.display()))),
            p => Ok(p),
        }
    }

    fn list(&self, k: &str, v: Option<Vec<String>>) -> Result<Option<Vec<String>>, ConfigError> {
        if let Some(items) = &v {
            if let Some(i) = items.iter().position(|s| s.trim().is_empty()) {
                return Err(err(format!("{}[{i}]", self.key(k)), "must not be empty"));
            }
        }
        Ok(v)
    }
}

/// The whole configuration from the file's shape.
pub(super) fn config(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let default_password_file = match raw.keys {
        Some(k) => At { path: "keys", base }.file("password_file", k.password_file)?,
        None => None,
    };
    let meters =
        meters(raw.meters.ok_or_else(|| err("meters", "missing table"))?, base, &default_password_file)?;
    let broker = broker(raw.broker.ok_or_else(|| err("broker", "missing table"))?, base, &meters)?;
    let chain = chain(raw.chain.ok_or_else(|| err("chain", "missing table"))?, base, &default_password_file)?;
    let outbox = raw.outbox.ok_or_else(|| err("outbox", "missing table"))?;
    let at = At { path: "outbox", base };
    let outbox_path =
        at.path("path", outbox.path)?.ok_or_else(|| err(at.key("path"), "missing (required)"))?;
    let at = At { path: "http", base };
    let http_listen: SocketAddr = match at.text("listen", raw.http.and_then(|h| h.listen))? {
        Some(s) => {
            s.parse().map_err(|e| err(at.key("listen"), format!("not a socket address `{s}`: {e}")))?
        }
        None => "127.0.0.1:9600".parse().expect("static"),
    };
    let limits = match raw.limits {
        Some(l) => limits(l, base)?,
        None => Limits::default(),
    };
    Ok(Config { broker, chain, outbox_path, http_listen, limits, meters })
}

fn meters(
    raw: BTreeMap<String, RawMeter>,
    base: &Path,
    default_password_file: &Option<PathBuf>,
) -> Result<BTreeMap<String, MeterConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(err("meters", "at least one meter is required"));
    }
    let mut meters = BTreeMap::new();
    let mut topics: BTreeMap<String, String> = BTreeMap::new();
    let mut addresses: BTreeMap<Address, String> = BTreeMap::new();
    for (id, m) in raw {
        let path = format!("meters.{id}");
        let meter = meter(&At { path: &path, base }, &id, m, default_password_file)?;
        if let Some(other) = topics.insert(meter.topic.clone(), id.clone()) {
            return Err(err(
                format!("{path}.topic"),
                format!("topic `{}` is already used by meter `{other}`", meter.topic),
            ));
        }
        if let Some(other) = addresses.insert(meter.address, id.clone()) {
            return Err(err(
                format!("{path}.address"),
                format!("address {} is already used by meter `{other}`", meter.address),
            ));
        }
        meters.insert(id, meter);
    }
    Ok(meters)
}

fn meter(
    at: &At<'_>,
    id: &str,
    m: RawMeter,
    default_password_file: &Option<PathBuf>,
) -> Result<MeterConfig, ConfigError> {
    let address = parse_address(&at.key("address"), &at.req_text("address", m.address)?)?;
    let keystore =
        at.file("keystore", m.keystore)?.ok_or_else(|| err(at.key("keystore"), "missing (required)"))?;
    let password_file = match at.file("password_file", m.password_file)? {
        Some(p) => p,
        None => default_password_file
            .clone()
            .ok_or_else(|| err(at.key("password_file"), "missing, and no default in [keys] password_file"))?,
    };
    let format = at.req_text("format", m.format)?;
    if !crate::decode::FORMATS.contains(&format.as_str()) {
        let known = crate::decode::FORMATS.join(", ");
        return Err(err(at.key("format"), format!("unknown format `{format}` (known: {known})")));
    }
    let topic = at.req_text("topic", m.topic)?;
    if topic.contains('+') || topic.contains('#') {
        return Err(err(at.key("topic"), "must be an exact topic, without wildcards"));
    }
    let utc_offset_secs = match at.text("utc_offset", m.utc_offset)? {
        Some(s) => parse_utc_offset(&at.key("utc_offset"), &s)?,
        None => 0,
    };
    let on_counter_decrease = match at.text("on_counter_decrease", m.on_counter_decrease)?.as_deref() {
        None | Some("reject") => DecreasePolicy::Reject,
        Some("rebase") => DecreasePolicy::Rebase,
        Some(other) => {
            let msg = format!("expected \"reject\" or \"rebase\", found `{other}`");
            return Err(err(at.key("on_counter_decrease"), msg));
        }
    };
    let device_id = at.text("device_id", m.device_id)?;
    if device_id.is_some() && format != "shelly" {
        return Err(err(at.key("device_id"), "only valid for format \"shelly\" (checked against `src`)"));
    }
    let phases = at.num("phases", m.phases, DEFAULT_PHASES, 1, 3)?;
    if phases == 2 {
        return Err(err(at.key("phases"), "must be 1 or 3, found 2"));
    }
    Ok(MeterConfig {
        id: id.to_string(),
        address,
        key: KeyConfig { keystore, password_file },
        format,
        topic,
        channel: at.num("channel", m.channel, 0, 0, 255)? as u32,
        utc_offset_secs,
        on_counter_decrease,
        device_id,
        rated_current_a: at.num(
            "rated_current_a",
            m.rated_current_a,
            DEFAULT_RATED_CURRENT_A,
            1,
            1_000_000,
        )?,
        phases,
        voltage_v: at.num("voltage_v", m.voltage_v, DEFAULT_VOLTAGE_V, 100, 1_000)?,
    })
}

fn broker(
    b: RawBroker,
    base: &Path,
    meters: &BTreeMap<String, MeterConfig>,
) -> Result<BrokerConfig, ConfigError> {
    let at = At { path: "broker", base };
    let url = at.req_text("url", b.url)?;
    let (transport, host, port) = parse_broker_url(&at.key("url"), &url)?;
    let client_id = at.req_text("client_id", b.client_id)?;
    if client_id.len() > 128 {
        return Err(err(at.key("client_id"), "longer than 128 bytes"));
    }
    let username = at.text("username", b.username)?;
    let password = match (at.text("password", b.password)?, at.file("password_file", b.password_file)?) {
        (Some(_), Some(_)) => {
            return Err(err(at.key("password"), "give either password or password_file, not both"))
        }
        (Some(p), None) => Some(p),
        (None, Some(f)) => Some(read_password_file(&at.key("password_file"), &f)?),
        (None, None) => None,
    };
    if password.is_some() && username.is_none() {
        return Err(err(at.key("username"), "missing: a password needs a user name"));
    }
    let ca_file = at.file("ca_file", b.ca_file)?;
    let client_cert_file = at.file("client_cert_file", b.client_cert_file)?;
    let client_key_file = at.file("client_key_file", b.client_key_file)?;
    if transport == Transport::Tcp {
        let tls_files = [
            ("ca_file", &ca_file),
            ("client_cert_file", &client_cert_file),
            ("client_key_file", &client_key_file),
        ];
        if let Some((k, _)) = tls_files.iter().find(|(_, v)| v.is_some()) {
            return Err(err(at.key(k), "only valid with an mqtts:// url"));
        }
    } else if ca_file.is_none() {
        return Err(err(at.key("ca_file"), "missing: an mqtts:// url needs the CA certificate (PEM)"));
    }
    if client_cert_file.is_some() != client_key_file.is_some() {
        let k = if client_cert_file.is_none() { "client_cert_file" } else { "client_key_file" };
        return Err(err(at.key(k), "missing: client_cert_file and client_key_file go together"));
    }
    let topics = match at.list("topics", b.topics)? {
        Some(t) if t.is_empty() => return Err(err(at.key("topics"), "must not be empty")),
        Some(t) => t,
        None => meters.values().map(|m| m.topic.clone()).collect(),
    };
    let reconnect_initial_ms = at.num("reconnect_initial_ms", b.reconnect_initial_ms, 200, 10, 60_000)?;
    let meter_sessions = b.meter_sessions.unwrap_or(false);
    if meter_sessions {
        // The meter's session is `client_id.meter-id`; brokers such as rumqttd refuse these in client ids.
        if let Some(id) = meters.keys().find(|id| id.chars().any(|c| "/+#$".contains(c) || c.is_whitespace()))
        {
            return Err(err(
                format!("meters.{id}"),
                "a meter id with `/`, `+`, `#`, `$` or spaces cannot name its MQTT session \
                 (`client_id.meter-id`): rename the meter, or set broker.meter_sessions = false",
            ));
        }
    }
    Ok(BrokerConfig {
        url,
        transport,
        host,
        port,
        client_id,
        username,
        password,
        ca_file,
        client_cert_file,
        client_key_file,
        topics,
        meter_sessions,
        keep_alive_secs: at.num("keep_alive_secs", b.keep_alive_secs, 30, 5, 3600)?,
        reconnect_initial_ms,
        reconnect_max_ms: at.num(
            "reconnect_max_ms",
            b.reconnect_max_ms,
            30_000,
            reconnect_initial_ms,
            3_600_000,
        )?,
    })
}

fn chain(
    c: RawChain,
    base: &Path,
    default_password_file: &Option<PathBuf>,
) -> Result<ChainConfig, ConfigError> {
    let at = At { path: "chain", base };
    let rpc_urls =
        at.list("rpc_urls", c.rpc_urls)?.ok_or_else(|| err(at.key("rpc_urls"), "missing (required)"))?;
    if rpc_urls.is_empty() {
        return Err(err(at.key("rpc_urls"), "at least one URL is required"));
    }
    if let Some((i, u)) =
        rpc_urls.iter().enumerate().find(|(_, u)| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(err(
            format!("chain.rpc_urls[{i}]"),
            format!("must be an http:// or https:// URL, found `{u}`"),
        ));
    }
    let rpc_ca_file = at.file("rpc_ca_file", c.rpc_ca_file)?;
    if rpc_ca_file.is_some() && !rpc_urls.iter().any(|u| u.starts_with("https://")) {
        return Err(err(at.key("rpc_ca_file"), "set, but no https:// URL in rpc_urls uses it"));
    }
    let readings =
        readings(&at, at.text("readings", c.readings)?, at.path("contracts_file", c.contracts_file)?)?;
    let relayer = match (
        at.file("relayer_keystore", c.relayer_keystore)?,
        at.file("relayer_password_file", c.relayer_password_file)?,
    ) {
        (Some(keystore), Some(password_file)) => Some(KeyConfig { keystore, password_file }),
        (Some(keystore), None) => {
            let password_file = default_password_file.clone().ok_or_else(|| {
                err(at.key("relayer_password_file"), "missing, and no default in [keys] password_file")
            })?;
            Some(KeyConfig { keystore, password_file })
        }
        (None, Some(_)) => {
            return Err(err(at.key("relayer_keystore"), "missing: relayer_password_file needs it"))
        }
        (None, None) => None,
    };
    Ok(ChainConfig {
        rpc_urls,
        rpc_ca_file,
        readings,
        chain_id: at.opt_num("chain_id", c.chain_id)?,
        relayer,
        max_batch: at.num("max_batch", c.max_batch, 200, 1, 200)? as usize,
        max_txs_per_round: at.num("max_txs_per_round", c.max_txs_per_round, 32, 1, 1000)? as usize,
        poll_interval_ms: at.num("poll_interval_ms", c.poll_interval_ms, 200, 10, 60_000)?,
        resend_interval_ms: at.num("resend_interval_ms", c.resend_interval_ms, 5_000, 100, 3_600_000)?,
        request_timeout_ms: at.num("request_timeout_ms", c.request_timeout_ms, 10_000, 100, 600_000)?,
        confirmations: at.num("confirmations", c.confirmations, 2, 0, 1_000)?,
    })
}

/// `readings`, or the `readings` address of the market deployment in `contracts_file`.
fn readings(at: &At<'_>, address: Option<String>, file: Option<PathBuf>) -> Result<Address, ConfigError> {
    match (address, file) {
        (Some(_), Some(_)) => {
            Err(err(at.key("readings"), "give either readings or contracts_file, not both"))
        }
        (Some(a), None) => parse_address(&at.key("readings"), &a),
        (None, Some(f)) => {
            let deployment = p2pe_bindings::MarketDeployment::load(&f)
                .map_err(|e| err(at.key("contracts_file"), e.to_string()))?;
            Ok(deployment.readings)
        }
        (None, None) => {
            Err(err(at.key("readings"), "missing: give the MeterReadings address or contracts_file"))
        }
    }
}

fn limits(l: RawLimits, base: &Path) -> Result<Limits, ConfigError> {
    let at = At { path: "limits", base };
    let d = Limits::default();
    const YEARS_10: u64 = 10 * 365 * 86_400;
    Ok(Limits {
        max_payload_bytes: at.num(
            "max_payload_bytes",
            l.max_payload_bytes,
            d.max_payload_bytes as u64,
            64,
            1 << 20,
        )? as usize,
        max_future_secs: at.num("max_future_secs", l.max_future_secs, d.max_future_secs, 0, 60)?,
        max_past_secs: at.num("max_past_secs", l.max_past_secs, d.max_past_secs, 60, YEARS_10)?,
        max_counter_resets: at.num(
            "max_counter_resets",
            l.max_counter_resets,
            d.max_counter_resets,
            0,
            1_000,
        )?,
        counter_reset_window_secs: at.num(
            "counter_reset_window_secs",
            l.counter_reset_window_secs,
            d.counter_reset_window_secs,
            60,
            365 * 86_400,
        )?,
        dead_letters_per_minute: at.num(
            "dead_letters_per_minute",
            l.dead_letters_per_minute,
            d.dead_letters_per_minute,
            1,
            1_000_000,
        )?,
        dead_letter_retention_secs: at.num(
            "dead_letter_retention_secs",
            l.dead_letter_retention_secs,
            d.dead_letter_retention_secs,
            60,
            YEARS_10,
        )?,
        max_dead_letters: at.num(
            "max_dead_letters",
            l.max_dead_letters,
            d.max_dead_letters,
            100,
            100_000_000,
        )?,
        max_inflight_bytes: at.num(
            "max_inflight_bytes",
            l.max_inflight_bytes,
            d.max_inflight_bytes as u64,
            1 << 20,
            1 << 31,
        )? as usize,
    })
}
