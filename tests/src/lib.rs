//! Test and benchmark tooling for the p2p-energy chain.
//!
//! This crate holds the project's end-to-end tests (under `tests/tests/`) and
//! the load generator used by the node-versus-anvil benchmark of issue 2
//! (`p2pe-loadgen`, see [`loadgen`] and `tests/bench/README.md`), and the multi-node network
//! helpers ([`net`]) behind the network sync test and `p2pe-netbench`, and [`probe`], a test peer
//! that speaks the node's libp2p protocols, [`seed`], direct state seeding for the benches, and [`single`], one `p2pe-node dev` or anvil process for
//! the benches. It is also the test kit of the other crates: [`harness`]
//! (ports, binaries, node processes, JSON-RPC) and [`bridge`] (Mosquitto, meters and the bridge
//! binary for the MQTT bridge's tests).

pub mod bridge;
pub mod harness;
pub mod loadgen;
pub mod net;
pub mod probe;
pub mod seed;
pub mod single;
pub mod tls_proxy;
