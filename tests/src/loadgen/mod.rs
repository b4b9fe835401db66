//! Load generator for Ethereum JSON-RPC nodes.
//!
//! The generator works in two phases:
//!
//! 1. **Setup (not timed):** read the chain id, derive the sender keys from a
//!    mnemonic ([`keys`]), fund the senders from the funder account and, for the
//!    `contract` workload, deploy the tiny storage-writing contract of
//!    [`contract`].
//! 2. **Timed run:** pre-sign every transaction ([`txs`]) and pre-serialise the
//!    JSON-RPC batch bodies, start the clock, send the batches of
//!    `eth_sendRawTransaction`, and stop the clock when the block holding the
//!    last transaction of every sender is seen. Afterwards the inclusion of
//!    every transaction and the status of sampled (or all) receipts are
//!    checked ([`run`]).
//!
//! Private keys never leave this module: they are only used to sign and are
//! never printed or logged.

pub mod args;
pub mod contract;
pub mod error;
pub mod keys;
pub mod rpc;
pub mod run;
pub mod txs;

pub use args::LoadArgs;
pub use error::LoadgenError;
pub use run::{percentile, run, Config, Report, Verify, Workload};
