//! Setting up a run: the households and their day, the dev chain, registration and funding, the
//! broker, the bridge, the simulated meters, and the balances the day starts from.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Bytes, B256, U256};
use alloy_signer_local::PrivateKeySigner;
use anyhow::{bail, Context};
use p2pe_bindings::credit_token::CreditToken;
use p2pe_bindings::energy_market::EnergyMarket;
use p2pe_bindings::registry::Registry;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::model::{Hh, HhSlot, MarketAccount, MeterMessages, TxStats, CREDIT};
use super::send::{rpc_err, send_and_wait};
use super::{telemetry_offsets, SETTLER_INDEX};
use crate::battery::Battery;
use crate::bridge::{Bridge, BridgeMeter, BridgeSetup};
use crate::broker::{parse_mqtt_url, EmbeddedBroker};
use crate::chain::{Account, Rpc};
use crate::config::SimConfig;
use crate::household::{
    generate, DayTrace, Environment, HouseholdSpec, MeterFormat, Mix, RampParams, Strategy, SLOTS_PER_DAY,
    SLOT_MINUTES,
};
use crate::island::{AssetKind, Island, IslandSpec};
use crate::keys::{
    write_keystore, KeyDeriver, DEV_MNEMONIC, HOUSEHOLD_INDEX_BASE, MAX_HOUSEHOLDS, METER_INDEX_BASE,
};
use crate::market::{limit_w, u128_of, Market, MicrogridParams, NO_CONNECTION_LIMIT};
use crate::meters::{MeterFleet, SimMeter, Telemetry};
use crate::node::{DevChain, DevChainConfig};
use crate::pcc::island_band;
use crate::solar::PvSystem;

/// Gas limit of the set-up transactions.
const GAS_SETUP: u64 = 8_000_000;

/// The meters' schedule of messages: (unix time, one reading per meter) per message.
pub(crate) type Schedule = Vec<(f64, Vec<Telemetry>)>;

/// Everything the day starts with.
pub(crate) struct Setup {
    /// The environment of the day.
    pub env: Environment,
    /// The households.
    pub hh: Vec<Hh>,
    /// The dev chain.
    pub chain: DevChain,
    /// The market contracts.
    pub market: Arc<Market>,
    /// Chain id.
    pub chain_id: u64,
    /// The operator (registers, opens and clears slots).
    pub operator: Account,
    /// The settler.
    pub settler: Account,
    /// Set-up transactions.
    pub tx: TxStats,
    /// The bridge process.
    pub bridge: Bridge,
    /// The embedded broker, if one runs (kept alive with the run).
    pub embedded: Option<EmbeddedBroker>,
    /// Where the day's meter schedules go.
    pub telemetry: mpsc::Sender<Schedule>,
    /// The simulated meters' task (none with real meters).
    pub fleet: Option<JoinHandle<MeterMessages>>,
    /// The head block when the day starts.
    pub setup_block: u64,
    /// The grid's market account at the start.
    pub grid_start: MarketAccount,
    /// Credits held by the market contract at the start.
    pub tokens_start: u128,
    /// The microgrid's parameters in the registry, as the operator set them.
    pub microgrid: MicrogridParams,
    /// Islanded: the community's assets (their physics; with simulated meters each is also a
    /// member of the market, after the households in `hh`).
    pub island: Option<Island>,
}

/// `--out` made absolute against the working directory (an absolute one is kept as given).
fn absolute_out(out: &Path) -> anyhow::Result<std::path::PathBuf> {
    std::path::absolute(out).with_context(|| format!("cannot resolve the output folder {}", out.display()))
}

/// The households: the lab's (`--lab`) or a generated mix, between 1 and [`MAX_HOUSEHOLDS`].
fn household_specs(cfg: &SimConfig) -> anyhow::Result<Vec<HouseholdSpec>> {
    let specs = match &cfg.lab {
        Some(lab) => lab.specs(cfg.location.lat_deg),
        None => generate(&Mix {
            households: cfg.households,
            pv_share: cfg.pv_share,
            battery_share: cfg.battery_share,
            battery_strategy: cfg.battery_strategy,
            seed: cfg.seed,
            lat_deg: cfg.location.lat_deg,
        }),
    };
    if specs.is_empty() || specs.len() > MAX_HOUSEHOLDS {
        bail!("between 1 and {MAX_HOUSEHOLDS} households, not {}", specs.len());
    }
    Ok(specs)
}

