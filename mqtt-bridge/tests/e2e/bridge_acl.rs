//! The broker's ACL lets each meter publish only to its own topic: a meter publishing to another
//! meter's topic is refused by the broker (MQTT 5 PUBACK reason "not authorized"), the bridge never sees
//! the message, and the victim meter has no reading on chain. The meter's own topic works.

use std::time::Duration;

use p2pe_mqtt_bridge::outbox::Outbox;
use p2pe_tests::bridge::*;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, Event, MqttOptions};

/// Publishes one message as `user` with MQTT 5 and returns the PUBACK reason.
fn publish_v5(port: u16, user: &str, topic: &str, payload: Vec<u8>) -> PubAckReason {
    let mut o = MqttOptions::new(format!("v5-{user}-{}", free_port()), "127.0.0.1", port);
    o.set_credentials(user, meter_password(user));
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut conn) = Client::new(o, 10);
    client.publish(topic, QoS::AtLeastOnce, false, payload).unwrap();
    for ev in conn.iter() {
        match ev {
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let _ = client.disconnect();
                return ack.reason;
            }
            Ok(_) => {}
            Err(e) => panic!("MQTT 5 publisher {user}: {e}"),
        }
    }
    panic!("no PUBACK");
}

#[test]
fn a_meter_cannot_publish_on_another_meters_topic() {
    let dir = tempfile::tempdir().unwrap();
    let meters =
        vec![MeterSpec::new("alice", 0, "json", "reading"), MeterSpec::new("bob", 1, "json", "reading")];
    let Rig { broker, node: _node, rpc, contracts, bridge } = Rig::start(dir.path(), meters, "");
    let addrs = meter_addresses();

    let t0 = now_secs() - 60;
    // Alice forges a reading on Bob's topic (with Bob's id in the payload): the broker refuses it.
    let forged =
        publish_v5(broker.port, "alice", "meters/bob/reading", json_reading("bob", 1, t0, 999_999, 0));
    assert_eq!(forged, PubAckReason::NotAuthorized);
    // Her own topic is fine.
    let own = publish_v5(broker.port, "alice", "meters/alice/reading", json_reading("alice", 1, t0, 100, 1));
    assert!(matches!(own, PubAckReason::Success | PubAckReason::NoMatchingSubscribers), "{own:?}");
    // Also with MQTT 3.1.1 (where the broker drops it silently).
    publish(
        broker.port,
        "alice",
        &[("meters/bob/reading".into(), json_reading("bob", 2, t0 + 1, 999_999, 0))],
    );
    publish(
        broker.port,
        "alice",
        &[("meters/alice/reading".into(), json_reading("alice", 2, t0 + 1, 101, 1))],
    );

    wait_for("alice's readings on chain", Duration::from_secs(60), || {
        recorded(&rpc, contracts.readings, addrs[0]).len() == 2
    });
    assert_eq!(recorded(&rpc, contracts.readings, addrs[0]), vec![(100, 1, t0), (101, 1, t0 + 1)]);
    assert!(recorded(&rpc, contracts.readings, addrs[1]).is_empty(), "bob has no reading");
    assert_eq!(
        bridge.metric("p2pe_bridge_readings_received_total"),
        2.0,
        "the bridge never saw the forged messages"
    );
    assert!(Outbox::open(&dir.path().join("outbox.sqlite"))
        .expect("outbox")
        .dead_letters()
        .unwrap()
        .is_empty());
}
