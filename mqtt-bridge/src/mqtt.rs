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
//! - One session per meter (`broker.meter_sessions`, opt-in): the broker keeps one queue per
//!   session, so a meter flooding the broker faster than the bridge takes messages in fills its own
//!   queue there (and Mosquitto drops past `max_queued_messages` from it alone), while every other
//!   meter's readings come through their own queues. The shared session (`client_id`, subscribed to
//!   `broker.topics`) stays: it carries unknown topics for the dead-letter table, and copies of meter
//!   messages, which are stored only if they arrive first (a meter session that does not exist yet,
//!   as after an upgrade, or is reconnecting) and otherwise dropped without a dead letter
//!   ([`crate::outbox::Outcome::Copy`]). Opt-in: a copy can overtake its meter session's messages
//!   and change how a refused reading is recorded (README).

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

/// One MQTT session of the bridge: a client id, its subscriptions, and whether it is the shared one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    /// The MQTT client id (the broker keys the persistent session by it).
    pub client_id: String,
    /// Topic filters, subscribed at QoS 1.
    pub filters: Vec<String>,
    /// The shared session while meters have sessions of their own: its messages on a meter's topic
    /// are copies.
    pub carries_copies: bool,
}

/// The sessions of a configuration: the shared one (`client_id`, `broker.topics`) first, then with
/// `broker.meter_sessions` one per meter (`client_id.meter-id`, the meter's topic), in meter-id order.
pub fn sessions<'a>(
    cfg: &BrokerConfig,
    meters: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<SessionSpec> {
    let mut out = vec![SessionSpec {
        client_id: cfg.client_id.clone(),
        filters: cfg.topics.clone(),
        carries_copies: cfg.meter_sessions,
    }];
    if cfg.meter_sessions {
        out.extend(meters.into_iter().map(|(id, topic)| SessionSpec {
            client_id: format!("{}.{id}", cfg.client_id),
            filters: vec![topic.to_string()],
            carries_copies: false,
        }));
    }
    out
}