/// Checks the settings, makes `cfg.out` absolute and sets everything up.
pub(crate) async fn set_up(cfg: &mut SimConfig) -> anyhow::Result<Setup> {
    // Every path derived from `--out` (node data, keystores, bridge configuration, reports) is made
    // absolute once, here, so that no child process reads it relative to another folder.
    cfg.out = absolute_out(&cfg.out)?;
    let logs = cfg.out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    check_settings(cfg)?;
    let cfg = &*cfg;

    // Households and their day.
    let specs = household_specs(cfg)?;
    let env = Environment::new(cfg.date, cfg.utc_offset_secs, cfg.location, cfg.cloudiness, cfg.seed);
    let traces: Vec<DayTrace> = specs.iter().map(|h| DayTrace::simulate(h, &env, cfg.seed)).collect();

    let deriver = KeyDeriver::new(DEV_MNEMONIC)?;
    let assets = match (&cfg.islanded, &cfg.lab) {
        (Some(spec), None) => AssetKind::present(spec).len(),
        _ => 0,
    };
    let chain = start_chain(cfg, &deriver, specs.len() + assets, &logs)?;
    let rpc = Arc::new(Rpc::new(&chain.url)?);
    let contracts = chain.contracts.clone();
    let chain_id = rpc.chain_id().await.map_err(rpc_err)?;
    if !cfg.quiet {
        eprintln!("dev chain up at {} (chain id {chain_id}, slot {} s)", chain.url, contracts.slot_length);
        eprintln!(
            "trading dApp: {}/ (MetaMask: RPC URL {}, chain id {chain_id}; dev accounts 1-9 of the test \
             mnemonic are registered participants)",
            chain.url, chain.url
        );
    }
    let market = Arc::new(Market { rpc: rpc.clone(), c: contracts.clone() });

    // Keys.
    let operator_key = deriver.key(0)?;
    let mut operator =
        Account::new(operator_key.clone(), rpc.nonce(operator_key.address()).await.map_err(rpc_err)?);
    let settler_key = deriver.key(SETTLER_INDEX)?;
    let settler = Account::new(settler_key.clone(), rpc.nonce(settler_key.address()).await.map_err(rpc_err)?);
    let (mut hh, mut meter_keys) = households(cfg, &deriver, specs, traces)?;
    let (island, plant) = match cfg.islanded {
        Some(spec) => {
            let (i, p) = island_assets(cfg, &env, spec);
            (Some(i), p)
        }
        None => (None, None),
    };
    if let (Some(i), None) = (&island, &cfg.lab) {
        let (assets, keys) = asset_members(cfg, &deriver, &env, i, plant, hh.len())?;
        hh.extend(assets);
        meter_keys.extend(keys);
    }
    let mut tx = register(cfg, &market, chain_id, &mut operator, &hh).await?;
    let microgrid = configure_microgrid(cfg, &market, chain_id, &mut operator, &mut tx).await?;

    let (broker_url, embedded) = match (&cfg.lab, &cfg.broker) {
        (Some(lab), _) => (lab.broker.url.clone(), None),
        (None, Some(url)) => (url.clone(), None),
        (None, None) => {
            let b = EmbeddedBroker::start(2 * hh.len() + 64)?; // each meter, and the bridge's session per meter
            (b.url(), Some(b))
        }
    };
    let (bridge, broker_user) = start_bridge(cfg, &chain, chain_id, &broker_url, &hh, &meter_keys).await?;
    let (telemetry, fleet) = start_meters(cfg, &broker_url, broker_user, &hh).await?;

    // Balances at the start of the day.
    let (setup_block, _) = rpc.head().await.map_err(rpc_err)?;
    let balances = balances_of(&market, &hh).await?;
    for (h, b) in hh.iter_mut().zip(balances) {
        h.balance_start = b;
    }
    let grid_start = account_of(&market, contracts.grid).await?;
    let tokens_start = market_tokens(&market).await?;
    for h in hh.iter_mut() {
        h.account.nonce = rpc.nonce(h.account.address()).await.map_err(rpc_err)?;
    }
    Ok(Setup {
        env,
        hh,
        chain,
        market,
        chain_id,
        operator,
        settler,
        tx,
        bridge,
        embedded,
        telemetry,
        fleet,
        setup_block,
        grid_start,
        tokens_start,
        microgrid,
        island,
    })
}

