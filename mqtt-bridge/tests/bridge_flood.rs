//! One flooding publisher does not stop other meters: through a real Mosquitto, one client floods
//! garbage on its own (configured) meter topic and on unknown topics under the subscription, at
//! [`FLOOD_RATE`] messages of 2 KiB a second, while a genuine meter publishes readings. The genuine readings are committed
//! and reach the chain in bounded time, every flood message is handled (acked), and the dead-letter
//! table never grows over `limits.max_dead_letters`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pe_mqtt_bridge::outbox::Outbox;
use p2pe_tests::bridge::*;

const FLOOD_SECS: u64 = 8;
/// Flood messages a second. Unpaced, the flooder reached 55,000–86,000 a second on loopback, faster
/// than the bridge (a debug build) takes them in; the bridge's queue at the broker then passes
/// Mosquitto's `max_queued_messages` and the broker drops messages, the genuine meter's included
/// (SECURITY.md, "flooding MQTT publisher": a flood faster than the bridge is not defended). At
/// this rate, twice the 100,000 messages in 8 s this test was written with, the bridge keeps up.
const FLOOD_RATE: u64 = 25_000;

/// Floods QoS 1 garbage as `user` until `stop`; returns the number of messages the broker acked.
fn flood(port: u16, user: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let user = user.to_string();
    std::thread::spawn(move || {
        let mut o = MqttOptions::new(format!("flood-{user}-{}", free_port()), "127.0.0.1", port);
        o.set_credentials(&user, meter_password(&user));
        o.set_keep_alive(Duration::from_secs(30));
        o.set_inflight(1000);
        let (client, mut conn) = Client::new(o, 10_000);
        let acked = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        // Set once the last message is handed to the client: the event loop runs until every
        // message sent is acked after that (stopping on `stop` alone raced the last publish).
        let done = Arc::new(AtomicBool::new(false));
        let (acked2, sent2, done2) = (acked.clone(), sent.clone(), done.clone());
        let events = std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let a = acked2.fetch_add(1, Ordering::Relaxed) + 1;
                        if done2.load(Ordering::SeqCst) && a == sent2.load(Ordering::SeqCst) {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(e) => panic!("flooder connection: {e}"),
                }
            }
        });
        let garbage = vec![b'#'; 2048];
        let mut i = 0u64;
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if i % 250 == 0 {
                let due = Duration::from_secs_f64(i as f64 / FLOOD_RATE as f64);
                std::thread::sleep(due.saturating_sub(started.elapsed()));
            }
            let topic =
                if i % 2 == 0 { format!("meters/{user}/reading") } else { format!("meters/{user}/junk/{i}") };
            sent.fetch_add(1, Ordering::SeqCst);
            client.publish(topic, QoS::AtLeastOnce, false, garbage.clone()).expect("publish");
            i += 1;
        }
        done.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::Relaxed) < sent.load(Ordering::Relaxed) {
            assert!(Instant::now() < deadline, "the broker did not ack the flood");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = client.disconnect();
        let _ = events.join();
        sent.load(Ordering::Relaxed)
    })
}

#[test]
fn a_flooding_publisher_does_not_stop_other_meters() {
    let dir = tempfile::tempdir().unwrap();
    let meters = vec![
        MeterSpec::new("genuine", 0, "json", "reading"),
        MeterSpec::new("flooder", 1, "json", "reading"),
    ];
    let Rig { broker, node: _node, rpc, contracts, bridge } =
        Rig::start(dir.path(), meters, "dead_letters_per_minute = 1000\nmax_dead_letters = 100");
    let addrs = meter_addresses();

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood(broker.port, "flooder", stop.clone());
    std::thread::sleep(Duration::from_secs(1));
    // The genuine meter: one reading every 0.5 s during the flood.
    let t0 = now_secs() - 120;
    let topic = "meters/genuine/reading".to_string();
    let mut published = Vec::new();
    let mut max_dead = 0;
    for i in 0..12u64 {
        publish(
            broker.port,
            "genuine",
            &[(topic.clone(), json_reading("genuine", i + 1, t0 + i, 1000 + i, 0))],
        );
        published.push(Instant::now());
        max_dead = max_dead.max(
            Outbox::open(&dir.path().join("outbox.sqlite")).expect("outbox").depth().unwrap().dead_letters,
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let flood_started = published[0] - Duration::from_secs(1);
    std::thread::sleep(Duration::from_secs(FLOOD_SECS).saturating_sub(flood_started.elapsed()));
    stop.store(true, Ordering::Relaxed);
    let flood_count = flooder.join().expect("flooder");
    eprintln!("flood: {flood_count} messages acked by the broker in about {FLOOD_SECS} s");
    assert!(flood_count > FLOOD_RATE * FLOOD_SECS * 3 / 4, "the flood was a flood: {flood_count}");

    // Every genuine reading is committed, and on chain, within bounded time of its publication.
    wait_for("the genuine readings to be committed", Duration::from_secs(20), || {
        bridge.metric("p2pe_bridge_readings_committed_total") >= 12.0
    });
    wait_for("the genuine readings on chain", Duration::from_secs(30), || {
        recorded(&rpc, contracts.readings, addrs[0]).len() == 12
    });
    let last_on_chain = published[11].elapsed();
    assert!(last_on_chain < Duration::from_secs(40), "took {last_on_chain:?}");
    let expected: Vec<(u64, u64, u64)> = (0..12).map(|i| (1000 + i, 0, t0 + i)).collect();
    assert_eq!(recorded(&rpc, contracts.readings, addrs[0]), expected);
    // Every flood message was handled by the bridge (so acked), none stayed with the broker.
    wait_for("the bridge to handle the whole flood", Duration::from_secs(60), || {
        bridge.metric("p2pe_bridge_readings_received_total") >= (flood_count + 12) as f64
    });
    let d = Outbox::open(&dir.path().join("outbox.sqlite")).expect("outbox").depth().unwrap();
    max_dead = max_dead.max(d.dead_letters);
    assert!(max_dead <= 100, "the dead-letter table stayed within max_dead_letters: {max_dead}");
    assert_eq!(d.dead_letters, 100, "and is full");
    assert!(bridge.metric("p2pe_bridge_dead_letters_suppressed_total") > 0.0, "the rate limit was used");
    let rejected = bridge.metric("p2pe_bridge_rejected_total{reason=\"malformed\"}")
        + bridge.metric("p2pe_bridge_rejected_total{reason=\"unknown_meter\"}");
    assert_eq!(rejected as u64, flood_count, "every flood message was counted");
    assert!(recorded(&rpc, contracts.readings, addrs[1]).is_empty());
}
