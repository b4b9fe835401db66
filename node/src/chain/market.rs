//! The energy market, deployed at genesis at fixed addresses.
//!
//! Genesis building runs the deployment and set-up calls through revm (the same executor the
//! chain uses), then writes the resulting accounts, code and storage into the genesis `alloc`.
//! The contracts are created by [`GENESIS_DEPLOYER`], an address with no key, at nonces 0–3, so
//! their addresses are the same on every p2p-energy chain:
//!
//! | contract | address |
//! | --- | --- |
//! | Registry | `GENESIS_DEPLOYER.create(0)` |
//! | CreditToken | `GENESIS_DEPLOYER.create(1)` |
//! | MeterReadings | `GENESIS_DEPLOYER.create(2)` |
//! | EnergyMarket | `GENESIS_DEPLOYER.create(3)` |

use std::collections::BTreeMap;

use alloy_genesis::{Genesis, GenesisAccount};
use alloy_primitives::{address, Address, Bytes, TxKind, B256, U256};
use alloy_sol_types::{SolCall, SolConstructor};
use p2pe_bindings::{credit_token, energy_market, meter_readings, registry};
use revm::context::TxEnv;
use revm::context_interface::result::ExecutionResult;
use revm::primitives::KECCAK_EMPTY;
use revm::ExecuteCommitEvm;

use super::TX_GAS_LIMIT_CAP;
use crate::execution::{block_env, BlockInput, EvmConfig, EvmMode};
use crate::state::{BlockHashes, StateOverlay, WorldState};

/// The keyless account that creates the market contracts at genesis.
pub const GENESIS_DEPLOYER: Address = address!("00000000000000000000000000000000000e0e0e");

/// Where the market contracts live, and how the market is set up: the one type the node, the
/// simulator and the bridge share (`contracts.json`, the genesis's `config.p2pe.market`).
pub use p2pe_bindings::{MarketDeployment, MarketMode};

/// The fixed addresses of the market contracts.
pub fn market_addresses() -> (Address, Address, Address, Address) {
    (
        GENESIS_DEPLOYER.create(0),
        GENESIS_DEPLOYER.create(1),
        GENESIS_DEPLOYER.create(2),
        GENESIS_DEPLOYER.create(3),
    )
}

/// One participant registered at genesis.
#[derive(Debug, Clone)]
pub struct GenesisParticipant {
    /// The participant's account.
    pub account: Address,
    /// Prosumer (may sell) or consumer.
    pub prosumer: bool,
    /// Its meter's signing address, if bound at genesis.
    pub meter: Option<Address>,
    /// Credits minted to it (base units).
    pub credits: U256,
}

/// The registry's order horizon at deployment: one day (`Registry.DEFAULT_ORDER_HORIZON`).
pub const DEFAULT_ORDER_HORIZON: u32 = p2pe_bindings::deployment::DEFAULT_ORDER_HORIZON;

/// The registry's imbalance premiums at deployment, in price ticks
/// (`Registry.DEFAULT_IMBALANCE_TICKS`; 0.05 credit/kWh at the default 0.001 tick).
pub const DEFAULT_IMBALANCE_TICKS: u16 = 50;

/// The capacity a participant gets at registration at deployment, watts, import and export
/// (`Registry.DEFAULT_CAPACITY_W`).
pub const DEFAULT_CAPACITY_W: u32 = 25_000;

/// How to set up the market at genesis.
#[derive(Debug, Clone)]
pub struct MarketConfig {
    /// Operators (registry admins and token minters). At least one.
    pub admins: Vec<Address>,
    /// The grid operator's account.
    pub grid: Address,
    /// Credits minted to the grid account and deposited in the market, so it can pay feed-in.
    pub grid_credits: U256,
    /// Unix time of slot 0.
    pub start_time: u64,
    /// Slot length in seconds (≥ 5).
    pub slot_length: u32,
    /// Gate closure in seconds before slot start.
    pub gate_closure: u32,
    /// Grace period in seconds after slot end.
    pub grace_period: u32,
    /// Pay-as-bid instead of pay-as-clear.
    pub pay_as_bid: bool,
    /// Price granularity, credit base units per kWh (multiple of 1000).
    pub price_tick: U256,
    /// Retail price (grid sells), credit base units per kWh.
    pub retail: U256,
    /// Feed-in tariff (grid buys), credit base units per kWh.
    pub feed_in: U256,
    /// Orders are accepted only for slots starting at most this many seconds ahead (the registry's
    /// `orderHorizon`; the operator can change it later with `setOrderHorizon`).
    pub order_horizon: u32,
    /// Short imbalance premium over retail and long imbalance penalty below feed-in, in price
    /// ticks (the registry's `setImbalancePrices`; at least 1, at most 65,535).
    pub imbalance_ticks: (u16, u16),
    /// Import and export capacity, watts, given to each participant at registration (the
    /// registry's `setDefaultCapacity`): per slot it bids at most import × slot length and asks
    /// at most export × slot length.
    pub default_capacity_w: (u32, u32),
    /// Participants to register.
    pub participants: Vec<GenesisParticipant>,
}