/// A received publish and the connection it came on.
#[derive(Debug)]
pub struct Inbound {
    /// Index of its session in [`sessions`]' list (acks go back on that session).
    pub session: usize,
    /// Whether its session carries copies ([`SessionSpec::carries_copies`]).
    pub copies: bool,
    /// Connection generation of that session (incremented at each rebuild).
    pub generation: u64,
    /// The message.
    pub publish: Publish,
    /// Its share of `limits.max_inflight_bytes`, given back when its ack is queued (the message dropped).
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
    let roots =
        crate::tls::ca_roots(ca).map_err(|e| TlsError(format!("broker.ca_file {}: {e}", ca.display())))?;
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

fn options(cfg: &BrokerConfig, client_id: &str, tls: &Option<Arc<rustls::ClientConfig>>) -> MqttOptions {
    let mut o = MqttOptions::new(client_id.to_string(), cfg.host.clone(), cfg.port);
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

/// What a session's connection task needs besides its [`SessionSpec`].
#[derive(Clone)]
pub struct ConnectionShared {
    /// Broker address, credentials and reconnect delays.
    pub cfg: BrokerConfig,
    /// TLS client configuration, for mqtts.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Where received publishes go (the ingest loop).
    pub out: mpsc::Sender<Inbound>,
    /// Metrics (sessions connected, reconnects).
    pub metrics: Arc<Metrics>,
    /// Bytes received and not yet acked, shared by every session.
    pub budget: InflightBudget,
}

/// Runs one session's broker connection forever, forwarding publishes to `out`; `slot` holds its
/// current client for the acker.
pub async fn run_connection(
    index: usize,
    spec: SessionSpec,
    shared: ConnectionShared,
    slot: watch::Sender<ClientSlot>,
) {
    let ConnectionShared { cfg, tls, out, metrics, budget } = shared;
    let mut generation = 0u64;
    let mut delay = cfg.reconnect_initial_ms;
    loop {
        generation += 1;
        let (client, mut eventloop) = AsyncClient::new(options(&cfg, &spec.client_id, &tls), 65_536);
        let _ = slot.send(Some((generation, client.clone())));
        let mut connected = false;
        let reason = loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    tracing::info!(broker = %cfg.url, client_id = %spec.client_id,
                        session_present = ack.session_present, "connected to the broker");
                    if !connected {
                        connected = true;
                        metrics.mqtt_sessions_connected.fetch_add(1, Ordering::Relaxed);
                    }
                    delay = cfg.reconnect_initial_ms;
                    let filters: Vec<rumqttc::SubscribeFilter> = spec
                        .filters
                        .iter()
                        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
                        .collect();
                    if let Err(e) = client.subscribe_many(filters).await {
                        break format!("subscribe request failed: {e}");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(s))) => {
                    for (topic, code) in spec.filters.iter().zip(&s.return_codes) {
                        if matches!(code, SubscribeReasonCode::Failure) {
                            tracing::error!(topic = %topic, client_id = %spec.client_id,
                                "the broker refused the subscription (check its ACL)");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    // Stop reading from the broker while unacked messages use up the byte budget.
                    let permit = budget.take(p.payload.len() + p.topic.len()).await;
                    let m = Inbound {
                        session: index,
                        copies: spec.carries_copies,
                        generation,
                        publish: p,
                        budget: Some(permit),
                    };
                    if out.send(m).await.is_err() {
                        return; // ingest stopped: shutting down
                    }
                }
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
        if connected {
            metrics.mqtt_sessions_connected.fetch_sub(1, Ordering::Relaxed);
        }
        metrics.mqtt_reconnects.fetch_add(1, Ordering::Relaxed);
        let _ = slot.send(None);
        let wait = jitter(delay);
        tracing::warn!(broker = %cfg.url, client_id = %spec.client_id, error = %reason, retry_in_ms = wait,
            "broker connection lost");
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

/// Turns a publish into an [`Incoming`] (decode or refuse), updating monitoring metrics. `copies`:
/// it came on a session that carries copies ([`SessionSpec::carries_copies`]).
pub fn classify(
    p: &Publish,
    copies: bool,
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
    if copies && p.payload.len() > limits.max_payload_bytes {
        return Incoming::Copy;
    }
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
                copy: copies,
            }
        }
        Ok(_) | Err(_) if copies => Incoming::Copy,
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

/// An ack not yet handed to its session's client: the connection generation, the QoS and packet id.
type PendingAck = (u64, QoS, u16);

/// Most acks that wait per session (16 bytes each: 16 MiB). Past it the oldest are dropped: their
/// messages stay unacked at the broker, which redelivers them when the session reconnects, and the
/// outbox takes them as duplicates. Floods of 350,000-590,000 messages in 10 s left at most about
/// 90,000 waiting (sampled), behind a full client channel of 65,536.
pub const MAX_ACKS_WAITING: usize = 1 << 20;

/// Sends the PUBACKs of committed messages, in receive order per session, each on the session and
/// connection it came from (`slots[i]` is session `i`'s current client). Messages of an earlier
/// connection are not acked: the broker redelivers them and they come back as duplicates.
///
/// It never waits on a session: an ack goes to the session's client without blocking (`try_ack`)
/// or waits in that session's queue (a packet id, not the message), and the messages' byte budget is
/// given back as soon as their acks are queued. Waiting on a client's full request channel once
/// deadlocked the bridge under a flood: the connection task drains that channel only while it
/// polls the broker, and it had stopped polling to wait for budget the waiting acker held.
pub async fn run_acker(
    mut rx: mpsc::UnboundedReceiver<Vec<Inbound>>,
    slots: Vec<watch::Receiver<ClientSlot>>,
    metrics: Arc<Metrics>,
) {
    let mut pending: Vec<std::collections::VecDeque<PendingAck>> = vec![Default::default(); slots.len()];
    let mut dropped = 0u64;
    let mut retry = tokio::time::interval(Duration::from_millis(20));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let waiting = pending.iter().any(|q| !q.is_empty());
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else { return };
                for m in batch {
                    if m.publish.qos != QoS::AtMostOnce {
                        let ack = (m.generation, m.publish.qos, m.publish.pkid);
                        if queue_ack(&mut pending[m.session], ack) {
                            dropped += 1;
                            if dropped % 65_536 == 1 {
                                tracing::warn!(limit = MAX_ACKS_WAITING, dropped,
                                    "acks waiting for a session's client past the limit: the oldest dropped, \
                                     the broker redelivers them (logged every 65,536th)");
                            }
                        }
                    }
                } // the messages, and their budget, are dropped here
            }
            _ = retry.tick(), if waiting => {}
        }
        let left = flush_acks(&mut pending, &slots);
        metrics.mqtt_acks_waiting.store(left as u64, Ordering::Relaxed);
    }
}

/// Queues an ack, dropping the session's oldest past [`MAX_ACKS_WAITING`]; returns whether one was
/// dropped.
fn queue_ack(queue: &mut std::collections::VecDeque<PendingAck>, ack: PendingAck) -> bool {
    let over = queue.len() >= MAX_ACKS_WAITING;
    if over {
        queue.pop_front();
    }
    queue.push_back(ack);
    over
}

/// Hands each session's queued acks to its current client, in order, until its request channel is
/// full; drops acks of an earlier connection. Returns how many acks still wait.
fn flush_acks(
    pending: &mut [std::collections::VecDeque<PendingAck>],
    slots: &[watch::Receiver<ClientSlot>],
) -> usize {
    let mut left = 0;
    for (queue, slot) in pending.iter_mut().zip(slots) {
        if queue.is_empty() {
            continue;
        }
        let Some((generation, client)) = slot.borrow().clone() else {
            queue.clear(); // reconnecting: the broker redelivers what was not acked
            continue;
        };
        while let Some(&(g, qos, pkid)) = queue.front() {
            if g != generation {
                queue.pop_front();
                continue;
            }
            let mut ack = Publish::new("", qos, Vec::<u8>::new());
            ack.pkid = pkid;
            if client.try_ack(&ack).is_err() {
                break; // full (or closing: the next generation drops the rest)
            }
            queue.pop_front();
        }
        left += queue.len();
    }
    left
}

/// Most messages committed in one SQLite transaction.
pub const MAX_GROUP: usize = 2_000;

/// Commits `items` to the outbox in one transaction, retrying every second until it succeeds (nothing
/// is acked meanwhile, so nothing is lost).
async fn commit_group(
    outbox: &Arc<Mutex<Outbox>>,
    items: &Arc<Vec<Incoming>>,
    limits: &Limits,
) -> Vec<Outcome> {
    loop {
        let (o, it, l) = (outbox.clone(), items.clone(), limits.clone());
        let res =
            tokio::task::spawn_blocking(move || o.lock().expect("outbox lock").ingest(&it, now_ms(), &l))
                .await
                .expect("ingest task panicked");
        match res {
            Ok(out) => return out,
            Err(e) => {
                tracing::error!(error = %e, "cannot commit to the outbox; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Counts and logs what became of one message; `true` if it was committed as a new reading.
fn record(item: &Incoming, outcome: &Outcome, metrics: &Metrics) -> bool {
    let (topic, meter) = match item {
        Incoming::Sample { topic, meter, .. } => (topic.as_str(), Some(meter.as_str())),
        Incoming::Refused { topic, meter, .. } => (topic.as_str(), meter.as_deref()),
        Incoming::Monitoring | Incoming::Copy => ("", None),
    };
    match outcome {
        Outcome::Copy => return false,
        Outcome::Committed { reset, seq_gap, .. } => {
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
            return true;
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
    false
}

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
        let items: Arc<Vec<Incoming>> = Arc::new(
            batch.iter().map(|m| classify(&m.publish, m.copies, &meters, &limits, &metrics)).collect(),
        );
        let outcomes = commit_group(&outbox, &items, &limits).await;
        let copies =
            batch.iter().filter(|m| m.copies && meters.contains_key(&m.publish.topic)).count() as u64;
        let mut committed = 0u64;
        for (item, outcome) in items.iter().zip(&outcomes) {
            committed += u64::from(record(item, outcome, &metrics));
        }
        metrics.received.fetch_add(batch.len() as u64 - copies, Ordering::Relaxed);
        metrics.copies.fetch_add(copies, Ordering::Relaxed);
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
    fn sessions_are_the_shared_one_then_one_per_meter() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "x\n").unwrap();
        std::fs::write(dir.path().join("k.json"), "{}").unwrap();
        let text = "[broker]\nurl = \"mqtt://127.0.0.1:1883\"\nclient_id = \"b\"\ntopics = [\"meters/#\"]\nmeter_sessions = true\n\
            [chain]\nrpc_urls = [\"http://127.0.0.1:8545\"]\nreadings = \"0x00000000000000000000000000000000000000aa\"\n\
            [outbox]\npath = \"o.sqlite\"\n[keys]\npassword_file = \"pw\"\n";
        let cfg = crate::config::Config::parse(text_with_meters(text).as_str(), dir.path()).unwrap();
        let meters = cfg.meters.values().map(|m| (m.id.as_str(), m.topic.as_str()));
        let s = sessions(&cfg.broker, meters);
        let ids: Vec<_> =
            s.iter().map(|s| (s.client_id.as_str(), s.filters.clone(), s.carries_copies)).collect();
        assert_eq!(
            ids,
            vec![
                ("b", vec!["meters/#".to_string()], true),
                ("b.m1", vec!["meters/m1/r".to_string()], false),
                ("b.m2", vec!["meters/m2/r".to_string()], false),
            ]
        );
        let mut one = cfg.broker.clone();
        one.meter_sessions = false;
        let s = sessions(&one, cfg.meters.values().map(|m| (m.id.as_str(), m.topic.as_str())));
        assert_eq!(s.len(), 1, "only the shared session");
        assert!(!s[0].carries_copies, "whose messages are then the only ones");
    }

    #[test]
    fn queued_acks_go_out_in_order_without_waiting_and_only_on_their_connection() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            // A client whose request channel has room for 2 and nobody draining it.
            let (tx, requests) = flume::bounded(2);
            let client = AsyncClient::from_senders(tx);
            let taken = || -> Vec<u16> {
                requests
                    .try_iter()
                    .map(|r| match r {
                        rumqttc::Request::PubAck(a) => a.pkid,
                        other => panic!("not an ack: {other:?}"),
                    })
                    .collect()
            };
            let (slot_tx, slot_rx) = watch::channel(Some((7, client)));
            let slots = vec![slot_rx];
            let mut pending = vec![std::collections::VecDeque::from(vec![
                (6, QoS::AtLeastOnce, 1), // an earlier connection's: dropped
                (7, QoS::AtLeastOnce, 2),
                (7, QoS::AtLeastOnce, 3),
                (7, QoS::AtLeastOnce, 4),
            ])];
            assert_eq!(flush_acks(&mut pending, &slots), 1, "two fit, one waits: no blocking");
            assert_eq!(pending[0].front(), Some(&(7, QoS::AtLeastOnce, 4)));
            assert_eq!(taken(), vec![2, 3], "in receive order");
            assert_eq!(flush_acks(&mut pending, &slots), 0, "the channel drained: the rest goes");
            assert_eq!(taken(), vec![4]);
            // Reconnecting (no client): queued acks are dropped, the broker redelivers.
            pending[0].push_back((7, QoS::AtLeastOnce, 5));
            slot_tx.send(None).unwrap();
            assert_eq!(flush_acks(&mut pending, &slots), 0);
            assert!(pending[0].is_empty());
        });
    }

    #[test]
    fn acks_waiting_are_capped_oldest_first() {
        let mut q = std::collections::VecDeque::new();
        for i in 0..MAX_ACKS_WAITING - 1 {
            assert!(!queue_ack(&mut q, (1, QoS::AtLeastOnce, i as u16)));
        }
        assert_eq!(q.len(), MAX_ACKS_WAITING - 1, "just under: all kept");
        assert!(!queue_ack(&mut q, (1, QoS::AtLeastOnce, 7)));
        assert_eq!(q.len(), MAX_ACKS_WAITING, "at the limit: all kept");
        assert_eq!(q.front(), Some(&(1, QoS::AtLeastOnce, 0)));
        assert!(queue_ack(&mut q, (1, QoS::AtLeastOnce, 9)), "reports the drop");
        assert_eq!(q.len(), MAX_ACKS_WAITING, "over: the oldest goes");
        assert_eq!(q.front(), Some(&(1, QoS::AtLeastOnce, 1)));
        assert_eq!(q.back(), Some(&(1, QoS::AtLeastOnce, 9)));
    }

    fn text_with_meters(base: &str) -> String {
        let mut t = base.to_string();
        for (i, id) in ["m2", "m1"].iter().enumerate() {
            t.push_str(&format!(
                "[meters.{id}]\naddress = \"0x00000000000000000000000000000000000000b{i}\"\nkeystore = \"k.json\"\nformat = \"json\"\ntopic = \"meters/{id}/r\"\n"
            ));
        }
        t
    }

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
