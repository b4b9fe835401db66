//! Parsing and validation of a geth-style genesis file into a [`ChainSpec`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use alloy_consensus::{constants::EMPTY_OMMER_ROOT_HASH, Header, EMPTY_ROOT_HASH};
use alloy_genesis::{Genesis, GenesisAccount};
use alloy_primitives::{Address, Bytes, B256, B64, U256};
use serde::{Deserialize, Serialize};

use super::{
    DEFAULT_EPOCH, DEFAULT_MAX_BLOCK_BYTES, EXTRA_SEAL, EXTRA_VANITY, MAX_BLOCK_BYTES_CEILING, MAX_GAS_LIMIT,
    MIN_BLOCK_BYTES, MIN_GAS_LIMIT, TX_GAS_LIMIT_CAP,
};
use crate::state::WorldState;

/// Why a genesis file was refused. Every variant names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The file could not be read.
    #[error("cannot read genesis file {path}: {source}")]
    Io {
        /// The path that was read.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid JSON or does not have the genesis shape.
    #[error("genesis file {path} is not a valid genesis: {source} (at line {line}, column {column})")]
    Json {
        /// The path that was read.
        path: String,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A field has a value this chain cannot run with.
    #[error("genesis field `{field}`: {reason}")]
    Field {
        /// JSON path of the field, e.g. `config.clique.period`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn field(field: &'static str, reason: impl Into<String>) -> GenesisError {
    GenesisError::Field { field, reason: reason.into() }
}

/// Clique parameters (`config.clique` in the genesis file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliqueConfig {
    /// Minimum seconds between blocks; 0 seals as soon as transactions wait.
    pub period: u64,
    /// Blocks between checkpoints, where votes reset and the signer list is written.
    pub epoch: u64,
}

/// p2p-energy extensions, read from `config.p2pe` in the genesis file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct P2peConfig {
    /// If set, only these accounts may send transactions (spam control on a zero-fee chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowlist: Option<BTreeSet<Address>>,
    /// The energy market deployed in this genesis, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market: Option<super::MarketDeployment>,
    /// Largest block, in bytes of its RLP encoding: a consensus rule, checked on every block
    /// sealed, imported or re-verified. Default [`DEFAULT_MAX_BLOCK_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_block_bytes: Option<u64>,
}

/// Everything fixed about a chain: its identity, consensus parameters and genesis block.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Clique parameters.
    pub clique: CliqueConfig,
    /// Project extensions (allowlist).
    pub p2pe: P2peConfig,
    /// The initial signers, sorted ascending as in `extraData`.
    pub signers: Vec<Address>,
    /// Genesis allocations.
    pub alloc: BTreeMap<Address, GenesisAccount>,
    /// The genesis header, with its state root computed from `alloc`.
    pub genesis_header: Header,
    /// keccak256 of the RLP of the genesis header.
    pub genesis_hash: B256,
    /// The genesis file as parsed, kept so it can be written to a data directory.
    pub genesis: Genesis,
}

