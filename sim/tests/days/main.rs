//! The simulator's short days end to end, one test binary: each test starts its own dev node,
//! Mosquitto and bridge on free ports, so the test command's two test threads run two days at once
//! (they wait on 5-second slots far more than they compute; one binary per day ran them one after
//! another). The README's own commands stay in `readme_sim.rs`, which needs the default port 8545.
//!
//! One day alone: `cargo test -p p2pe-sim --test days sim_pcc`. Tests run in name order, two at a
//! time: the shortest (`slot_final`, 4 slots of 2 households) sorts last, so that it fills the gap at the end.

mod sim_island;
mod sim_lab;
mod sim_pcc;
mod sim_short;
mod slot_final;