/// The islanded community's assets; the PV plant faces the equator at 30° under the day's sky.
fn island_assets(cfg: &SimConfig, env: &Environment, spec: IslandSpec) -> (Island, Option<PvSystem>) {
    let plant = (spec.plant_kwp > 0.0).then(|| PvSystem::new(spec.plant_kwp, 30.0, plant_facing(cfg)));
    let plant_w = (0..24 * 60).map(|m| plant.as_ref().map_or(0.0, |p| env.pv_w(p, m, true))).collect();
    (Island::new(spec, plant_w), plant)
}

fn plant_facing(cfg: &SimConfig) -> f64 {
    if cfg.location.lat_deg >= 0.0 {
        180.0
    } else {
        0.0
    }
}

/// The community's assets as members of the market (simulated meters only), numbered after the
/// `n` households: each has an account and a meter like a household; the plant's day is its PV,
/// the others have none (their physics is the island's dispatch).
fn asset_members(
    cfg: &SimConfig,
    deriver: &KeyDeriver,
    env: &Environment,
    island: &Island,
    plant: Option<PvSystem>,
    n: usize,
) -> anyhow::Result<(Vec<Hh>, Vec<PrivateKeySigner>)> {
    let mut members = Vec::new();
    let mut keys = Vec::new();
    for (j, kind) in AssetKind::present(&island.spec).into_iter().enumerate() {
        let i = n + j;
        let pv = if kind == AssetKind::Plant { plant } else { None };
        let spec = HouseholdSpec {
            index: i,
            id: kind.name().to_string(),
            load: crate::load::LoadModel {
                annual_kwh: 0.0,
                shift_min: 0.0,
                noise_sigma: 0.0,
                event_share: 0.0,
            },
            pv,
            battery: None,
            initial_soc: 0.0,
            meter_format: MeterFormat::Json,
            strategy: Strategy::Ramp,
            ramp: RampParams { buy_initial: 0.0, buy_final: 0.0, sell_initial: 0.0, sell_final: 0.0 },
        };
        let clear = |p: &PvSystem, s: usize| {
            (s * SLOT_MINUTES..(s + 1) * SLOT_MINUTES).map(|m| env.pv_w(p, m, false)).sum::<f64>() / 60.0
        };
        let trace = DayTrace {
            pv_w: if pv.is_some() { island.plant_w.clone() } else { vec![0.0; 24 * 60] },
            load_w: vec![0.0; 24 * 60],
            pv_clear_wh: (0..SLOTS_PER_DAY).map(|s| pv.as_ref().map_or(0.0, |p| clear(p, s))).collect(),
            load_expected_wh: vec![0.0; SLOTS_PER_DAY],
        };
        let key = deriver.key(METER_INDEX_BASE + i as u32)?;
        let battery = (kind == AssetKind::Storage).then_some(island.battery);
        members.push(Hh {
            spec,
            asset: Some(kind),
            trace,
            account: Account::new(deriver.key(HOUSEHOLD_INDEX_BASE + i as u32)?, 0),
            meter: key.address(),
            battery,
            base_battery: battery,
            meter_import: 0.0,
            meter_export: 0.0,
            base_import: 0.0,
            base_export: 0.0,
            clear_sky_index: None,
            slots: vec![HhSlot::default(); cfg.slots],
            balance_start: MarketAccount::default(),
            balance_end: MarketAccount::default(),
        });
        keys.push(key);
    }
    Ok((members, keys))
}

