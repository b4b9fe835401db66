//! `p2pe-mqtt-bridge`: smart-meter readings from an MQTT broker become on-chain meter readings signed by
//! each meter's own key, with none lost and none submitted twice.
//!
//! The road of a reading:
//! 1. [`mqtt`]: a QoS 1 publish arrives on a persistent session (manual acks).
//! 2. [`decode`]: the meter's format decoder turns the payload into a cumulative [`decode::Sample`], or a
//!    [`decode::Rejection`].
//! 3. [`ingest`] + [`outbox`]: the sample is judged against the meter's last reading (dedup by meter,
//!    counters and timestamp; resets re-based; bad input dead-lettered) and committed to the SQLite
//!    outbox (WAL, `synchronous=FULL`), a group of messages per fsync. Only then is the message acked.
//! 4. [`submit`]: pending readings become `submitReading` (meter key) or `submitReadings` (EIP-712 signed
//!    batch, relayed) transactions, signed once, stored raw with their nonce and resent verbatim until a
//!    receipt arrives.
//! 5. [`http`]: `/metrics` and `/health`.

#![warn(missing_docs)]

pub mod config;
pub mod decode;
pub mod http;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod mqtt;
pub mod outbox;
pub mod rpc;
pub mod submit;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch, Notify};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::mqtt::TopicMeter;
use crate::outbox::Outbox;
use crate::submit::Submitter;

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration or keystore problem.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// TLS material problem.
    #[error(transparent)]
    Tls(#[from] mqtt::TlsError),
    /// The outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    /// The HTTP listener could not be bound.
    #[error("http.listen: {0}")]
    Http(std::io::Error),
    /// The node client could not be built from `chain.rpc_urls` and `chain.rpc_ca_file`.
    #[error("node client: {0}")]
    Rpc(#[from] rpc::RpcError),
}

/// Starts every task of the bridge and runs until the process is stopped.
pub async fn run(cfg: Config) -> Result<(), StartError> {
    let keys = {
        let c = cfg.clone();
        tokio::task::spawn_blocking(move || keys::load_all(&c)).await.expect("keystore task")?
    };
    tracing::info!(meters = keys.meters.len(), relayer = %keys.relayer.address(), "keystores decrypted");
    let tls = mqtt::tls_config(&cfg.broker)?;
    let outbox = Outbox::open(&cfg.outbox_path)?;
    let depth = outbox.depth()?;
    tracing::info!(path = %cfg.outbox_path.display(), pending = depth.pending, in_flight = depth.in_flight,
        txs_in_flight = depth.txs_in_flight, "outbox open");
    let outbox = Arc::new(Mutex::new(outbox));
    let metrics = Arc::new(Metrics::default());
    metrics.set_depth(depth);
    let bound = http::serve(cfg.http_listen, metrics.clone()).await.map_err(StartError::Http)?;
    tracing::info!(addr = %bound, "serving /metrics and /health");
    println!("metrics: http://{bound}/metrics");

    let wake = Arc::new(Notify::new());
    let submitter = Submitter::new(
        cfg.chain.clone(),
        outbox.clone(),
        keys.meters,
        keys.relayer,
        metrics.clone(),
        wake.clone(),
    )?;
    let sub = tokio::spawn(submitter.run());

    let mut by_topic = HashMap::new();
    for m in cfg.meters.values() {
        by_topic.insert(
            m.topic.clone(),
            TopicMeter {
                id: m.id.clone(),
                decoder: decode::decoder(&m.format).expect("format checked by config"),
                channel: m.channel,
                utc_offset_secs: m.utc_offset_secs,
                rules: ingest::MeterRules { policy: m.on_counter_decrease, max_power_w: m.max_power_w() },
                device_id: m.device_id.clone(),
            },
        );
    }
    let purger = tokio::spawn(purge_expired(outbox.clone(), cfg.limits.clone()));
    let specs = mqtt::sessions(&cfg.broker, cfg.meters.values().map(|m| (m.id.as_str(), m.topic.as_str())));
    metrics.mqtt_sessions.store(specs.len() as u64, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        sessions = specs.len(),
        "MQTT sessions: the shared one, and one per meter with broker.meter_sessions"
    );
    let (tx, rx) = mpsc::channel(mqtt::MAX_GROUP * 2);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let shared = mqtt::ConnectionShared {
        cfg: cfg.broker.clone(),
        tls,
        out: tx,
        metrics: metrics.clone(),
        budget: mqtt::InflightBudget::new(cfg.limits.max_inflight_bytes),
    };
    let mut conns = tokio::task::JoinSet::new();
    let mut slots = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let (slot_tx, slot_rx) = watch::channel(None);
        slots.push(slot_rx);
        conns.spawn(mqtt::run_connection(i, spec, shared.clone(), slot_tx));
    }
    drop(shared);
    let acker = tokio::spawn(mqtt::run_acker(ack_rx, slots, metrics.clone()));
    let ingest = tokio::spawn(mqtt::run_ingest(
        rx,
        ack_tx,
        Arc::new(by_topic),
        cfg.limits.clone(),
        outbox,
        metrics.clone(),
        wake,
    ));
    tokio::select! {
        r = sub => tracing::error!(?r, "submitter stopped"),
        r = ingest => tracing::error!(?r, "ingest stopped"),
        r = conns.join_next() => tracing::error!(?r, "a broker connection stopped"),
        r = acker => tracing::error!(?r, "acker stopped"),
        r = purger => tracing::error!(?r, "dead-letter purge stopped"),
    }
    Ok(())
}

/// Once a minute, deletes dead letters and quarantined readings past their retention.
async fn purge_expired(outbox: Arc<Mutex<Outbox>>, limits: config::Limits) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        let (o, l) = (outbox.clone(), limits.clone());
        let res = tokio::task::spawn_blocking(move || {
            o.lock().expect("outbox lock").purge_expired(submit::now_ms(), &l)
        })
        .await;
        if let Ok(Err(e)) = res {
            tracing::warn!(error = %e, "cannot purge expired dead letters; retrying in a minute");
        }
    }
}