impl MarketConfig {
    /// Defaults: 0.30 credit/kWh retail, 0.08 credit/kWh feed-in, 0.001 credit tick.
    pub fn new(admins: Vec<Address>, grid: Address, start_time: u64, slot_length: u32) -> Self {
        let milli = U256::from(10u64).pow(U256::from(15));
        Self {
            admins,
            grid,
            grid_credits: U256::from(1_000_000u64) * U256::from(10u64).pow(U256::from(18)),
            start_time,
            slot_length,
            gate_closure: (slot_length / 3).max(1),
            grace_period: (slot_length / 3).max(1),
            pay_as_bid: false,
            price_tick: milli,
            retail: U256::from(300) * milli,
            feed_in: U256::from(80) * milli,
            order_horizon: DEFAULT_ORDER_HORIZON,
            imbalance_ticks: (DEFAULT_IMBALANCE_TICKS, DEFAULT_IMBALANCE_TICKS),
            default_capacity_w: (DEFAULT_CAPACITY_W, DEFAULT_CAPACITY_W),
            participants: Vec::new(),
        }
    }
}

/// Why the market could not be deployed.
#[derive(Debug, thiserror::Error)]
#[error("deploying the market at genesis: {step}: {reason}")]
pub struct MarketDeployError {
    step: String,
    reason: String,
}

struct GenesisExec {
    state: WorldState,
    hashes: BlockHashes,
    input: BlockInput,
    chain_id: u64,
}

impl GenesisExec {
    fn exec(
        &mut self,
        step: &str,
        caller: Address,
        kind: TxKind,
        data: Bytes,
    ) -> Result<Bytes, MarketDeployError> {
        let fail = |reason: String| MarketDeployError { step: step.to_string(), reason };
        let nonce = self.state.accounts.get(&caller).map_or(0, |e| e.info.nonce);
        let overlay = StateOverlay::new(&self.state, &self.hashes);
        let mut evm = EvmConfig::new(self.chain_id).evm(overlay, block_env(&self.input), EvmMode::Call);
        let tx = TxEnv {
            caller,
            gas_limit: TX_GAS_LIMIT_CAP,
            kind,
            data,
            nonce,
            chain_id: Some(self.chain_id),
            ..Default::default()
        };
        let result = evm.transact_commit(tx).map_err(|e| fail(e.to_string()))?;
        let output = match result {
            ExecutionResult::Success { output, .. } => output.into_data(),
            ExecutionResult::Revert { output, .. } => {
                return Err(fail(format!(
                    "reverted: {}",
                    alloy_sol_types::decode_revert_reason(&output).unwrap_or_else(|| output.to_string())
                )))
            }
            ExecutionResult::Halt { reason, .. } => return Err(fail(format!("halted: {reason:?}"))),
        };
        let changes = evm.ctx.journaled_state.database.into_changes();
        self.state.apply(&changes);
        Ok(output)
    }

    fn call(
        &mut self,
        step: &str,
        caller: Address,
        to: Address,
        data: Vec<u8>,
    ) -> Result<(), MarketDeployError> {
        self.exec(step, caller, TxKind::Call(to), data.into()).map(|_| ())
    }

    fn create(
        &mut self,
        step: &str,
        code: &[u8],
        args: Vec<u8>,
        expect: Address,
    ) -> Result<(), MarketDeployError> {
        let mut init = code.to_vec();
        init.extend(args);
        self.exec(step, GENESIS_DEPLOYER, TxKind::Create, init.into())?;
        let deployed = self.state.accounts.get(&expect).is_some_and(|e| e.info.code_hash != KECCAK_EMPTY);
        if !deployed {
            return Err(MarketDeployError { step: step.into(), reason: format!("no code at {expect}") });
        }
        Ok(())
    }
}