/// The registry's microgrid parameters for `cfg`: islanded, the band between the floor (feed-in)
/// and the highest cap the registry's levels reach ([`island_band`]); with PCC limits, the
/// connection's rating in watts. The operator sets them (one transaction) and reads them back: the
/// physics runs with what the registry holds, and the run refuses to start if it differs.
async fn configure_microgrid(
    cfg: &SimConfig,
    market: &Market,
    chain_id: u64,
    operator: &mut Account,
    tx: &mut TxStats,
) -> anyhow::Result<MicrogridParams> {
    let registry = market.c.registry;
    let mut want = MicrogridParams {
        import_limit_w: NO_CONNECTION_LIMIT,
        export_limit_w: NO_CONNECTION_LIMIT,
        ..Default::default()
    };
    let mut calls = Vec::new();
    if cfg.islanded.is_some() {
        let defaults = market.prices(0).await.map_err(rpc_err)?;
        let (mut voll, floor) = island_band(&defaults);
        if let Some(v) = cfg.voll {
            voll = (v * 1000.0).round() as u128 * CREDIT / 1000;
        }
        (want.islanded, want.floor, want.voll) = (true, floor, voll);
        calls.push(operator.sign_call(
            chain_id,
            registry,
            &Registry::setIslandedCall { floorPerKWh: U256::from(floor), vollPerKWh: U256::from(voll) },
            GAS_SETUP,
        ));
        if defaults.tick > CREDIT / 1000 {
            // A coarse tick: imbalance premiums of about 0.05 credits/kWh, as at the fine one.
            let ticks = (CREDIT / 20).div_ceil(defaults.tick);
            let premium = U256::from(ticks * defaults.tick);
            calls.push(operator.sign_call(
                chain_id,
                registry,
                &Registry::setImbalancePricesCall { shortPremiumPerKWh: premium, longPenaltyPerKWh: premium },
                GAS_SETUP,
            ));
        }
    } else if cfg.pcc.is_limited() {
        (want.import_limit_w, want.export_limit_w) = (limit_w(cfg.pcc.import_kw), limit_w(cfg.pcc.export_kw));
        calls.push(operator.sign_call(
            chain_id,
            registry,
            &Registry::setConnectionLimitsCall { importW: want.import_limit_w, exportW: want.export_limit_w },
            GAS_SETUP,
        ));
    }
    if !calls.is_empty() {
        tx.setup += calls.len() as u64;
        let receipts = send_and_wait(&market.rpc, &calls, Duration::from_secs(30), tx, "setup").await?;
        if !receipts.iter().all(|r| r.as_ref().is_some_and(|r| r.success)) {
            bail!("setting the microgrid's parameters in the registry failed: {:?}", tx.failures);
        }
    }
    let have = market.microgrid_params().await.map_err(rpc_err)?;
    if have != want {
        bail!("the registry holds the microgrid parameters {have:?}, not the {want:?} the run needs");
    }
    Ok(have)
}

/// Refuses settings the market or the day cannot hold.
fn check_settings(cfg: &SimConfig) -> anyhow::Result<()> {
    if cfg.slot_seconds < 5 {
        bail!("--slot-seconds must be at least 5 (the contracts' minimum slot length)");
    }
    if cfg.first_slot + cfg.slots > crate::household::SLOTS_PER_DAY || cfg.slots == 0 {
        bail!(
            "--first-slot {} + --slots {} must stay within the 96 slots of a day",
            cfg.first_slot,
            cfg.slots
        );
    }
    Ok(())
}

/// Starts the dev chain; the settler and every meter are priority senders in its pool.
fn start_chain(cfg: &SimConfig, deriver: &KeyDeriver, n: usize, logs: &Path) -> anyhow::Result<DevChain> {
    let mut priority = vec![deriver.key(SETTLER_INDEX)?.address()];
    for i in 0..n {
        priority.push(match &cfg.lab {
            Some(lab) => lab.households[i].meter_address,
            None => deriver.key(METER_INDEX_BASE + i as u32)?.address(),
        });
    }
    DevChain::start(&DevChainConfig {
        slot_length: cfg.slot_seconds,
        gate_closure: cfg.gate_closure,
        grace_period: cfg.grace_period,
        datadir: cfg.keep_chain.then(|| cfg.out.join("chain")),
        contracts_out: cfg.out.join("contracts.json"),
        log: logs.join("node.log"),
        rpc_port: cfg.rpc_port,
        priority,
        price_tick_milli: cfg.price_tick_milli()?,
    })
}