impl ChainSpec {
    /// Reads and validates a genesis file.
    pub fn from_file(path: &Path) -> Result<Self, GenesisError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| GenesisError::Io { path: path.display().to_string(), source })?;
        Self::from_json(&text).map_err(|e| match e {
            GenesisError::Json { line, column, source, .. } => {
                GenesisError::Json { path: path.display().to_string(), line, column, source }
            }
            other => other,
        })
    }

    /// Parses and validates genesis JSON text.
    pub fn from_json(text: &str) -> Result<Self, GenesisError> {
        let genesis: Genesis = serde_json::from_str(text).map_err(|source| GenesisError::Json {
            path: "<input>".into(),
            line: source.line(),
            column: source.column(),
            source,
        })?;
        Self::from_genesis(genesis)
    }

    /// Validates a parsed genesis and computes its header.
    pub fn from_genesis(genesis: Genesis) -> Result<Self, GenesisError> {
        let (clique, p2pe) = chain_config(&genesis)?;
        let signers = genesis_signers(&genesis.extra_data)?;
        check_block_fields(&genesis, &p2pe)?;
        let genesis_header = genesis_header(&genesis);
        let genesis_hash = genesis_header.hash_slow();
        Ok(Self {
            chain_id: genesis.config.chain_id,
            clique,
            p2pe,
            signers,
            alloc: genesis.alloc.clone(),
            genesis_header,
            genesis_hash,
            genesis,
        })
    }

    /// The largest gas a single transaction may use: the block gas limit, capped by EIP-7825.
    pub fn tx_gas_cap(&self, block_gas_limit: u64) -> u64 {
        block_gas_limit.min(TX_GAS_LIMIT_CAP)
    }

    /// Largest block, in bytes of its RLP encoding (`config.p2pe.maxBlockBytes`, default
    /// [`DEFAULT_MAX_BLOCK_BYTES`]). A block over it is invalid.
    pub fn max_block_bytes(&self) -> u64 {
        self.p2pe.max_block_bytes.unwrap_or(DEFAULT_MAX_BLOCK_BYTES)
    }

    /// Whether `sender` may send transactions under the allowlist (always, if there is none).
    pub fn sender_allowed(&self, sender: &Address) -> bool {
        self.p2pe.allowlist.as_ref().is_none_or(|l| l.contains(sender))
    }
}

/// Builds Clique genesis `extraData`: 32 zero bytes of vanity, the sorted signers, 65 zero bytes.
pub fn clique_extra_data(signers: &[Address]) -> Bytes {
    let mut sorted = signers.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut v = vec![0u8; EXTRA_VANITY];
    for s in &sorted {
        v.extend_from_slice(s.as_slice());
    }
    v.extend_from_slice(&[0u8; EXTRA_SEAL]);
    v.into()
}

/// The chain id, Clique's period and epoch, and the `config.p2pe` section of a genesis.
fn chain_config(genesis: &Genesis) -> Result<(CliqueConfig, P2peConfig), GenesisError> {
    let cfg = &genesis.config;
    if cfg.chain_id == 0 {
        return Err(field("config.chainId", "must be set to a non-zero chain id"));
    }
    let clique = cfg
        .clique
        .as_ref()
        .ok_or_else(|| field("config.clique", "missing: this node runs Clique proof of authority"))?;
    let period =
        clique.period.ok_or_else(|| field("config.clique.period", "missing (seconds between blocks)"))?;
    if period > 3600 {
        return Err(field("config.clique.period", format!("{period} s is over the 3600 s maximum")));
    }
    let epoch = clique.epoch.unwrap_or(DEFAULT_EPOCH);
    if epoch == 0 {
        return Err(field("config.clique.epoch", "must be at least 1"));
    }
    let p2pe: P2peConfig = match cfg.extra_fields.get("p2pe") {
        None => P2peConfig::default(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| field("config.p2pe", e.to_string()))?,
    };
    Ok((CliqueConfig { period, epoch }, p2pe))
}

/// The initial signers listed in the genesis `extraData` (vanity, sorted addresses, zero seal).
fn genesis_signers(extra: &[u8]) -> Result<Vec<Address>, GenesisError> {
    if extra.len() < EXTRA_VANITY + EXTRA_SEAL {
        return Err(field(
            "extraData",
            format!(
                "is {} bytes; Clique needs 32 bytes of vanity, the signer addresses (20 bytes each) and 65 zero bytes",
                extra.len()
            ),
        ));
    }
    let signer_bytes = &extra[EXTRA_VANITY..extra.len() - EXTRA_SEAL];
    if !signer_bytes.len().is_multiple_of(20) {
        return Err(field(
            "extraData",
            format!("the signer section is {} bytes, not a multiple of 20", signer_bytes.len()),
        ));
    }
    if signer_bytes.is_empty() {
        return Err(field("extraData", "lists no signers; at least one is needed"));
    }
    if extra[extra.len() - EXTRA_SEAL..].iter().any(|b| *b != 0) {
        return Err(field("extraData", "the last 65 bytes (the genesis seal) must be zero"));
    }
    let signers: Vec<Address> = signer_bytes.chunks(20).map(Address::from_slice).collect();
    if signers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(field("extraData", "signer addresses must be sorted ascending and unique"));
    }
    Ok(signers)
}