/// Deploys and sets up the market in `genesis`, adding the contracts to its `alloc` and the
/// deployment to `config.p2pe.market`.
pub fn deploy_market(
    genesis: &mut Genesis,
    cfg: &MarketConfig,
) -> Result<MarketDeployment, MarketDeployError> {
    let err = |step: &str, reason: &str| MarketDeployError { step: step.into(), reason: reason.into() };
    if cfg.admins.is_empty() {
        return Err(err("config", "at least one market admin is needed"));
    }
    let addrs = market_addresses();
    let (registry, token, readings, market) = addrs;
    for a in [registry, token, readings, market, GENESIS_DEPLOYER] {
        if genesis.alloc.contains_key(&a) {
            return Err(err(
                "config",
                &format!("alloc already has an account at {a}, reserved for the market"),
            ));
        }
    }
    let mut ex = GenesisExec {
        state: WorldState::from_alloc(&genesis.alloc),
        hashes: BlockHashes::default(),
        input: BlockInput {
            number: 0,
            timestamp: genesis.timestamp,
            beneficiary: Address::ZERO,
            gas_limit: u64::MAX / 2,
            difficulty: 1,
            prevrandao: B256::ZERO,
        },
        chain_id: genesis.config.chain_id,
    };
    deploy_contracts(&mut ex, cfg, addrs)?;
    register_participants(&mut ex, cfg, registry, token)?;
    fund_grid(&mut ex, cfg, token, market)?;
    genesis.alloc = resulting_alloc(&ex.state, &genesis.alloc);
    let deployment = MarketDeployment {
        registry,
        token,
        readings,
        market,
        grid: cfg.grid,
        admins: cfg.admins.clone(),
        start_time: cfg.start_time,
        slot_length: cfg.slot_length,
        gate_closure: cfg.gate_closure,
        grace_period: cfg.grace_period,
        mode: if cfg.pay_as_bid { MarketMode::PayAsBid } else { MarketMode::PayAsClear },
        order_horizon: cfg.order_horizon,
        chain_id: None,
    };
    let mut p2pe = genesis.config.extra_fields.get("p2pe").cloned().unwrap_or_else(|| serde_json::json!({}));
    p2pe["market"] = serde_json::to_value(&deployment).expect("serialisable");
    genesis.config.extra_fields.insert("p2pe".into(), p2pe);
    Ok(deployment)
}

/// Creates the four contracts at `addrs` (registry, token, readings, market), connects the
/// registry to the market and sets the market's terms.
fn deploy_contracts(
    ex: &mut GenesisExec,
    cfg: &MarketConfig,
    addrs: (Address, Address, Address, Address),
) -> Result<(), MarketDeployError> {
    let (registry, token, readings, market) = addrs;
    let admin = cfg.admins[0];
    let ctor = registry::Registry::constructorCall {
        admins: cfg.admins.clone(),
        startTime_: cfg.start_time,
        slotLength_: cfg.slot_length,
        priceTick_: cfg.price_tick,
        retailPerKWh: cfg.retail,
        feedInPerKWh: cfg.feed_in,
    };
    ex.create("Registry", &registry::Registry::BYTECODE, ctor.abi_encode(), registry)?;
    let ctor = credit_token::CreditToken::constructorCall {
        name_: "P2P Energy Credit".into(),
        symbol_: "P2PE".into(),
        admins: cfg.admins.clone(),
    };
    ex.create("CreditToken", &credit_token::CreditToken::BYTECODE, ctor.abi_encode(), token)?;
    let ctor = meter_readings::MeterReadings::constructorCall {
        registry_: registry,
        finalityDelay_: readings_finality(cfg.slot_length, cfg.grace_period),
    };
    ex.create("MeterReadings", &meter_readings::MeterReadings::BYTECODE, ctor.abi_encode(), readings)?;
    let ctor = energy_market::EnergyMarket::constructorCall {
        registry_: registry,
        token_: token,
        readings_: readings,
        gridAccount_: cfg.grid,
        gateClosure_: cfg.gate_closure,
        gracePeriod_: cfg.grace_period,
        mode_: if cfg.pay_as_bid { 1 } else { 0 },
    };
    ex.create("EnergyMarket", &energy_market::EnergyMarket::BYTECODE, ctor.abi_encode(), market)?;
    let listener = registry::Registry::setRoleListenerCall { listener: market }.abi_encode();
    ex.call("setRoleListener", admin, registry, listener)?;
    if cfg.order_horizon != DEFAULT_ORDER_HORIZON {
        // The registry pushes the horizon to the market, its role listener now.
        let horizon = registry::Registry::setOrderHorizonCall { horizon: cfg.order_horizon }.abi_encode();
        ex.call("setOrderHorizon", admin, registry, horizon)?;
    }
    set_market_terms(ex, cfg, admin, registry)
}