/// The households at run time, with their accounts, meters (and the simulated meters' keys) and
/// the meters' initial counters.
fn households(
    cfg: &SimConfig,
    deriver: &KeyDeriver,
    specs: Vec<HouseholdSpec>,
    traces: Vec<DayTrace>,
) -> anyhow::Result<(Vec<Hh>, Vec<PrivateKeySigner>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x3E7E);
    let mut hh: Vec<Hh> = Vec::with_capacity(specs.len());
    let mut meter_keys = Vec::new();
    for (i, (spec, trace)) in specs.into_iter().zip(traces).enumerate() {
        let account = Account::new(deriver.key(HOUSEHOLD_INDEX_BASE + i as u32)?, 0);
        let meter = match &cfg.lab {
            Some(lab) => lab.households[i].meter_address,
            None => {
                let k = deriver.key(METER_INDEX_BASE + i as u32)?;
                let a = k.address();
                meter_keys.push(k);
                a
            }
        };
        let battery = spec.battery.map(|b| Battery::new(b, spec.initial_soc));
        let imp0 = (rng.gen_range(2_000.0..30_000.0f64) * 1000.0).floor();
        let exp0 =
            if spec.pv.is_some() { (rng.gen_range(1_000.0..15_000.0f64) * 1000.0).floor() } else { 0.0 };
        hh.push(Hh {
            spec,
            trace,
            account,
            meter,
            battery,
            base_battery: battery,
            meter_import: imp0,
            meter_export: exp0,
            base_import: imp0,
            base_export: exp0,
            clear_sky_index: None,
            slots: vec![HhSlot::default(); cfg.slots],
            balance_start: MarketAccount::default(),
            balance_end: MarketAccount::default(),
            asset: None,
        });
    }
    Ok((hh, meter_keys))
}

/// Registers, binds and funds the households (operator, one batch of transactions).
async fn register(
    cfg: &SimConfig,
    market: &Market,
    chain_id: u64,
    operator: &mut Account,
    hh: &[Hh],
) -> anyhow::Result<TxStats> {
    let contracts = &market.c;
    let mut tx = TxStats::default();
    let deposit = cfg.deposit_credits as u128 * CREDIT;
    let total = deposit * hh.len() as u128;
    let mut setup: Vec<(B256, Bytes)> = Vec::new();
    setup.push(operator.sign_call(
        chain_id,
        contracts.token,
        &CreditToken::mintCall { to: operator.address(), amount: U256::from(total) },
        GAS_SETUP,
    ));
    setup.push(operator.sign_call(
        chain_id,
        contracts.token,
        &CreditToken::approveCall { spender: contracts.market, value: U256::from(total) },
        GAS_SETUP,
    ));
    for h in hh {
        let role = if h.sells() { 2u8 } else { 1u8 };
        let account = h.account.address();
        setup.push(operator.sign_call(
            chain_id,
            contracts.registry,
            &Registry::registerParticipantCall { account, role },
            GAS_SETUP,
        ));
        if let (Some(kind), Some(spec)) = (h.asset, &cfg.islanded) {
            // An asset's orders may reach its rating (a household's connection is 25 kW), scaled
            // as the dev chain scales every connection for slots shorter than 15 minutes.
            let w = (kind.rated_w(spec) * 900.0 / f64::from(cfg.slot_seconds.min(900))).ceil();
            let w = w.min(u32::MAX as f64) as u32;
            setup.push(operator.sign_call(
                chain_id,
                contracts.registry,
                &Registry::setCapacityCall { account, importW: w, exportW: w },
                GAS_SETUP,
            ));
        }
        setup.push(operator.sign_call(
            chain_id,
            contracts.registry,
            &Registry::bindMeterCall { meter: h.meter, participant: account },
            GAS_SETUP,
        ));
        setup.push(operator.sign_call(
            chain_id,
            contracts.market,
            &EnergyMarket::depositForCall { account, amount: U256::from(deposit) },
            GAS_SETUP,
        ));
    }
    tx.setup += setup.len() as u64;
    let receipts = send_and_wait(&market.rpc, &setup, Duration::from_secs(180), &mut tx, "setup").await?;
    if receipts.iter().any(|r| !r.as_ref().is_some_and(|r| r.success)) {
        bail!("registering the households failed: {:?}", tx.failures);
    }
    if !cfg.quiet {
        eprintln!("registered {} households ({} setup transactions)", hh.len(), setup.len());
    }
    Ok(tx)
}

/// The broker's user name and password, if any.
type BrokerLogin = (Option<String>, Option<String>);

