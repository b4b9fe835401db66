//! Builds genesis files for new networks and for the dev chain.

use std::collections::BTreeMap;

use alloy_genesis::{CliqueConfig as GenesisClique, Genesis, GenesisAccount};
use alloy_primitives::{address, hex, Address, Bytes, U256};

use super::genesis::clique_extra_data;
use super::DEFAULT_EPOCH;

/// The deterministic CREATE2 deployer (Arachnid's proxy), predeployed where `forge script`
/// expects it.
pub const CREATE2_DEPLOYER: Address = address!("4e59b44847b379578588920ca78fbf26c0b4956c");

/// Runtime code of the CREATE2 deployer.
pub const CREATE2_DEPLOYER_CODE: &str = "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b8082525050506014600cf3";

/// Parameters of a new chain.
#[derive(Debug, Clone)]
pub struct GenesisParams {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Seconds between blocks.
    pub period: u64,
    /// Checkpoint interval.
    pub epoch: u64,
    /// Block gas limit.
    pub gas_limit: u64,
    /// Initial signers.
    pub signers: Vec<Address>,
    /// Prefunded accounts.
    pub funded: Vec<(Address, U256)>,
    /// Optional sender allowlist.
    pub allowlist: Option<Vec<Address>>,
    /// Genesis timestamp.
    pub timestamp: u64,
    /// `config.p2pe.maxBlockBytes`, if not the default.
    pub max_block_bytes: Option<u64>,
}

impl Default for GenesisParams {
    fn default() -> Self {
        Self {
            chain_id: 1337,
            period: 1,
            epoch: DEFAULT_EPOCH,
            gas_limit: 3_000_000_000,
            signers: vec![],
            funded: vec![],
            allowlist: None,
            timestamp: 0,
            max_block_bytes: None,
        }
    }
}

/// Builds a genesis with the CREATE2 deployer predeployed.
pub fn build_genesis(params: &GenesisParams) -> Genesis {
    let mut alloc: BTreeMap<Address, GenesisAccount> = BTreeMap::new();
    for (addr, balance) in &params.funded {
        alloc.insert(*addr, GenesisAccount { balance: *balance, ..Default::default() });
    }
    alloc.insert(
        CREATE2_DEPLOYER,
        GenesisAccount {
            nonce: Some(1),
            code: Some(Bytes::from(hex::decode(CREATE2_DEPLOYER_CODE).expect("constant hex"))),
            ..Default::default()
        },
    );
    let mut genesis = Genesis {
        nonce: 0,
        timestamp: params.timestamp,
        extra_data: clique_extra_data(&params.signers),
        gas_limit: params.gas_limit,
        difficulty: U256::from(1),
        alloc,
        base_fee_per_gas: Some(0),
        ..Default::default()
    };
    genesis.config.chain_id = params.chain_id;
    genesis.config.clique = Some(GenesisClique { period: Some(params.period), epoch: Some(params.epoch) });
    // Every fork from genesis: Osaka rules apply from block 0.
    genesis.config.homestead_block = Some(0);
    genesis.config.eip150_block = Some(0);
    genesis.config.eip155_block = Some(0);
    genesis.config.eip158_block = Some(0);
    genesis.config.byzantium_block = Some(0);
    genesis.config.constantinople_block = Some(0);
    genesis.config.petersburg_block = Some(0);
    genesis.config.istanbul_block = Some(0);
    genesis.config.berlin_block = Some(0);
    genesis.config.london_block = Some(0);
    genesis.config.shanghai_time = Some(0);
    genesis.config.cancun_time = Some(0);
    genesis.config.prague_time = Some(0);
    genesis.config.osaka_time = Some(0);
    let mut p2pe = serde_json::Map::new();
    if let Some(list) = &params.allowlist {
        p2pe.insert("allowlist".into(), serde_json::json!(list));
    }
    if let Some(bytes) = params.max_block_bytes {
        p2pe.insert("maxBlockBytes".into(), serde_json::json!(bytes));
    }
    if !p2pe.is_empty() {
        genesis.config.extra_fields.insert("p2pe".into(), p2pe.into());
    }
    genesis
}
