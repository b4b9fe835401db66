//! `p2pe-node`: a Clique proof-of-authority Ethereum node for peer-to-peer energy trading.
//!
//! The node seals and imports blocks under EIP-225, executes them with revm under Osaka rules
//! with every fee fixed at zero, persists blocks, receipts and state in SQLite, and serves the
//! Ethereum JSON-RPC API over HTTP and WebSocket. See `ARCHITECTURE.md` at the repository root
//! for the map of modules and the road a transaction travels.

pub mod blockchain;
pub mod chain;
pub mod cli;
pub mod consensus;
pub mod crypto;
pub mod execution;
pub mod keeper;
pub mod metrics;
pub mod network;
pub mod node;
pub mod primitives;
pub mod rpc;
pub mod sealer;
pub mod state;
pub mod storage;
pub mod txpool;