/// Writes the bridge's configuration and starts it; returns it with the broker login the meters use.
async fn start_bridge(
    cfg: &SimConfig,
    chain: &DevChain,
    chain_id: u64,
    broker_url: &str,
    hh: &[Hh],
    meter_keys: &[PrivateKeySigner],
) -> anyhow::Result<(Bridge, BrokerLogin)> {
    let logs = cfg.out.join("logs");
    let bridge_dir = cfg.out.join("bridge");
    if bridge_dir.exists() {
        std::fs::remove_dir_all(&bridge_dir)
            .with_context(|| format!("cannot clear {}", bridge_dir.display()))?;
    }
    std::fs::create_dir_all(bridge_dir.join("keys"))?;
    let (meters, password_file, broker_user, broker_password) = match &cfg.lab {
        Some(lab) => {
            let pw = match &lab.broker.password_file {
                Some(p) => {
                    Some(std::fs::read_to_string(lab.path(p))?.lines().next().unwrap_or("").to_string())
                }
                None => None,
            };
            (lab_bridge_meters(cfg, hh), lab.path(&lab.keys.password_file), lab.broker.username.clone(), pw)
        }
        None => {
            let pw = bridge_dir.join("password.txt");
            p2pe_keystore::write_secret_file(&pw, b"p2pe-sim\n")?;
            let meters = sim_bridge_meters(cfg, &chain.contracts, &bridge_dir, hh, meter_keys)?;
            (meters, pw, cfg.broker_user.clone(), cfg.broker_password.clone())
        }
    };
    let setup_cfg = BridgeSetup {
        broker_url: broker_url.to_string(),
        broker_user: broker_user.clone(),
        broker_password: broker_password.clone(),
        rpc_url: chain.url.clone(),
        contracts_file: std::fs::canonicalize(cfg.out.join("contracts.json"))?,
        chain_id,
        password_file: std::fs::canonicalize(&password_file)
            .with_context(|| format!("{}", password_file.display()))?,
        meters,
    };
    let bridge =
        Bridge::start(&setup_cfg, &std::fs::canonicalize(&bridge_dir)?, &logs.join("bridge.log")).await?;
    if !cfg.quiet {
        eprintln!("bridge up ({} meters, broker {broker_url}); health {}", hh.len(), bridge.http);
    }
    Ok((bridge, (broker_user, broker_password)))
}

/// The lab's meters as the bridge sees them (real meters in real time: the bridge's default rise
/// limit unless the lab file gives a rated current).
fn lab_bridge_meters(cfg: &SimConfig, hh: &[Hh]) -> Vec<BridgeMeter> {
    let Some(lab) = &cfg.lab else { return Vec::new() };
    lab.households
        .iter()
        .zip(hh)
        .map(|(l, h)| BridgeMeter {
            id: l.id.clone(),
            address: l.meter_address,
            keystore: lab.path(&l.meter_keystore),
            format: h.spec.meter_format,
            topic: l.meter_topic.clone(),
            utc_offset_secs: l
                .utc_offset
                .as_deref()
                .map(crate::lab::parse_offset)
                .transpose()
                .unwrap_or(None)
                .unwrap_or(0),
            rated_current_a: l.meter_rated_current_a,
        })
        .collect()
}

/// The simulated meters as the bridge sees them, with their keystores written into `bridge_dir`.
fn sim_bridge_meters(
    cfg: &SimConfig,
    contracts: &crate::node::Contracts,
    bridge_dir: &Path,
    hh: &[Hh],
    meter_keys: &[PrivateKeySigner],
) -> anyhow::Result<Vec<BridgeMeter>> {
    let mut meters = Vec::new();
    for (h, k) in hh.iter().zip(meter_keys) {
        // A meter's plausible power is 3 × 230 V × its rated current (63 A: 43.5 kW); an asset
        // rated above that has a larger current transformer.
        let rated_w = match (h.asset, &cfg.islanded) {
            (Some(kind), Some(spec)) => kind.rated_w(spec),
            _ => 0.0,
        };
        let scale = (rated_w / (3.0 * 230.0 * 63.0)).max(1.0);
        let ks = bridge_dir.join("keys").join(format!("{}.json", h.spec.id));
        write_keystore(&ks, k, "p2pe-sim")?;
        let m = SimMeter::new(&h.spec.id, h.spec.meter_format, cfg.utc_offset_secs);
        meters.push(BridgeMeter {
            id: h.spec.id.clone(),
            address: h.meter,
            keystore: ks,
            format: h.spec.meter_format,
            topic: m.topic.clone(),
            utc_offset_secs: cfg.utc_offset_secs,
            rated_current_a: Some(
                (crate::bridge::simulated_rated_current_a(
                    &telemetry_offsets(cfg.telemetry_seconds, contracts.slot_length),
                    contracts.slot_length,
                ) as f64
                    * scale)
                    .ceil() as u64,
            ),
        });
    }
    Ok(meters)
}

