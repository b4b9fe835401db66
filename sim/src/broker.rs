//! The embedded MQTT broker (rumqttd), so that nothing needs installing. rumqttd 0.20 speaks MQTT
//! 3.1.1 (and 5) on the wire; the bridge and the simulated meters use rumqttc 0.25 over 3.1.1 with
//! QoS 1, persistent sessions and manual acks, which rumqttd supports.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::procs::free_port;

/// A running embedded broker (its threads live until the process exits).
pub struct EmbeddedBroker {
    /// Listening address.
    pub addr: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts rumqttd on a free loopback port for up to `max_connections` clients.
    pub fn start(max_connections: usize) -> anyhow::Result<Self> {
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let cfg = serde_json::json!({
            "id": 0,
            "router": {
                "max_connections": max_connections.max(16),
                "max_outgoing_packet_count": 1000,
                "max_segment_size": 104_857_600,
                "max_segment_count": 10,
            },
            "v4": {
                "1": {
                    "name": "v4-1",
                    "listen": addr.to_string(),
                    "next_connection_delay_ms": 1,
                    "connections": {
                        "connection_timeout_ms": 60_000,
                        "max_payload_size": 65_536,
                        "max_inflight_count": 1000,
                        "dynamic_filters": true,
                    },
                },
            },
        });
        let config: rumqttd::Config = serde_json::from_value(cfg).context("rumqttd configuration")?;
        let mut broker = rumqttd::Broker::new(config);
        std::thread::Builder::new().name("rumqttd".into()).spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })?;
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("the embedded MQTT broker did not start listening on {addr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { addr })
    }

    /// `mqtt://host:port`.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }
}

/// Host and port of a `mqtt://host[:port]` URL (TLS brokers are reached by the bridge only; the
/// simulated meters publish over plain MQTT).
pub fn parse_mqtt_url(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .with_context(|| format!("broker URL must start with mqtt://, found `{url}`"))?;
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Ok((
            h.trim_matches(|c| c == '[' || c == ']').to_string(),
            p.parse().with_context(|| format!("bad port in `{url}`"))?,
        )),
        _ if !rest.is_empty() => Ok((rest.to_string(), 1883)),
        _ => bail!("broker URL `{url}` has no host"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        assert_eq!(parse_mqtt_url("mqtt://127.0.0.1:1884").unwrap(), ("127.0.0.1".into(), 1884));
        assert_eq!(parse_mqtt_url("mqtt://broker.lab").unwrap(), ("broker.lab".into(), 1883));
        assert!(parse_mqtt_url("mqtts://x:8883").is_err());
        assert!(parse_mqtt_url("mqtt://").is_err());
    }
}