/// Registers the configured participants, binds their meters and mints their credits.
fn register_participants(
    ex: &mut GenesisExec,
    cfg: &MarketConfig,
    registry: Address,
    token: Address,
) -> Result<(), MarketDeployError> {
    let admin = cfg.admins[0];
    for p in &cfg.participants {
        let role = if p.prosumer { 2u8 } else { 1u8 };
        let register = registry::Registry::registerParticipantCall { account: p.account, role }.abi_encode();
        ex.call(&format!("registerParticipant({})", p.account), admin, registry, register)?;
        if let Some(meter) = p.meter {
            let bind = registry::Registry::bindMeterCall { meter, participant: p.account }.abi_encode();
            ex.call(&format!("bindMeter({meter}, {})", p.account), admin, registry, bind)?;
        }
        if !p.credits.is_zero() {
            let mint = credit_token::CreditToken::mintCall { to: p.account, amount: p.credits }.abi_encode();
            ex.call(&format!("mint({})", p.account), admin, token, mint)?;
        }
    }
    Ok(())
}

/// Mints the grid account's credits and deposits them into the market.
fn fund_grid(
    ex: &mut GenesisExec,
    cfg: &MarketConfig,
    token: Address,
    market: Address,
) -> Result<(), MarketDeployError> {
    if cfg.grid_credits.is_zero() {
        return Ok(());
    }
    let amount = cfg.grid_credits;
    let mint = credit_token::CreditToken::mintCall { to: cfg.grid, amount }.abi_encode();
    ex.call("mint(grid)", cfg.admins[0], token, mint)?;
    let approve = credit_token::CreditToken::approveCall { spender: market, value: amount }.abi_encode();
    ex.call("approve(grid)", cfg.grid, token, approve)?;
    let deposit = energy_market::EnergyMarket::depositCall { amount }.abi_encode();
    ex.call("deposit(grid)", cfg.grid, market, deposit)
}

/// The genesis `alloc` after the set-up calls. Externally owned accounts keep the nonce they had
/// in `original` (the set-up calls are not transactions anyone signed); the keyless deployer is
/// dropped.
fn resulting_alloc(
    state: &WorldState,
    original: &BTreeMap<Address, GenesisAccount>,
) -> BTreeMap<Address, GenesisAccount> {
    let mut alloc = BTreeMap::new();
    for (addr, entry) in &state.accounts {
        if *addr == GENESIS_DEPLOYER {
            continue;
        }
        let code = (entry.info.code_hash != KECCAK_EMPTY)
            .then(|| state.codes.get(&entry.info.code_hash).map(|c| c.original_bytes()))
            .flatten();
        let nonce = match (&code, original.get(addr)) {
            (None, Some(orig)) => orig.nonce,
            (None, None) => None,
            (Some(_), _) => Some(entry.info.nonce),
        };
        let storage: BTreeMap<B256, B256> =
            entry.storage.iter().map(|(k, v)| (B256::from(*k), B256::from(*v))).collect();
        alloc.insert(
            *addr,
            GenesisAccount {
                balance: entry.info.balance,
                nonce: nonce.filter(|n| *n > 0),
                code,
                storage: (!storage.is_empty()).then_some(storage),
                private_key: None,
            },
        );
    }
    alloc
}

/// The power to register for a connection of `watts` on a chain whose slots of `slot_length`
/// seconds stand for 15-minute slots (dev chains and simulations compress the day): the
/// registry bounds orders by power × slot length, so a slot shorter than 900 s gets the power
/// scaled by 900 / `slot_length` and carries what 15 minutes would (saturating at `u32::MAX`).
/// Slots of 900 s or more keep `watts`.
pub fn compressed_capacity_w(watts: u32, slot_length: u32) -> u32 {
    if slot_length >= 900 || slot_length == 0 {
        return watts;
    }
    u32::try_from(u64::from(watts) * 900 / u64::from(slot_length)).unwrap_or(u32::MAX)
}