/// Connects the simulated meters to the broker in a task that publishes the schedules it is sent
/// (with real meters, nothing: the schedules are dropped).
async fn start_meters(
    cfg: &SimConfig,
    broker_url: &str,
    login: BrokerLogin,
    hh: &[Hh],
) -> anyhow::Result<(mpsc::Sender<Schedule>, Option<JoinHandle<MeterMessages>>)> {
    let (tel_tx, mut tel_rx) = mpsc::channel::<Schedule>(8);
    if cfg.lab.is_some() {
        drop(tel_rx);
        return Ok((tel_tx, None));
    }
    let (host, port) = parse_mqtt_url(broker_url)?;
    let meters: Vec<SimMeter> =
        hh.iter().map(|h| SimMeter::new(&h.spec.id, h.spec.meter_format, cfg.utc_offset_secs)).collect();
    let user = login.0.zip(login.1);
    let mut fleet =
        MeterFleet::connect(meters, &host, port, user.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))).await;
    let task = tokio::spawn(async move {
        while let Some(schedule) = tel_rx.recv().await {
            fleet.publish_schedule(schedule).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        fleet.disconnect().await;
        MeterMessages { published: fleet.published, failed: fleet.failed }
    });
    Ok((tel_tx, Some(task)))
}

/// An account in the market contract.
pub(crate) async fn account_of(
    market: &Market,
    a: alloy_primitives::Address,
) -> anyhow::Result<MarketAccount> {
    let r = market
        .rpc
        .view(market.c.market, &EnergyMarket::accountOfCall { account: a })
        .await
        .map_err(rpc_err)?;
    Ok(MarketAccount { free: u128_of(r.free), debt: u128_of(r.debt) })
}

/// Every household's account in the market contract.
pub(crate) async fn balances_of(market: &Market, hh: &[Hh]) -> anyhow::Result<Vec<MarketAccount>> {
    let calls: Vec<(alloy_primitives::Address, EnergyMarket::accountOfCall)> = hh
        .iter()
        .map(|h| (market.c.market, EnergyMarket::accountOfCall { account: h.account.address() }))
        .collect();
    market
        .rpc
        .views(&calls)
        .await
        .map_err(rpc_err)?
        .into_iter()
        .map(|r| r.map(|r| MarketAccount { free: u128_of(r.free), debt: u128_of(r.debt) }).map_err(rpc_err))
        .collect()
}

/// Credits held by the market contract.
pub(crate) async fn market_tokens(market: &Market) -> anyhow::Result<u128> {
    Ok(u128_of(
        market
            .rpc
            .view(market.c.token, &CreditToken::balanceOfCall { account: market.c.market })
            .await
            .map_err(rpc_err)?,
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::absolute_out;

    #[test]
    fn a_relative_or_nested_out_is_under_the_working_directory_and_an_absolute_one_is_kept() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute_out(Path::new("p2pe-sim-out")).unwrap(), cwd.join("p2pe-sim-out"));
        assert_eq!(absolute_out(Path::new("day20")).unwrap(), cwd.join("day20"));
        let nested = absolute_out(Path::new("./a/b")).unwrap();
        assert!(
            nested.is_absolute() && nested.starts_with(&cwd) && nested.ends_with("a/b"),
            "{}",
            nested.display()
        );
        let abs = std::env::temp_dir().join("abs-out");
        assert_eq!(absolute_out(&abs).unwrap(), abs);
        assert!(
            absolute_out(Path::new("")).is_err(),
            "an empty --out is an error, not the working directory"
        );
    }
}