/// The gas limit, block size, base fee, number and code sizes of a genesis.
fn check_block_fields(genesis: &Genesis, p2pe: &P2peConfig) -> Result<(), GenesisError> {
    if genesis.gas_limit < MIN_GAS_LIMIT {
        return Err(field(
            "gasLimit",
            format!(
                "{} is below the minimum block gas limit {MIN_GAS_LIMIT} (the EIP-7825 transaction gas cap)",
                genesis.gas_limit
            ),
        ));
    }
    if genesis.gas_limit > MAX_GAS_LIMIT {
        return Err(field("gasLimit", "is over 2^63-1"));
    }
    if let Some(bytes) = p2pe.max_block_bytes {
        if !(MIN_BLOCK_BYTES..=MAX_BLOCK_BYTES_CEILING).contains(&bytes) {
            return Err(field(
                "config.p2pe.maxBlockBytes",
                format!(
                    "{bytes} is outside {MIN_BLOCK_BYTES}..={MAX_BLOCK_BYTES_CEILING} (a block must hold a \
                     header and two 128 KiB transactions, and fit one gossip message)"
                ),
            ));
        }
    }
    match genesis.base_fee_per_gas {
        None | Some(0) => {}
        Some(other) => {
            return Err(field(
                "baseFeePerGas",
                format!("is {other}; this is a zero-fee chain and the base fee is fixed at 0"),
            ))
        }
    }
    if genesis.number.unwrap_or(0) != 0 {
        return Err(field("number", "a genesis block must be number 0"));
    }
    for (addr, acct) in &genesis.alloc {
        if let Some(code) = &acct.code {
            if code.len() > 0x6000 * 2 {
                return Err(field(
                    "alloc",
                    format!("code of {addr} is {} bytes, over twice the EIP-170 limit", code.len()),
                ));
            }
        }
    }
    Ok(())
}

