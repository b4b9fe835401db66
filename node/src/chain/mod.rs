//! Chain specification: the genesis file, its validation, and the fixed rules of this chain.
//!
//! A p2p-energy chain is a Clique (EIP-225) proof-of-authority chain that runs the current
//! Ethereum execution rules (Osaka) from genesis with a base fee pinned at zero.

mod builder;
mod genesis;
mod limits;
mod market;

pub use builder::{build_genesis, GenesisParams, CREATE2_DEPLOYER, CREATE2_DEPLOYER_CODE};

pub use genesis::{clique_extra_data, ChainSpec, CliqueConfig, GenesisError, P2peConfig};
pub use limits::{next_gas_limit, SealLimits, SealLimitsError};
pub use market::{
    compressed_capacity_w, deploy_market, market_addresses, write_contracts_json, GenesisParticipant,
    MarketConfig, MarketDeployError, MarketDeployment, MarketMode, DEFAULT_CAPACITY_W,
    DEFAULT_IMBALANCE_TICKS, DEFAULT_ORDER_HORIZON, GENESIS_DEPLOYER,
};

/// EIP-7825 per-transaction gas cap (Osaka).
pub const TX_GAS_LIMIT_CAP: u64 = 16_777_216;

/// Smallest block gas limit a header may carry (geth's Clique: 5000). Ours is the EIP-7825
/// per-transaction cap, so every transaction the protocol allows always fits in a block: a signer
/// lowering the limit (1/1024 of the parent's per block at most) cannot starve the market's
/// largest calls.
pub const MIN_GAS_LIMIT: u64 = TX_GAS_LIMIT_CAP;

/// A block's gas limit may differ from its parent's by less than parent / this (geth's
/// `GasLimitBoundDivisor`).
pub const GAS_LIMIT_BOUND_DIVISOR: u64 = 1024;

/// Largest block gas limit (geth's 2^63 − 1).
pub const MAX_GAS_LIMIT: u64 = i64::MAX as u64;

/// Default largest block, in bytes of its RLP encoding: EIP-7934's `MAX_RLP_BLOCK_SIZE` (Osaka;
/// 10 MiB less a 2 MiB margin), half the 16 MiB gossip message cap and a third of a sync answer's
/// byte budget, so every valid block can be gossiped whole and served by sync.
pub const DEFAULT_MAX_BLOCK_BYTES: u64 = 8 * 1024 * 1024;

/// Highest `config.p2pe.maxBlockBytes` a genesis may set: what the network can still carry in one
/// gossip message (16 MiB) and one sync answer with room for framing (checked in
/// `network::protocol`).
pub const MAX_BLOCK_BYTES_CEILING: u64 = 12 * 1024 * 1024;

/// Lowest `config.p2pe.maxBlockBytes` (or `run --max-block-bytes`): room for a header and two
/// transactions of the pool's default 128 KiB size limit.
pub const MIN_BLOCK_BYTES: u64 = 256 * 1024;

/// Bytes of a block that are not its transactions, at most: the header (with a checkpoint's
/// signer list of up to 1,000 signers) and the list headers. The sealer's and the pool's room for
/// transactions is the block byte limit less this.
pub const BLOCK_OVERHEAD_BYTES: u64 = 32 * 1024;

/// Length of the vanity prefix of a Clique header's `extraData`.
pub const EXTRA_VANITY: usize = 32;

/// Length of the secp256k1 seal at the end of a Clique header's `extraData`.
pub const EXTRA_SEAL: usize = 65;

/// Default number of blocks between Clique checkpoints (EIP-225).
pub const DEFAULT_EPOCH: u64 = 30_000;