/// Sets the registry's imbalance premiums and default capacity where they differ from the
/// contract's defaults (before any participant is registered, so all get that capacity).
fn set_market_terms(
    ex: &mut GenesisExec,
    cfg: &MarketConfig,
    admin: Address,
    registry: Address,
) -> Result<(), MarketDeployError> {
    let (short, long) = cfg.imbalance_ticks;
    if (short, long) != (DEFAULT_IMBALANCE_TICKS, DEFAULT_IMBALANCE_TICKS) {
        let call = registry::Registry::setImbalancePricesCall {
            shortPremiumPerKWh: cfg.price_tick * U256::from(short),
            longPenaltyPerKWh: cfg.price_tick * U256::from(long),
        };
        ex.call("setImbalancePrices", admin, registry, call.abi_encode())?;
    }
    let (import_w, export_w) = cfg.default_capacity_w;
    if (import_w, export_w) != (DEFAULT_CAPACITY_W, DEFAULT_CAPACITY_W) {
        let call = registry::Registry::setDefaultCapacityCall { importW: import_w, exportW: export_w };
        ex.call("setDefaultCapacity", admin, registry, call.abi_encode())?;
    }
    Ok(())
}

/// Writes `deployment` with `chain_id` as `contracts.json` to `path`.
pub fn write_contracts_json(
    deployment: &MarketDeployment,
    chain_id: u64,
    path: &std::path::Path,
) -> std::io::Result<()> {
    let file = MarketDeployment { chain_id: Some(chain_id), ..deployment.clone() };
    std::fs::write(path, file.to_json_pretty())
}

/// The `MeterReadings` finality delay for a market: its grace period, so that every slot's energy is final
/// before the slot can be settled, but no more than the contract's window allows
/// (`ceil((delay + 60) / slot_length) + 2 <= 31` open slots, i.e. `delay <= 29 · slot_length − 60`). A shorter
/// delay is safe: slots are then final earlier than settlement opens.
pub fn readings_finality(slot_length: u32, grace_period: u32) -> u32 {
    grace_period.min(slot_length.saturating_mul(29).saturating_sub(60))
}

#[cfg(test)]
mod capacity_tests {
    use super::compressed_capacity_w;

    #[test]
    fn short_slots_carry_what_fifteen_minutes_would() {
        // 25 kW for 15 minutes is 6,250 Wh; a 5 s slot must allow the same.
        assert_eq!(u64::from(compressed_capacity_w(25_000, 5)) * 5 / 3600, 6_250);
        assert_eq!(compressed_capacity_w(25_000, 900), 25_000);
        assert_eq!(compressed_capacity_w(25_000, 3600), 25_000, "longer slots keep the power");
        assert_eq!(compressed_capacity_w(u32::MAX, 5), u32::MAX, "saturates");
    }
}

#[cfg(test)]
mod finality_tests {
    use super::{deploy_market, readings_finality, MarketConfig};
    use crate::chain::builder::{build_genesis, GenesisParams};
    use alloy_primitives::Address;

    #[test]
    fn finality_is_the_grace_period_within_the_readings_window() {
        assert_eq!(readings_finality(900, 300), 300, "the grace period");
        assert_eq!(readings_finality(5, 85), 85, "at the window's bound: 29 · 5 − 60");
        assert_eq!(readings_finality(5, 86), 85, "over it: capped");
        assert_eq!(readings_finality(5, 1), 1, "short grace kept");
        assert_eq!(readings_finality(u32::MAX, 7), 7, "no overflow");
    }

    /// A market whose grace period exceeds the readings' window still deploys (the delay is capped, so
    /// the constructor's `InvalidFinalityDelay` never fires at genesis).
    #[test]
    fn genesis_deploys_with_a_grace_period_beyond_the_window() {
        let admin = Address::repeat_byte(7);
        let mut genesis = build_genesis(&GenesisParams { signers: vec![admin], ..Default::default() });
        let mut cfg = MarketConfig::new(vec![admin], admin, 1_800_000_000, 5);
        cfg.grace_period = 3_600;
        deploy_market(&mut genesis, &cfg).expect("deploys");
    }
}