/// The genesis block's header (its state root computed from the allocation).
fn genesis_header(genesis: &Genesis) -> Header {
    let mut state = WorldState::from_alloc(&genesis.alloc);
    Header {
        parent_hash: B256::ZERO,
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: genesis.coinbase,
        state_root: state.state_root(),
        transactions_root: EMPTY_ROOT_HASH,
        receipts_root: EMPTY_ROOT_HASH,
        logs_bloom: Default::default(),
        difficulty: if genesis.difficulty.is_zero() { U256::from(1) } else { genesis.difficulty },
        number: 0,
        gas_limit: genesis.gas_limit,
        gas_used: 0,
        timestamp: genesis.timestamp,
        extra_data: genesis.extra_data.clone(),
        mix_hash: genesis.mix_hash,
        nonce: B64::from(genesis.nonce),
        ..crate::primitives::fixed_fields_header()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(extra: &str, base_fee: &str) -> String {
        format!(
            r#"{{"config":{{"chainId":1337,"clique":{{"period":1,"epoch":30000}}}},
            "difficulty":"0x1","gasLimit":"0x1c9c380","extraData":"{extra}",{base_fee}
            "alloc":{{"0x00000000000000000000000000000000000000aa":{{"balance":"0x10"}}}}}}"#
        )
    }

    fn extra_for(addr: &str) -> String {
        format!("0x{}{}{}", "00".repeat(32), addr.trim_start_matches("0x"), "00".repeat(65))
    }

    #[test]
    fn parses_valid_genesis() {
        let spec = ChainSpec::from_json(&sample(
            &extra_for("0x1111111111111111111111111111111111111111"),
            r#""baseFeePerGas":"0x0","#,
        ))
        .unwrap();
        assert_eq!(spec.chain_id, 1337);
        assert_eq!(spec.signers.len(), 1);
        assert_eq!(spec.clique, CliqueConfig { period: 1, epoch: 30000 });
        assert_eq!(spec.genesis_header.base_fee_per_gas, Some(0));
        assert_eq!(spec.genesis_hash, spec.genesis_header.hash_slow());
        assert_ne!(spec.genesis_header.state_root, EMPTY_ROOT_HASH);
    }

    #[test]
    fn rejects_bad_extra_data_and_fees() {
        let short = ChainSpec::from_json(&sample("0x00", "")).unwrap_err().to_string();
        assert!(short.contains("extraData"), "{short}");
        let odd = format!("0x{}{}{}", "00".repeat(32), "11".repeat(19), "00".repeat(65));
        let err = ChainSpec::from_json(&sample(&odd, "")).unwrap_err().to_string();
        assert!(err.contains("multiple of 20"), "{err}");
        let fee = ChainSpec::from_json(&sample(
            &extra_for("0x1111111111111111111111111111111111111111"),
            r#""baseFeePerGas":"0x7","#,
        ))
        .unwrap_err()
        .to_string();
        assert!(fee.contains("baseFeePerGas"), "{fee}");
        let json = ChainSpec::from_json("{ not json").unwrap_err().to_string();
        assert!(json.contains("line 1"), "{json}");
        let no_clique = ChainSpec::from_json(
            r#"{"config":{"chainId":5},"gasLimit":"0x5208","extraData":"0x","alloc":{}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(no_clique.contains("config.clique"), "{no_clique}");
    }

    #[test]
    fn block_limits_in_the_genesis_are_checked() {
        let extra = extra_for("0x1111111111111111111111111111111111111111");
        let spec = ChainSpec::from_json(&sample(&extra, "")).unwrap();
        assert_eq!(spec.max_block_bytes(), DEFAULT_MAX_BLOCK_BYTES);
        let with = |p2pe: &str| {
            sample(&extra, "").replace(r#""epoch":30000}"#, &format!(r#""epoch":30000}},"p2pe":{p2pe}"#))
        };
        let spec = ChainSpec::from_json(&with(r#"{"maxBlockBytes":1048576}"#)).unwrap();
        assert_eq!(spec.max_block_bytes(), 1_048_576);
        for (bytes, ok) in [
            (MIN_BLOCK_BYTES - 1, false),
            (MIN_BLOCK_BYTES, true),
            (MAX_BLOCK_BYTES_CEILING, true),
            (MAX_BLOCK_BYTES_CEILING + 1, false),
        ] {
            let r = ChainSpec::from_json(&with(&format!(r#"{{"maxBlockBytes":{bytes}}}"#)));
            assert_eq!(r.is_ok(), ok, "{bytes}");
            if let Err(e) = r {
                assert!(e.to_string().contains("config.p2pe.maxBlockBytes"), "{e}");
            }
        }
        let low = sample(&extra, "").replace("0x1c9c380", &format!("{:#x}", MIN_GAS_LIMIT - 1));
        let err = ChainSpec::from_json(&low).unwrap_err().to_string();
        assert!(err.contains("gasLimit") && err.contains("minimum block gas limit"), "{err}");
        let at = sample(&extra, "").replace("0x1c9c380", &format!("{MIN_GAS_LIMIT:#x}"));
        assert!(ChainSpec::from_json(&at).is_ok());
    }

    #[test]
    fn extra_data_builder_sorts() {
        let a = Address::repeat_byte(2);
        let b = Address::repeat_byte(1);
        let extra = clique_extra_data(&[a, b]);
        assert_eq!(extra.len(), 32 + 40 + 65);
        assert_eq!(&extra[32..52], b.as_slice());
    }
}
