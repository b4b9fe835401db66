//! The bridge's end-to-end tests, one test binary: each test starts its own Mosquitto, node and
//! bridge on free ports and in its own temporary directory, so the test command's two test threads
//! run two at once (they mostly wait on brokers, blocks and outages; one binary per file ran them
//! one after another).
//!
//! One file alone: `cargo test -p p2pe-mqtt-bridge --test e2e bridge_node_outage`.

mod bridge_acl;
mod bridge_bad_input;
mod bridge_batch_skip;
mod bridge_broker_restart;
mod bridge_cli;
mod bridge_confirmations;
mod bridge_crash;
mod bridge_dev_chain;
mod bridge_flood;
mod bridge_formats;
mod bridge_gas_estimate;
mod bridge_load;
mod bridge_node_outage;
mod bridge_quarantine;
mod bridge_rpc_tls;
mod metrics_prometheus;
mod systemd_unit;
