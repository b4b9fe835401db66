//! The MQTT side: connection with a persistent session and our own exponential backoff, and the
//! ingest loop that commits messages to the outbox **before** acknowledging them.
//!
//! - QoS 1 subscriptions, MQTT 3.1.1 `clean_session = false` with a fixed client id, so the broker keeps
//!   our subscriptions and queues messages while we are away; we resubscribe after every CONNACK anyway.
//! - Manual acks: a PUBACK goes out only after the message's outcome (reading, duplicate or dead letter)
//!   is committed, in receive order, from a task of its own ([`run_acker`]) so that the ingest loop
//!   never waits on rumqttc's request channel. A crash before the commit means no PUBACK, so the
//!   broker redelivers.
//! - rumqttc reconnects immediately and forever on `poll()`; instead, after any connection error the
//!   client and event loop are dropped and rebuilt after a delay that doubles up to
//!   `reconnect_max_ms` (with jitter). Rebuilding also clears rumqttc's in-memory state, which has left
//!   clients stuck after a broker restart that lost the session. Acks of messages received on an
//!   earlier connection are not sent (the broker redelivers those messages; they come back as duplicates).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode, TlsConfiguration, Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::{BrokerConfig, Limits, Transport as ConfigTransport};
use crate::decode::{Decoded, Decoder, MeterContext, Reason, Rejection};
use crate::ingest::MeterRules;
use crate::metrics::Metrics;
use crate::outbox::{Incoming, Outbox, Outcome};
use crate::submit::now_ms;

/// Largest MQTT packet rumqttc accepts. Larger than any payload limit, so that an oversize payload is
/// dead-lettered by the bridge instead of breaking the connection (which would redeliver it forever).
pub const MAX_PACKET: usize = 16 << 20;

/// A received publish and the connection it came on.
#[derive(Debug)]
pub struct Inbound {
    /// Connection generation (incremented at each rebuild).
    pub generation: u64,
    /// The message.
    pub publish: Publish,
    /// Its share of `limits.max_inflight_bytes`, given back when the message is acked (dropped).
    pub budget: Option<OwnedSemaphorePermit>,
}

/// The byte budget of messages received but not yet acked (`limits.max_inflight_bytes`).
#[derive(Clone)]
pub struct InflightBudget {
    sem: Arc<Semaphore>,
    max: usize,
}

impl InflightBudget {
    /// A budget of `max` bytes (at most `u32::MAX`).
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, u32::MAX as usize);
        Self { sem: Arc::new(Semaphore::new(max)), max }
    }

    /// Waits until `bytes` (at least 1, at most the whole budget) are free and takes them.
    pub async fn take(&self, bytes: usize) -> OwnedSemaphorePermit {
        let n = bytes.clamp(1, self.max) as u32;
        self.sem.clone().acquire_many_owned(n).await.expect("budget semaphore is never closed")
    }

    /// Bytes currently free.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }
}

/// The current client (for acks) and its generation.
pub type ClientSlot = Option<(u64, AsyncClient)>;

/// Error building the TLS configuration.
#[derive(Debug, thiserror::Error)]
#[error("broker TLS: {0}")]
pub struct TlsError(String);

