//! Chain specification: the genesis file, its validation, and the fixed rules of this chain.
//!
//! A p2p-energy chain is a Clique (EIP-225) proof-of-authority chain that runs the current
//! Ethereum execution rules (Osaka) from genesis with a base fee pinned at zero.

mod builder;
mod genesis;
mod market;

pub use builder::{build_genesis, GenesisParams, CREATE2_DEPLOYER, CREATE2_DEPLOYER_CODE};

pub use genesis::{clique_extra_data, ChainSpec, CliqueConfig, GenesisError, P2peConfig};
pub use market::{
    deploy_market, market_addresses, GenesisParticipant, MarketConfig, MarketDeployError, MarketDeployment,
    DEFAULT_ORDER_HORIZON, GENESIS_DEPLOYER,
};

/// EIP-7825 per-transaction gas cap (Osaka).
pub const TX_GAS_LIMIT_CAP: u64 = 16_777_216;

/// Length of the vanity prefix of a Clique header's `extraData`.
pub const EXTRA_VANITY: usize = 32;

/// Length of the secp256k1 seal at the end of a Clique header's `extraData`.
pub const EXTRA_SEAL: usize = 65;

/// Default number of blocks between Clique checkpoints (EIP-225).
pub const DEFAULT_EPOCH: u64 = 30_000;
