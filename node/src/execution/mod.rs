//! Block execution with revm under Osaka rules at zero fees.
//!
//! One function, [`execute_block`], runs a list of transactions over a base state. The block
//! builder calls it with [`InvalidTxPolicy::Skip`] (a transaction that cannot run, or that would
//! take the block over its byte limit, is left out);
//! block import calls it with [`InvalidTxPolicy::Reject`] (such a transaction makes the block
//! invalid). Everything else is the same code, so a sealed block and an imported block are
//! executed identically.

pub mod budget;
mod env;
mod evm;
mod executor;
mod receipt;

pub(crate) use env::cfg_env;
pub use env::{block_env, tx_env, BlockInput};
pub use evm::{EvmConfig, EvmMode};
pub use executor::{execute_block, BlockOutcome, ExecError, InvalidTxPolicy, SkippedTx, TxOutcome};
pub use receipt::{build_receipt, receipts_bloom};