/// Builds the rustls client configuration (ring provider) from the broker's CA, client certificate and key.
pub fn tls_config(cfg: &BrokerConfig) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    if cfg.transport != ConfigTransport::Tls {
        return Ok(None);
    }
    let ca = cfg.ca_file.as_ref().ok_or_else(|| TlsError("broker.ca_file is required for mqtts".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError(format!("broker.ca_file {}: {e}", ca.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("broker.ca_file {}: no certificate in it", ca.display())));
    }
    for c in certs {
        roots.add(c).map_err(|e| TlsError(format!("broker.ca_file {}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| TlsError(format!("broker.client_cert_file {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| TlsError(format!("broker.client_key_file {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError(format!("client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

fn options(cfg: &BrokerConfig, tls: &Option<Arc<rustls::ClientConfig>>) -> MqttOptions {
    let mut o = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    o.set_clean_session(false);
    o.set_manual_acks(true);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs));
    o.set_max_packet_size(MAX_PACKET, 64 * 1024);
    o.set_request_channel_capacity(65_536);
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        o.set_credentials(u.clone(), p.clone());
    } else if let Some(u) = &cfg.username {
        o.set_credentials(u.clone(), String::new());
    }
    if let Some(t) = tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(t.clone())));
    }
    o
}

/// Cheap jitter in [0.8, 1.2) without a random-number dependency.
fn jitter(ms: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    ms * (800 + u64::from(nanos % 400)) / 1000
}

/// Runs the broker connection forever, forwarding publishes to `out`.
pub async fn run_connection(
    cfg: BrokerConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    out: mpsc::Sender<Inbound>,
    slot: watch::Sender<ClientSlot>,
    metrics: Arc<Metrics>,
    budget: InflightBudget,
) {
    let mut generation = 0u64;
    let mut delay = cfg.reconnect_initial_ms;
    loop {
        generation += 1;
        let (client, mut eventloop) = AsyncClient::new(options(&cfg, &tls), 65_536);
        let _ = slot.send(Some((generation, client.clone())));
        let reason = loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    tracing::info!(broker = %cfg.url, session_present = ack.session_present, "connected to the broker");
                    metrics.mqtt_connected.store(true, Ordering::Relaxed);
                    delay = cfg.reconnect_initial_ms;
                    let filters: Vec<rumqttc::SubscribeFilter> = cfg
                        .topics
                        .iter()
                        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
                        .collect();
                    if let Err(e) = client.subscribe_many(filters).await {
                        break format!("subscribe request failed: {e}");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(s))) => {
                    for (topic, code) in cfg.topics.iter().zip(&s.return_codes) {
                        if matches!(code, SubscribeReasonCode::Failure) {
                            tracing::error!(topic = %topic, "the broker refused the subscription (check its ACL)");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    // Stop reading from the broker while unacked messages use up the byte budget.
                    let permit = budget.take(p.payload.len() + p.topic.len()).await;
                    if out.send(Inbound { generation, publish: p, budget: Some(permit) }).await.is_err() {
                        return; // ingest stopped: shutting down
                    }
                }
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
        metrics.mqtt_connected.store(false, Ordering::Relaxed);
        metrics.mqtt_reconnects.fetch_add(1, Ordering::Relaxed);
        let _ = slot.send(None);
        let wait = jitter(delay);
        tracing::warn!(broker = %cfg.url, error = %reason, retry_in_ms = wait, "broker connection lost");
        drop(eventloop);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        delay = (delay * 2).min(cfg.reconnect_max_ms);
    }
}

/// A configured meter as the ingest loop needs it.
pub struct TopicMeter {
    /// Meter id.
    pub id: String,
    /// Its decoder.
    pub decoder: Box<dyn Decoder>,
    /// Component index.
    pub channel: u32,
    /// Device clock offset.
    pub utc_offset_secs: i64,
    /// Counter-decrease policy and rated power.
    pub rules: MeterRules,
    /// Expected Shelly `src`.
    pub device_id: Option<String>,
}

/// Turns a publish into an [`Incoming`] (decode or refuse), updating monitoring metrics.
pub fn classify(
    p: &Publish,
    meters: &HashMap<String, TopicMeter>,
    limits: &Limits,
    metrics: &Metrics,
) -> Incoming {
    let topic = p.topic.clone();
    let Some(m) = meters.get(&p.topic) else {
        return Incoming::Refused {
            topic: topic.clone(),
            meter: None,
            rejection: Rejection::new(
                Reason::UnknownMeter,
                format!("no meter is configured for topic `{topic}`"),
            ),
            payload: p.payload.iter().take(limits.max_payload_bytes).copied().collect(),
        };
    };
    if p.payload.len() > limits.max_payload_bytes {
        return Incoming::Refused {
            topic,
            meter: Some(m.id.clone()),
            rejection: Rejection::new(
                Reason::Oversize,
                format!(
                    "payload of {} bytes exceeds limits.max_payload_bytes = {}",
                    p.payload.len(),
                    limits.max_payload_bytes
                ),
            ),
            payload: p.payload.iter().take(1024).copied().collect(),
        };
    }
    let ctx = MeterContext {
        meter_id: &m.id,
        channel: m.channel,
        utc_offset_secs: m.utc_offset_secs,
        device_id: m.device_id.as_deref(),
    };
    match m.decoder.decode(&p.payload, &ctx) {
        Ok(Decoded::Reading(sample)) => {
            if let Some(w) = sample.power_w {
                metrics.set_power(&m.id, w);
            }
            Incoming::Sample {
                topic,
                meter: m.id.clone(),
                sample,
                rules: m.rules,
                payload: p.payload.to_vec(),
            }
        }
        Ok(Decoded::Monitoring { power_w }) => {
            if let Some(w) = power_w {
                metrics.set_power(&m.id, w);
            }
            Incoming::Monitoring
        }
        Err(rejection) => {
            Incoming::Refused { topic, meter: Some(m.id.clone()), rejection, payload: p.payload.to_vec() }
        }
    }
}

/// Sends the PUBACKs of committed messages, in order, on the connection they came from (messages of
/// an earlier connection are not acked: the broker redelivers them and they come back as duplicates).
pub async fn run_acker(mut rx: mpsc::UnboundedReceiver<Vec<Inbound>>, slot: watch::Receiver<ClientSlot>) {
    while let Some(batch) = rx.recv().await {
        let current = slot.borrow().clone();
        let Some((generation, client)) = current else { continue };
        for m in &batch {
            if m.generation == generation {
                if let Err(e) = client.ack(&m.publish).await {
                    tracing::debug!(error = %e, "ack not sent (connection closing); the broker will redeliver");
                    break;
                }
            }
        }
    }
}

/// Most messages committed in one SQLite transaction.
pub const MAX_GROUP: usize = 2_000;

/// Runs the ingest loop: group-commit received messages, then ack them in order.
pub async fn run_ingest(
    mut rx: mpsc::Receiver<Inbound>,
    acks: mpsc::UnboundedSender<Vec<Inbound>>,
    meters: Arc<HashMap<String, TopicMeter>>,
    limits: Limits,
    outbox: Arc<Mutex<Outbox>>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        metrics.received.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let items: Arc<Vec<Incoming>> =
            Arc::new(batch.iter().map(|m| classify(&m.publish, &meters, &limits, &metrics)).collect());
        let outcomes = loop {
            let (o, it, l) = (outbox.clone(), items.clone(), limits.clone());
            let res =
                tokio::task::spawn_blocking(move || o.lock().expect("outbox lock").ingest(&it, now_ms(), &l))
                    .await
                    .expect("ingest task panicked");
            match res {
                Ok(out) => break out,
                Err(e) => {
                    // Nothing is acked, so nothing is lost; retry the same group.
                    tracing::error!(error = %e, "cannot commit to the outbox; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut committed = 0u64;
        for (item, outcome) in items.iter().zip(&outcomes) {
            let (topic, meter) = match item {
                Incoming::Sample { topic, meter, .. } => (topic.as_str(), Some(meter.as_str())),
                Incoming::Refused { topic, meter, .. } => (topic.as_str(), meter.as_deref()),
                Incoming::Monitoring => ("", None),
            };
            match outcome {
                Outcome::Committed { reset, seq_gap, .. } => {
                    committed += 1;
                    if let Some(r) = reset {
                        metrics.counter_resets.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(meter = meter.unwrap_or(""), kind = r.kind, detail = %r.detail,
                            "counter reset detected; counters re-based so no negative energy is submitted");
                    }
                    if *seq_gap {
                        metrics.sequence_gaps.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            meter = meter.unwrap_or(""),
                            "sequence number gap: messages were lost before the broker"
                        );
                    }
                }
                Outcome::Duplicate => {
                    metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::DeadLettered(rej) => {
                    metrics.reject(rej.reason);
                    tracing::warn!(topic, meter = meter.unwrap_or("?"), reason = rej.reason.as_str(), detail = %rej.detail,
                        "input refused; dead-lettered");
                }
                Outcome::Quarantined(rej) => {
                    metrics.reject(rej.reason);
                    metrics.quarantined.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(topic, meter = meter.unwrap_or("?"), reason = rej.reason.as_str(), detail = %rej.detail,
                        "reading quarantined (not signed); the meter's next readings are judged against its last accepted one");
                }
                Outcome::Suppressed(rej) => {
                    metrics.reject(rej.reason);
                    if metrics.dead_letters_suppressed.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                        tracing::warn!(topic, meter = meter.unwrap_or("?"), reason = rej.reason.as_str(),
                            "refused input over limits.dead_letters_per_minute: counted and acked, not stored (logged every 1000th)");
                    }
                }
                Outcome::Ignored => {
                    metrics.monitoring.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        metrics.committed.fetch_add(committed, Ordering::Relaxed);
        if committed > 0 {
            wake.notify_one();
        }
        // Ack after the commit, in receive order. The acks go through a separate task, so that this
        // loop (and so the connection task feeding it) never waits on rumqttc's request channel, which
        // only the connection task drains: waiting here could deadlock both.
        if acks.send(batch).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inflight_budget_blocks_when_used_up_and_frees_on_ack() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let b = InflightBudget::new(1000);
            let under = b.take(999).await;
            assert_eq!(b.available(), 1);
            let at = b.take(1).await;
            assert_eq!(b.available(), 0, "exactly used up");
            // Over the budget: waits until a message is acked (its permit dropped).
            let waiting = tokio::time::timeout(Duration::from_millis(100), b.take(1)).await;
            assert!(waiting.is_err(), "no byte left: the connection stops reading");
            drop(under);
            let next = tokio::time::timeout(Duration::from_millis(100), b.take(500)).await;
            assert!(next.is_ok(), "an ack frees the budget");
            drop((at, next));
            // A message larger than the whole budget takes all of it rather than waiting forever.
            let big = tokio::time::timeout(Duration::from_millis(100), b.take(5000)).await.unwrap();
            assert_eq!(b.available(), 0);
            drop(big);
            assert_eq!(b.available(), 1000);
        });
    }
}
