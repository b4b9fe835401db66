//! The run: bring everything up, trade a day slot by slot in wall-clock time, then read everything
//! back from the chain.
//!
//! A day slot `i` is chain slot `c0 + i`, with slot `c` starting at `start(c)` and its gate closing
//! `G` seconds earlier. Each cycle begins at the gate closure of the previous slot, `start(c − 1) − G`:
//!
//! 1. **Close slot c − 1**: the keeper (operator key) calls `clear(c − 1)`; the slot's orders are read
//!    back from `OrderPlaced` / `OrderCancelled`; each household's fills come from that book;
//!    the households' physics of the slot run with their batteries steering towards the traded
//!    position; the meters' readings for the slot are scheduled (the last one a second before the
//!    slot ends); a settlement job is queued.
//! 2. **Order rounds for slot c** until `start(c) − G − 1.4 s`: round 0 places every agent's bid or
//!    ask at the first price of its ramp; in each later round every agent reads the public book
//!    (`slotInfo` + `levelVolumes`) and, if its order would not trade against it, cancels and
//!    re-places it further along its ramp.
//!
//! Settlement runs in its own task with its own key (mnemonic index [`SETTLER_INDEX`]): from the
//! slot's end plus the grace period, as soon as every trading household's meter has a reading at
//! the slot's last telemetry time on chain (real meters: a reading at or after the slot's end), it
//! calls `settle(slot, participants)` in parts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_sol_types::SolCall;
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use p2pe_bindings::credit_token::CreditToken;
use p2pe_bindings::energy_market::EnergyMarket;
use p2pe_bindings::meter_readings::MeterReadings;
use p2pe_bindings::registry::Registry;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::mpsc;

use crate::agent::{plan, price_alpha, Knowledge, Plan, PriceRule};
use crate::battery::Battery;
use crate::bridge::{Bridge, BridgeMeter, BridgeSetup};
use crate::broker::{parse_mqtt_url, EmbeddedBroker};
use crate::chain::{Account, Receipt, Rpc, RpcError};
use crate::clearing::{LevelClearing, Side};
use crate::clock::{now_unix, sleep_until_unix};
use crate::config::SimConfig;
use crate::household::{
    generate, step_slot, DayTrace, Environment, HouseholdSpec, Mix, SlotPhysics, SLOT_MINUTES,
};
use crate::keys::{
    write_keystore, KeyDeriver, DEV_MNEMONIC, HOUSEHOLD_INDEX_BASE, MAX_HOUSEHOLDS, METER_INDEX_BASE,
};
use crate::market::{credits_per_kwh, u128_of, ClearedEvent, Market, Prices, SlotEvents};
use crate::meters::{register, MeterFleet, SimMeter, Telemetry};
use crate::node::{DevChain, DevChainConfig};

/// Mnemonic index of the key that settles slots (any account may settle).
pub const SETTLER_INDEX: u32 = 98;
/// Seconds before gate closure by which every order must have been sent: two blocks before the
/// gate, so that a block that takes long to seal does not push the orders past it (`GateClosed`).
const SEND_MARGIN_S: f64 = 2.3;
/// Time a round needs between its scheduled start and its sends (receipts of the previous round,
/// the public book, signing).
const ROUND_BUDGET_S: f64 = 0.7;
/// Shortest spacing of two order rounds (a block and a receipt poll).
const MIN_ROUND_SPACING_S: f64 = 1.1;
/// Gas limits (fees are zero, so generous limits cost nothing).
const GAS_ORDER: u64 = 600_000;
const GAS_CANCEL: u64 = 300_000;
const GAS_CLEAR: u64 = 8_000_000;
const GAS_OPEN: u64 = 8_000_000;
const GAS_SETUP: u64 = 8_000_000;
const GAS_SETTLE_BASE: u64 = 300_000;
const GAS_SETTLE_EACH: u64 = 80_000;
/// Participants per `settle` transaction.
const SETTLE_CHUNK: usize = 150;
/// One credit in base units.
pub const CREDIT: u128 = 1_000_000_000_000_000_000;

/// A household at run time.
pub struct Hh {
    /// Equipment and agent settings.
    pub spec: HouseholdSpec,
    /// Its exogenous day.
    pub trace: DayTrace,
    /// Trading account.
    pub account: Account,
    /// Meter address.
    pub meter: Address,
    /// Battery in the platform run.
    pub battery: Option<Battery>,
    /// Battery in the grid-only baseline.
    pub base_battery: Option<Battery>,
    /// True cumulative meter energies (platform), Wh.
    pub meter_import: f64,
    /// See `meter_import`.
    pub meter_export: f64,
    /// True cumulative energies of the baseline's meter, Wh.
    pub base_import: f64,
    /// See `base_import`.
    pub base_export: f64,
    /// Last measured clear-sky index.
    pub clear_sky_index: Option<f64>,
    /// Per simulated slot.
    pub slots: Vec<HhSlot>,
    /// Free balance and debt in the market at the start of the day.
    pub balance_start: (u128, u128),
    /// Free balance and debt at the end.
    pub balance_end: (u128, u128),
}

/// An order standing during the rounds: (price level, Wh, price rule).
pub type LiveOrder = (u32, u32, PriceRule);

/// One household in one slot.
#[derive(Debug, Clone, Default)]
pub struct HhSlot {
    /// Physics on the platform (simulated meters only).
    pub phys: Option<SlotPhysics>,
    /// Physics of the grid-only baseline.
    pub base: Option<SlotPhysics>,
    /// Platform meter registers (import, export) at the slot's start and end.
    pub reg_start: (u64, u64),
    /// See `reg_start`.
    pub reg_end: (u64, u64),
    /// Baseline register deltas (import, export).
    pub base_delta: (u64, u64),
    /// State of charge at the slot start, Wh.
    pub soc_start: f64,
    /// The agent's plan.
    pub plan: Plan,
    /// Fills (bought, sold) of the slot's final public book (what settlement will give, within 1 Wh).
    pub fills: (u64, u64),
    /// Whether it had an order at gate closure.
    pub position: bool,
    /// Live orders during the rounds: (level, Wh, rule) per side.
    pub live: [Option<LiveOrder>; 2],
}

/// Transactions the simulator sent, by kind.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TxStats {
    /// Registration and funding.
    pub setup: u64,
    /// Orders placed.
    pub orders: u64,
    /// Orders cancelled (ramp updates).
    pub cancels: u64,
    /// `clear` calls.
    pub clears: u64,
    /// `openSlot` calls.
    pub opens: u64,
    /// `settle` calls.
    pub settles: u64,
    /// Transactions that reverted, were refused or were not mined in time, by kind (`order`,
    /// `cancel`, `clear`, `settle`, `setup`): how many, and the first few with their reasons.
    pub failures: std::collections::BTreeMap<String, FailureKind>,
    /// Number of failed transactions.
    pub failed: u64,
}

/// Failed transactions of one kind.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FailureKind {
    /// How many.
    pub count: u64,
    /// The first few, with reasons.
    pub examples: Vec<String>,
}

/// One simulated slot at run time.
#[derive(Debug, Clone, Default)]
pub struct SlotRec {
    /// Day slot index (0 = 00:00).
    pub day_slot: usize,
    /// Chain slot.
    pub chain_slot: u64,
    /// Grid prices.
    pub prices: Option<Prices>,
    /// Order rounds run.
    pub rounds: usize,
    /// The clearing (from the `SlotCleared` event).
    pub cleared: Option<ClearedEvent>,
    /// Events read back.
    pub events: SlotEvents,
    /// Unix time of the last meter reading of the slot.
    pub last_reading_ts: u64,
    /// Settlement outcome.
    pub settle: Option<SettleOutcome>,
}

/// What settling a slot took.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SettleOutcome {
    /// Transactions.
    pub txs: u64,
    /// Participants settled.
    pub settled: usize,
    /// Meters whose reading had not arrived when the simulator gave up waiting.
    pub missing_readings: usize,
    /// Seconds from the slot's end to the settlement transaction.
    pub delay_s: f64,
    /// Errors.
    pub errors: Vec<String>,
}

struct SettleJob {
    index: usize,
    chain_slot: u64,
    /// Every household's account and meter (those with orders in the slot are settled).
    households: Vec<(Address, Address)>,
    min_reading_ts: u64,
    slot_end: f64,
    not_before: f64,
    give_up_at: f64,
}

struct ClearJob {
    index: usize,
    chain_slot: u64,
    /// A later slot to open (`openSlot`) once this one is cleared.
    open: Option<u64>,
}

/// What clearing a slot took.
#[derive(Debug, Clone, Default)]
struct ClearOutcome {
    txs: u64,
    opens: u64,
    open_errors: Vec<String>,
    cleared: bool,
    empty: bool,
    errors: Vec<String>,
}

/// Everything a finished run knows; the input of reports and checks.
pub struct RunData {
    /// The configuration.
    pub cfg: SimConfig,
    /// The environment of the day.
    pub env: Environment,
    /// Households.
    pub hh: Vec<Hh>,
    /// Slots.
    pub slots: Vec<SlotRec>,
    /// Grid account.
    pub grid: Address,
    /// Grid balance at start and end (free, debt).
    pub grid_balance: ((u128, u128), (u128, u128)),
    /// Credits held by the market contract at start and end.
    pub market_tokens: (u128, u128),
    /// On-chain metered (import, export, has reading) per household and slot.
    pub metered: Vec<Vec<(u64, u64, bool)>>,
    /// Transactions sent by the simulator.
    pub tx: TxStats,
    /// Transactions in the blocks of the day (everyone's, including the bridge's).
    pub chain_txs: u64,
    /// Blocks of the day.
    pub blocks: (u64, u64),
    /// Meter messages published / failed.
    pub meter_messages: (u64, u64),
    /// The bridge's `/health` at the end.
    pub bridge_health: serde_json::Value,
    /// Wall-clock seconds: setup, the day, read-back.
    pub wall: (f64, f64, f64),
    /// Whether meters were simulated.
    pub simulated_meters: bool,
    /// Pay-as-bid market.
    pub pay_as_bid: bool,
    /// The run's progress messages that need attention.
    pub warnings: Vec<String>,
    /// The dev chain, still running (with `stay`).
    pub live: Option<DevChain>,
}

fn rpc_err(e: RpcError) -> anyhow::Error {
    anyhow::anyhow!("JSON-RPC: {e}")
}

/// Sends signed transactions and waits for their receipts; failures are recorded in `stats`.
async fn send_and_wait(
    rpc: &Rpc,
    txs: &[(B256, Bytes)],
    timeout: Duration,
    stats: &mut TxStats,
    what: &str,
) -> anyhow::Result<Vec<Option<Receipt>>> {
    let raws: Vec<Bytes> = txs.iter().map(|t| t.1.clone()).collect();
    let sent = rpc.send_raw(&raws).await.map_err(rpc_err)?;
    let mut hashes = Vec::with_capacity(txs.len());
    let mut refused = vec![false; txs.len()];
    for (i, r) in sent.iter().enumerate() {
        match r {
            Ok(h) => hashes.push(*h),
            Err(e) => {
                refused[i] = true;
                hashes.push(txs[i].0);
                record_failure(stats, what, format!("refused by the node: {e}"));
            }
        }
    }
    let got = rpc.wait_receipts(&hashes, timeout).await.map_err(rpc_err)?;
    let mut out = Vec::with_capacity(got.len());
    for (i, r) in got.into_iter().enumerate() {
        if refused[i] {
            out.push(None);
            continue;
        }
        match &r {
            Some(rc) if !rc.success => {
                let why = if wants_example(stats, what) {
                    revert_reason(rpc, rc.hash, rc.block_number).await
                } else {
                    String::new()
                };
                record_failure(stats, what, format!("reverted in block {}{why}", rc.block_number))
            }
            None => record_failure(stats, what, format!("no receipt after {timeout:?}")),
            _ => {}
        }
        out.push(r);
    }
    Ok(out)
}

fn record_failure(stats: &mut TxStats, kind: &str, msg: String) {
    stats.failed += 1;
    let k = stats.failures.entry(kind.to_string()).or_default();
    k.count += 1;
    if k.examples.len() < 10 {
        k.examples.push(msg);
    }
}

/// Whether another example of `kind` would be kept (so that its reason is worth looking up).
fn wants_example(stats: &TxStats, kind: &str) -> bool {
    stats.failures.get(kind).is_none_or(|k| k.examples.len() < 10)
}

/// Runs a simulation and returns what happened; `cfg.out` receives logs and the generated
/// bridge configuration (reports are written by [`crate::report`]).
pub async fn run(mut cfg: SimConfig) -> anyhow::Result<RunData> {
    let t0 = Instant::now();
    // Every path derived from `--out` (node data, keystores, bridge configuration, reports) is made
    // absolute once, here, so that no child process reads it relative to another folder.
    cfg.out = std::path::absolute(&cfg.out)
        .with_context(|| format!("cannot resolve the output folder {}", cfg.out.display()))?;
    let out = cfg.out.clone();
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
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
    let simulated_meters = cfg.lab.is_none();

    // Households and their day.
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
    let env = Environment::new(cfg.date, cfg.utc_offset_secs, cfg.location, cfg.cloudiness, cfg.seed);
    let traces: Vec<DayTrace> = specs.iter().map(|h| DayTrace::simulate(h, &env, cfg.seed)).collect();

    // The chain. The settler and every meter are priority senders in its pool.
    let deriver = KeyDeriver::new(DEV_MNEMONIC)?;
    let mut priority = vec![deriver.key(SETTLER_INDEX)?.address()];
    for i in 0..specs.len() {
        priority.push(match &cfg.lab {
            Some(lab) => lab.households[i].meter_address,
            None => deriver.key(METER_INDEX_BASE + i as u32)?.address(),
        });
    }
    let chain = DevChain::start(&DevChainConfig {
        slot_length: cfg.slot_seconds,
        gate_closure: cfg.gate_closure,
        grace_period: cfg.grace_period,
        datadir: cfg.keep_chain.then(|| out.join("chain")),
        contracts_out: out.join("contracts.json"),
        log: logs.join("node.log"),
        rpc_port: cfg.rpc_port,
        priority,
    })?;
    let rpc = Arc::new(Rpc::new(&chain.url));
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
    let pay_as_bid = contracts.mode == "payAsBid";

    // Keys.
    let operator_key = deriver.key(0)?;
    let mut operator =
        Account::new(operator_key.clone(), rpc.nonce(operator_key.address()).await.map_err(rpc_err)?);
    let settler_key = deriver.key(SETTLER_INDEX)?;
    let settle_account =
        Account::new(settler_key.clone(), rpc.nonce(settler_key.address()).await.map_err(rpc_err)?);
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
            balance_start: (0, 0),
            balance_end: (0, 0),
        });
    }

    // Register, bind and fund the households (operator, batches of transactions).
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
    for h in &hh {
        let role = if h.spec.is_prosumer() { 2u8 } else { 1u8 };
        setup.push(operator.sign_call(
            chain_id,
            contracts.registry,
            &Registry::registerParticipantCall { account: h.account.address(), role },
            GAS_SETUP,
        ));
        setup.push(operator.sign_call(
            chain_id,
            contracts.registry,
            &Registry::bindMeterCall { meter: h.meter, participant: h.account.address() },
            GAS_SETUP,
        ));
        setup.push(operator.sign_call(
            chain_id,
            contracts.market,
            &EnergyMarket::depositForCall { account: h.account.address(), amount: U256::from(deposit) },
            GAS_SETUP,
        ));
    }
    tx.setup += setup.len() as u64;
    let receipts = send_and_wait(&rpc, &setup, Duration::from_secs(180), &mut tx, "setup").await?;
    if receipts.iter().any(|r| !r.as_ref().is_some_and(|r| r.success)) {
        bail!("registering the households failed: {:?}", tx.failures);
    }
    if !cfg.quiet {
        eprintln!("registered {} households ({} setup transactions)", hh.len(), setup.len());
    }

    // The broker.
    let (broker_url, _embedded) = match (&cfg.lab, &cfg.broker) {
        (Some(lab), _) => (lab.broker.url.clone(), None),
        (None, Some(url)) => (url.clone(), None),
        (None, None) => {
            let b = EmbeddedBroker::start(hh.len() + 64)?;
            (b.url(), Some(b))
        }
    };

    // The bridge.
    let bridge_dir = out.join("bridge");
    if bridge_dir.exists() {
        std::fs::remove_dir_all(&bridge_dir)
            .with_context(|| format!("cannot clear {}", bridge_dir.display()))?;
    }
    std::fs::create_dir_all(bridge_dir.join("keys"))?;
    let (bridge_meters, password_file, broker_user, broker_password) = match &cfg.lab {
        Some(lab) => {
            let meters = lab
                .households
                .iter()
                .zip(&hh)
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
                    // Real meters in real time: the bridge's default rise limit.
                    rated_current_a: l.meter_rated_current_a,
                })
                .collect();
            let pw = match &lab.broker.password_file {
                Some(p) => {
                    Some(std::fs::read_to_string(lab.path(p))?.lines().next().unwrap_or("").to_string())
                }
                None => None,
            };
            (meters, lab.path(&lab.keys.password_file), lab.broker.username.clone(), pw)
        }
        None => {
            let pw = bridge_dir.join("password.txt");
            crate::keys::write_private(&pw, b"p2pe-sim\n")?;
            let mut meters = Vec::new();
            for (h, k) in hh.iter().zip(&meter_keys) {
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
                    rated_current_a: Some(crate::bridge::simulated_rated_current_a(
                        &telemetry_offsets(cfg.telemetry_seconds, contracts.slot_length),
                        contracts.slot_length,
                    )),
                });
            }
            (meters, pw, cfg.broker_user.clone(), cfg.broker_password.clone())
        }
    };
    let setup_cfg = BridgeSetup {
        broker_url: broker_url.clone(),
        broker_user: broker_user.clone(),
        broker_password: broker_password.clone(),
        rpc_url: chain.url.clone(),
        contracts_file: std::fs::canonicalize(out.join("contracts.json"))?,
        chain_id,
        password_file: std::fs::canonicalize(&password_file)
            .with_context(|| format!("{}", password_file.display()))?,
        meters: bridge_meters,
    };
    let bridge =
        Bridge::start(&setup_cfg, &std::fs::canonicalize(&bridge_dir)?, &logs.join("bridge.log")).await?;
    if !cfg.quiet {
        eprintln!("bridge up ({} meters, broker {broker_url}); health {}", hh.len(), bridge.http);
    }

    // The simulated meters.
    let (tel_tx, mut tel_rx) = mpsc::channel::<Vec<(f64, Vec<Telemetry>)>>(8);
    let fleet_task = if simulated_meters {
        let (host, port) = parse_mqtt_url(&broker_url)?;
        let meters: Vec<SimMeter> =
            hh.iter().map(|h| SimMeter::new(&h.spec.id, h.spec.meter_format, cfg.utc_offset_secs)).collect();
        let user = broker_user.clone().zip(broker_password.clone());
        let mut fleet =
            MeterFleet::connect(meters, &host, port, user.as_ref().map(|(u, p)| (u.as_str(), p.as_str())))
                .await;
        Some(tokio::spawn(async move {
            while let Some(schedule) = tel_rx.recv().await {
                fleet.publish_schedule(schedule).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            fleet.disconnect().await;
            (fleet.published, fleet.failed)
        }))
    } else {
        drop(tel_rx);
        None
    };

    // Balances at the start of the day.
    let (setup_block, _) = rpc.head().await.map_err(rpc_err)?;
    let balances = balances_of(&market, &hh).await?;
    for (h, b) in hh.iter_mut().zip(balances) {
        h.balance_start = b;
    }
    let grid_start = account_of(&market, contracts.grid).await?;
    let tokens_start = u128_of(
        rpc.view(contracts.token, &CreditToken::balanceOfCall { account: contracts.market })
            .await
            .map_err(rpc_err)?,
    );
    for h in hh.iter_mut() {
        h.account.nonce = rpc.nonce(h.account.address()).await.map_err(rpc_err)?;
    }

    // Schedule: the first chain slot whose cycle starts comfortably in the future.
    let l = contracts.slot_length as f64;
    let g = contracts.gate_closure as f64;
    let now = now_unix();
    let mut c0 = contracts.slot_at(now as u64) + 2;
    while contracts.slot_start(c0 - 1) as f64 - g < now + 2.0 {
        c0 += 1;
    }
    // First readings: the meters' counters before the first traded slot.
    if simulated_meters {
        let ts = now_unix().floor() + 0.25;
        let first: Vec<Telemetry> = hh
            .iter()
            .map(|h| Telemetry { ts, import_wh: h.meter_import, export_wh: h.meter_export, power_w: 0.0 })
            .collect();
        tel_tx.send(vec![(ts, first)]).await.ok();
    }
    let t_setup = t0.elapsed().as_secs_f64();

    // The operator's keeper opens slots ahead of their orders (`openSlot`: price snapshot and level
    // words paid in advance, so that no order creates storage): the first four now, then one per
    // cycle, three slots ahead of the slot whose orders start next (a slot of margin for a keeper
    // that falls behind on a loaded machine). Every slot the households order in is opened here:
    // only the operator opens a slot and fixes its prices, an order in a slot not yet open reverts
    // with `SlotNotOpen` (issue 14).
    let opens: Vec<(B256, Bytes)> = (c0..(c0 + 4).min(c0 + cfg.slots as u64))
        .map(|c| {
            operator.sign_call(chain_id, contracts.market, &EnergyMarket::openSlotCall { slot: c }, GAS_OPEN)
        })
        .collect();
    tx.opens += opens.len() as u64;
    send_and_wait(&rpc, &opens, Duration::from_secs(10), &mut tx, "open").await?;

    // Keeper tasks: the operator clears, the settler settles (each with its own key and nonces).
    let (clear_tx, clear_rx) = mpsc::channel::<ClearJob>(cfg.slots + 1);
    let clear_task = tokio::spawn(clearer(market.clone(), chain_id, operator, clear_rx));
    let (job_tx, job_rx) = mpsc::channel::<SettleJob>(cfg.slots + 1);
    let settle_task = tokio::spawn(settler(market.clone(), chain_id, settle_account, setup_block, job_rx));

    let progress = if cfg.quiet { ProgressBar::hidden() } else { ProgressBar::new(cfg.slots as u64) };
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos:>2}/{len} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    progress.enable_steady_tick(Duration::from_millis(200));

    let mut slots: Vec<SlotRec> = (0..cfg.slots)
        .map(|i| SlotRec { day_slot: cfg.first_slot + i, chain_slot: c0 + i as u64, ..Default::default() })
        .collect();
    let mut warnings = Vec::new();
    let mut last_alpha: Option<f64> = None;
    let t_day = Instant::now();
    let publish_offsets = telemetry_offsets(cfg.telemetry_seconds, contracts.slot_length);

    // Slot 0's plans and first order round now; every later slot's as soon as the previous slot's
    // last round is out (the order window of slot i spans most of slot i − 1's).
    let nothing = vec![(0u64, 0u64); hh.len()];
    let mut next = Some(
        begin_rounds(&cfg, &market, chain_id, &mut hh, &mut slots, 0, &nothing, None, &mut tx, &mut warnings)
            .await?,
    );
    let mut prev: Option<Rounds> = None;
    for i in 0..=cfg.slots {
        let c = c0 + i as u64;
        let cycle = contracts.slot_start(c - 1) as f64 - g;
        sleep_until_unix(cycle + 0.05).await;
        if let Some(p) = prev.take() {
            finish_rounds(p, &market, &mut hh, &mut tx).await?;
        }
        if i >= 1 {
            let k = i - 1;
            let ck = slots[k].chain_slot;
            // 1. The gate of slot k has closed: once the last block that could hold its orders is in,
            //    its book is final and public. The operator's keeper clears it; every household
            //    knows its fills already (the clearing is a deterministic function of the book).
            wait_for_block_time(&rpc, contracts.slot_start(ck) - contracts.gate_closure as u64, 10.0).await;
            let open = (i + 3 < cfg.slots).then(|| c0 + i as u64 + 3);
            clear_tx.send(ClearJob { index: k, chain_slot: ck, open }).await.ok();
            let (head, _) = rpc.head().await.map_err(rpc_err)?;
            let ev = market.slot_events(ck, setup_block, head).await.map_err(rpc_err)?;
            let book = ev.book();
            let mut cleared_msg = format!("{} no trade", hhmm(cfg.first_slot + k));
            if let Some(p) = slots[k].prices {
                let orders: Vec<crate::clearing::Order<usize>> = book
                    .iter()
                    .filter_map(|o| {
                        let j = hh.iter().position(|h| h.account.address() == o.account)?;
                        Some(crate::clearing::Order {
                            who: j,
                            side: o.side,
                            level: p.level(o.price)?,
                            wh: o.wh,
                        })
                    })
                    .collect();
                let cl = crate::clearing::merit_order(&orders);
                for o in &orders {
                    hh[o.who].slots[k].position = true;
                    let f = cl.fills.get(&(o.who, o.side)).copied().unwrap_or(0.0).floor() as u64;
                    match o.side {
                        Side::Bid => hh[o.who].slots[k].fills.0 = f,
                        Side::Ask => hh[o.who].slots[k].fills.1 = f,
                    }
                }
                if let Some(level) = cl.price_level {
                    last_alpha = Some(p.alpha(p.price(level)));
                    cleared_msg = format!(
                        "{} price {:.3} vol {:.1} kWh",
                        hhmm(cfg.first_slot + k),
                        credits_per_kwh(p.price(level)),
                        cl.volume_wh as f64 / 1000.0
                    );
                }
            }
            // 2. Physics of slot k (delivered from now on) and its meters' readings.
            let day_slot = cfg.first_slot + k;
            let start_k = contracts.slot_start(ck) as f64;
            slots[k].last_reading_ts =
                contracts.slot_start(ck) + publish_offsets.last().map_or(0, |o| o.0) as u64;
            for h in hh.iter_mut() {
                h.slots[k].soc_start = h.battery.map_or(0.0, |b| b.soc_wh);
            }
            if simulated_meters {
                let mut schedule: Vec<(f64, Vec<Telemetry>)> = publish_offsets
                    .iter()
                    .map(|(o, _)| (start_k + *o as f64 + 0.05, Vec::with_capacity(hh.len())))
                    .collect();
                for h in hh.iter_mut() {
                    let (b, s) = h.slots[k].fills;
                    let target = s as f64 - b as f64;
                    let p = step_slot(&h.trace, h.battery.as_mut(), day_slot, target);
                    let base = if h.base_battery.is_some() {
                        step_slot(&h.trace, h.base_battery.as_mut(), day_slot, 0.0)
                    } else {
                        p.clone()
                    };
                    let reg_start = (register(h.meter_import), register(h.meter_export));
                    for (n, (_, minute)) in publish_offsets.iter().enumerate() {
                        let m = minute - 1;
                        let prev = if m == 0 {
                            (0.0, 0.0)
                        } else {
                            (p.import_by_minute[m - 1], p.export_by_minute[m - 1])
                        };
                        let power =
                            ((p.import_by_minute[m] - prev.0) - (p.export_by_minute[m] - prev.1)) * 60.0;
                        let ts = schedule[n].0;
                        schedule[n].1.push(Telemetry {
                            ts,
                            import_wh: h.meter_import + p.import_by_minute[m],
                            export_wh: h.meter_export + p.export_by_minute[m],
                            power_w: power,
                        });
                    }
                    h.meter_import += p.import_wh;
                    h.meter_export += p.export_wh;
                    let b0 = (register(h.base_import), register(h.base_export));
                    h.base_import += base.import_wh;
                    h.base_export += base.export_wh;
                    let s = &mut h.slots[k];
                    s.reg_start = reg_start;
                    s.reg_end = (register(h.meter_import), register(h.meter_export));
                    s.base_delta = (register(h.base_import) - b0.0, register(h.base_export) - b0.1);
                    s.phys = Some(p);
                    s.base = Some(base);
                }
                if tel_tx.send(schedule).await.is_err() {
                    warnings.push("the meter task stopped".into());
                }
            }
            // 3. Settlement, once the slot is cleared, its grace period is over and the readings are in.
            if !book.is_empty() {
                let end = contracts.slot_start(ck + 1) as f64;
                let job = SettleJob {
                    index: k,
                    chain_slot: ck,
                    households: hh.iter().map(|h| (h.account.address(), h.meter)).collect(),
                    // Simulated meters: their last reading of the slot. Real meters: a reading at or
                    // after the slot's end (the bridge submits each meter's readings in order, so
                    // everything the meter sent during the slot is then on chain).
                    min_reading_ts: if simulated_meters {
                        slots[k].last_reading_ts
                    } else {
                        contracts.slot_start(ck + 1)
                    },
                    slot_end: end,
                    not_before: end + contracts.grace_period as f64 + 0.1,
                    give_up_at: end + contracts.grace_period as f64 + 3.0 * l + 15.0,
                };
                job_tx.send(job).await.ok();
            }
            progress.set_message(cleared_msg);
            progress.inc(1);
        }
        // 4. The later order rounds of slot i, until shortly before its gate closes; then slot i + 1's
        //    plans and first round.
        if let Some(mut r) = next.take() {
            rounds_after_first(&mut r, &market, chain_id, &mut hh, &mut tx).await?;
            prev = Some(r);
        }
        if i + 1 < cfg.slots {
            // What slot i will probably give each household, from its book as it stands.
            let mut expected = vec![(0u64, 0u64); hh.len()];
            if let Some(p) = slots[i].prices {
                let levels = market.book_levels(slots[i].chain_slot, &p).await.map_err(rpc_err)?;
                let book = LevelClearing::new(&levels);
                for (j, h) in hh.iter().enumerate() {
                    for (si, side) in [(0usize, Side::Bid), (1, Side::Ask)] {
                        if let Some((level, wh, _)) = h.slots[i].live[si] {
                            let f = (wh as f64 * book.fill_share(side, level)).floor() as u64;
                            if si == 0 {
                                expected[j].0 = f;
                            } else {
                                expected[j].1 = f;
                            }
                        }
                    }
                }
            }
            next = Some(
                begin_rounds(
                    &cfg,
                    &market,
                    chain_id,
                    &mut hh,
                    &mut slots,
                    i + 1,
                    &expected,
                    last_alpha,
                    &mut tx,
                    &mut warnings,
                )
                .await?,
            );
        }
    }
    if let Some(p) = prev.take() {
        finish_rounds(p, &market, &mut hh, &mut tx).await?;
    }
    drop(clear_tx);
    drop(job_tx);
    drop(tel_tx);
    progress.finish_and_clear();
    let meter_messages = match fleet_task {
        Some(t) => t.await.unwrap_or((0, 0)),
        None => (0, 0),
    };
    for (idx, o) in clear_task.await.context("clearing task")? {
        tx.clears += o.txs;
        tx.opens += o.opens;
        for e in &o.open_errors {
            record_failure(&mut tx, "open", format!("after slot index {idx}: {e}"));
        }
        for e in &o.errors {
            record_failure(&mut tx, "clear", format!("slot index {idx}: {e}"));
        }
        if !o.cleared && !o.empty {
            warnings.push(format!("slot index {idx}: not cleared"));
        }
    }
    let outcomes = settle_task.await.context("settlement task")?;
    for (idx, o) in outcomes {
        tx.settles += o.txs;
        for e in &o.errors {
            record_failure(&mut tx, "settle", format!("slot index {idx}: {e}"));
        }
        slots[idx].settle = Some(o);
    }
    let t_day_s = t_day.elapsed().as_secs_f64();
    let t_read = Instant::now();

    // Read everything back.
    let (head, _) = rpc.head().await.map_err(rpc_err)?;
    for s in slots.iter_mut() {
        s.events = market.slot_events(s.chain_slot, setup_block, head).await.map_err(rpc_err)?;
        s.cleared = s.events.cleared;
    }
    let mut calls = Vec::with_capacity(hh.len() * slots.len());
    for h in &hh {
        for s in &slots {
            calls.push((
                contracts.readings,
                MeterReadings::energyInSlotCall { meter: h.meter, slot: s.chain_slot },
            ));
        }
    }
    let answers = rpc.views(&calls).await.map_err(rpc_err)?;
    let mut metered = Vec::with_capacity(hh.len());
    let mut it = answers.into_iter();
    for _ in &hh {
        let mut row = Vec::with_capacity(slots.len());
        for _ in &slots {
            let e = it.next().expect("one answer per call").map_err(rpc_err)?;
            row.push((e.importWh, e.exportWh, e.hasReading));
        }
        metered.push(row);
    }
    let balances = balances_of(&market, &hh).await?;
    for (h, b) in hh.iter_mut().zip(balances) {
        h.balance_end = b;
    }
    let grid_end = account_of(&market, contracts.grid).await?;
    let tokens_end = u128_of(
        rpc.view(contracts.token, &CreditToken::balanceOfCall { account: contracts.market })
            .await
            .map_err(rpc_err)?,
    );
    let counts = rpc
        .batch(
            (setup_block + 1..=head)
                .map(|b| ("eth_getBlockTransactionCountByNumber", json!([format!("{b:#x}")])))
                .collect(),
        )
        .await
        .map_err(rpc_err)?;
    let chain_txs = counts.iter().filter_map(|r| r.as_ref().ok().and_then(crate::chain::hex_u64)).sum();
    // The last readings are on chain (settlement waited for them) but count as confirmed only a few
    // blocks later: the bridge's figures are read once it has confirmed everything it took.
    let bridge_health = bridge.health_when_confirmed(Duration::from_secs(30)).await;
    let t_read_s = t_read.elapsed().as_secs_f64();
    drop(bridge);
    let live = if cfg.stay { Some(chain) } else { None };

    Ok(RunData {
        cfg,
        env,
        hh,
        slots,
        grid: contracts.grid,
        grid_balance: (grid_start, grid_end),
        market_tokens: (tokens_start, tokens_end),
        metered,
        tx,
        chain_txs,
        blocks: (setup_block + 1, head),
        meter_messages,
        bridge_health,
        wall: (t_setup, t_day_s, t_read_s),
        simulated_meters,
        pay_as_bid,
        warnings,
        live,
    })
}

/// `HH:MM` of day slot `s`.
pub fn hhmm(s: usize) -> String {
    format!("{:02}:{:02}", s / 4, (s % 4) * 15)
}

/// When meters publish within a slot: (wall offset in seconds from the slot start, simulated
/// minute of the slot whose counters they carry). The last message is one second before the slot
/// ends and carries the whole slot.
pub fn telemetry_offsets(telemetry_seconds: u32, slot_seconds: u32) -> Vec<(u32, usize)> {
    let per_slot = ((SLOT_MINUTES as u32 * 60) / telemetry_seconds.max(1)).max(1);
    let n = per_slot.min(slot_seconds.saturating_sub(1)).max(1);
    (1..=n)
        .map(|i| {
            let offset = ((i as f64 * (slot_seconds - 1) as f64) / n as f64).round() as u32;
            let minute = ((i as f64 * SLOT_MINUTES as f64) / n as f64).round() as usize;
            (offset.max(1), minute.clamp(1, SLOT_MINUTES))
        })
        .collect()
}

/// Waits (up to `timeout_s`) until the next block's timestamp will be at least `t`, i.e. the head's
/// is at least `t − 1`.
async fn wait_for_block_time(rpc: &Rpc, t: u64, timeout_s: f64) {
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < timeout_s {
        match rpc.head().await {
            Ok((_, ts)) if ts + 1 >= t => return,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Why a transaction reverted: its call replayed on the state before its block, decoded as a
/// market error (`: NoOrder(..)`), or empty if that cannot be found.
async fn revert_reason(rpc: &Rpc, hash: B256, block: u64) -> String {
    let Ok(t) = rpc.call("eth_getTransactionByHash", json!([hash])).await else { return String::new() };
    let call = json!([{"from": t["from"], "to": t["to"], "data": t["input"], "gas": t["gas"]}, format!("{:#x}", block.saturating_sub(1))]);
    match rpc.call("eth_call", call).await {
        Err(RpcError::Node { data: Some(d), .. }) => {
            let bytes: Option<Bytes> = d.as_str().and_then(|s| s.parse().ok());
            match bytes.and_then(|b| {
                <EnergyMarket::EnergyMarketErrors as alloy_sol_types::SolInterface>::abi_decode(&b).ok()
            }) {
                Some(e) => format!(": {e:?}"),
                None => format!(": {d}"),
            }
        }
        Err(e) => format!(": {e}"),
        Ok(_) => ": (succeeds when replayed before its block)".into(),
    }
}

async fn account_of(market: &Market, a: Address) -> anyhow::Result<(u128, u128)> {
    let r = market
        .rpc
        .view(market.c.market, &EnergyMarket::accountOfCall { account: a })
        .await
        .map_err(rpc_err)?;
    Ok((u128_of(r.free), u128_of(r.debt)))
}

async fn balances_of(market: &Market, hh: &[Hh]) -> anyhow::Result<Vec<(u128, u128)>> {
    let calls: Vec<(Address, EnergyMarket::accountOfCall)> = hh
        .iter()
        .map(|h| (market.c.market, EnergyMarket::accountOfCall { account: h.account.address() }))
        .collect();
    market
        .rpc
        .views(&calls)
        .await
        .map_err(rpc_err)?
        .into_iter()
        .map(|r| r.map(|r| (u128_of(r.free), u128_of(r.debt))).map_err(rpc_err))
        .collect()
}

/// The order rounds of one slot in progress.
struct Rounds {
    i: usize,
    c: u64,
    prices: Prices,
    deadline: f64,
    t_first: f64,
    span: f64,
    rounds: usize,
    /// Transactions without a receipt yet: (hash, household, side index, order placed or None for
    /// a cancel). A household with one is left alone in a round (its state on chain is not known yet).
    pending: Vec<(B256, usize, usize, Option<LiveOrder>)>,
}

/// Plans simulated slot `i` and sends round 0 of its orders. `expected` holds each household's
/// fills (bought, sold) in slot `i − 1` as worked out from its final public book.
#[allow(clippy::too_many_arguments)]
async fn begin_rounds(
    cfg: &SimConfig,
    market: &Market,
    chain_id: u64,
    hh: &mut [Hh],
    slots: &mut [SlotRec],
    i: usize,
    expected: &[(u64, u64)],
    last_alpha: Option<f64>,
    tx: &mut TxStats,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Rounds> {
    let c = slots[i].chain_slot;
    let day_slot = cfg.first_slot + i;
    let prices = market.prices(c).await.map_err(rpc_err)?;
    slots[i].prices = Some(prices);
    let g = market.c.gate_closure as f64;
    // `deadline`: the last round's scheduled start; its sends must be out by `deadline + ROUND_BUDGET_S`.
    let deadline = market.c.slot_start(c) as f64 - g - SEND_MARGIN_S - ROUND_BUDGET_S;
    let t_first = now_unix();
    let span = deadline - t_first;
    let rounds = if span <= 0.0 {
        warnings.push(format!("slot {} ({}): too late for orders", i, hhmm(day_slot)));
        0
    } else {
        cfg.ramp_rounds.max(1).min(1 + (span / MIN_ROUND_SPACING_S).floor() as usize)
    };
    slots[i].rounds = rounds;
    let mut r = Rounds { i, c, prices, deadline, t_first, span, rounds, pending: Vec::new() };
    if rounds == 0 {
        return Ok(r);
    }

    // Plans.
    for (j, h) in hh.iter_mut().enumerate() {
        // Slot i is planned while slot i − 2 is delivered: the last complete slot is i − 3.
        let csi = if day_slot >= 3 {
            let d = day_slot - 3;
            let clear = h.trace.pv_clear_wh[d];
            if clear > 5.0 && cfg.lab.is_none() {
                h.clear_sky_index = Some(h.trace.pv_wh(d) / clear);
            }
            h.clear_sky_index
        } else {
            h.clear_sky_index
        };
        // The battery now is at the start of slot i − 1 (its physics has not run yet).
        let soc = h.battery.map(|b| b.soc_wh);
        let prev_target = expected[j].1 as f64 - expected[j].0 as f64;
        let k = Knowledge {
            slot: day_slot,
            soc_wh: soc,
            project_previous: i > 0,
            prev_target_export_wh: prev_target,
            clear_sky_index: csi,
            last_alpha,
        };
        h.slots[i].plan = plan(&h.spec, &h.trace, &cfg.agent, &k);
    }
    order_round(&mut r, 0, market, chain_id, hh, tx).await?;
    Ok(r)
}

/// The order rounds after the first, until the last one is sent.
async fn rounds_after_first(
    r: &mut Rounds,
    market: &Market,
    chain_id: u64,
    hh: &mut [Hh],
    tx: &mut TxStats,
) -> anyhow::Result<()> {
    let send_by = r.deadline + ROUND_BUDGET_S;
    let gate = send_by + SEND_MARGIN_S;
    for round in 1..r.rounds {
        let at = r.t_first + r.span * round as f64 / (r.rounds - 1) as f64;
        sleep_until_unix(at).await;
        let wait = (send_by - 0.3 - now_unix()).clamp(0.0, 0.4);
        resolve_orders(&market.rpc, hh, r.i, gate, &mut r.pending, Duration::from_secs_f64(wait), tx, false)
            .await?;
        if now_unix() > send_by - 0.1 {
            // Too late for this round: its transactions could land after the gate.
            continue;
        }
        order_round(r, round, market, chain_id, hh, tx).await?;
    }
    Ok(())
}

/// The receipts of everything a slot's rounds sent (called after its gate has closed).
async fn finish_rounds(
    mut r: Rounds,
    market: &Market,
    hh: &mut [Hh],
    tx: &mut TxStats,
) -> anyhow::Result<()> {
    let gate = r.deadline + ROUND_BUDGET_S + SEND_MARGIN_S;
    let until = (gate + 1.5 - now_unix()).max(0.5);
    resolve_orders(&market.rpc, hh, r.i, gate, &mut r.pending, Duration::from_secs_f64(until), tx, true).await
}

/// One order round: round 0 places the plans; later rounds move orders that would not trade
/// completely against the public book further along their ramps.
async fn order_round(
    r: &mut Rounds,
    round: usize,
    market: &Market,
    chain_id: u64,
    hh: &mut [Hh],
    tx: &mut TxStats,
) -> anyhow::Result<()> {
    let rpc = &market.rpc;
    let (i, c, prices, rounds) = (r.i, r.c, r.prices, r.rounds);
    let busy: Vec<usize> = r.pending.iter().map(|p| p.1).collect();
    // Which orders to (re)place.
    let mut wanted: Vec<(usize, Side, u32, u32, PriceRule)> = Vec::new();
    if round == 0 {
        for (j, h) in hh.iter().enumerate() {
            let p = h.slots[i].plan;
            for (side, o) in [(Side::Bid, p.bid), (Side::Ask, p.ask)] {
                if let Some(o) = o {
                    let a = price_alpha(&h.spec, o.rule, side == Side::Bid, 0, rounds);
                    wanted.push((j, side, prices.level_for_alpha(a), o.wh, o.rule));
                }
            }
        }
    } else {
        let levels = market.book_levels(c, &prices).await.map_err(rpc_err)?;
        let book = LevelClearing::new(&levels);
        // No counterparty at any price: moving along the ramp cannot help (and costs transactions).
        let bids: u64 = levels.iter().map(|l| l.0).sum();
        let asks: u64 = levels.iter().map(|l| l.1).sum();
        for (j, h) in hh.iter().enumerate() {
            if busy.contains(&j) {
                continue;
            }
            for (si, side) in [(0usize, Side::Bid), (1, Side::Ask)] {
                let Some((level, wh, rule)) = h.slots[i].live[si] else { continue };
                let counterparty = if side == Side::Bid { asks } else { bids };
                if rule != PriceRule::Ramp || counterparty == 0 {
                    continue;
                }
                // GSY-e keeps moving what is not matched: an order that would not trade
                // completely against the public book moves further along the ramp.
                if book.fill_share(side, level) >= 1.0 - 1e-9 {
                    continue;
                }
                let a = price_alpha(&h.spec, rule, side == Side::Bid, round, rounds);
                let new_level = prices.level_for_alpha(a);
                if new_level != level {
                    wanted.push((j, side, new_level, wh, rule));
                }
            }
        }
    }
    if wanted.is_empty() || (round > 0 && now_unix() > r.deadline + ROUND_BUDGET_S - 0.05) {
        return Ok(());
    }
    // Sign: a cancel first where an order stands, then the new order.
    let mut txs: Vec<(B256, Bytes)> = Vec::new();
    let mut what: Vec<(usize, usize, Option<LiveOrder>)> = Vec::new();
    for (j, side, level, wh, rule) in &wanted {
        let h = &mut hh[*j];
        let si = if *side == Side::Bid { 0 } else { 1 };
        if h.slots[i].live[si].is_some() {
            let t = h.account.sign_call(
                chain_id,
                market.c.market,
                &EnergyMarket::cancelOrderCall { slot: c, side: si as u8 },
                GAS_CANCEL,
            );
            txs.push(t);
            what.push((*j, si, None));
            tx.cancels += 1;
        }
        let price = U256::from(prices.price(*level));
        let data = match side {
            Side::Bid => {
                EnergyMarket::placeBidCall { slot: c, energyWh: *wh, pricePerKWh: price }.abi_encode()
            }
            Side::Ask => {
                EnergyMarket::placeAskCall { slot: c, energyWh: *wh, pricePerKWh: price }.abi_encode()
            }
        };
        txs.push(h.account.sign(chain_id, market.c.market, data, GAS_ORDER));
        what.push((*j, si, Some((*level, *wh, *rule))));
        tx.orders += 1;
    }
    let raws: Vec<Bytes> = txs.iter().map(|t| t.1.clone()).collect();
    let sent = rpc.send_raw(&raws).await.map_err(rpc_err)?;
    let mut resync = Vec::new();
    for ((hash, _), ((j, si, placed), answer)) in txs.iter().zip(what.into_iter().zip(sent)) {
        match answer {
            Ok(_) => r.pending.push((*hash, j, si, placed)),
            Err(e) => {
                record_failure(
                    tx,
                    if placed.is_some() { "order" } else { "cancel" },
                    format!("refused by the node: {e}"),
                );
                resync.push(j);
            }
        }
    }
    resync.sort_unstable();
    resync.dedup();
    for j in resync {
        // The node refused a transaction: its nonce is free again.
        hh[j].account.nonce = rpc.nonce(hh[j].account.address()).await.map_err(rpc_err)?;
    }
    Ok(())
}

/// Applies the receipts of pending order transactions of slot `i` (waiting up to `wait`); with
/// `last`, whatever is still pending is recorded as failed and its sender's nonce resynchronised.
#[allow(clippy::too_many_arguments)]
async fn resolve_orders(
    rpc: &Rpc,
    hh: &mut [Hh],
    i: usize,
    gate: f64,
    pending: &mut Vec<(B256, usize, usize, Option<LiveOrder>)>,
    wait: Duration,
    tx: &mut TxStats,
    last: bool,
) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let hashes: Vec<B256> = pending.iter().map(|p| p.0).collect();
    let receipts = rpc.wait_receipts(&hashes, wait).await.map_err(rpc_err)?;
    let mut still = Vec::new();
    let mut resync = Vec::new();
    for (p, r) in pending.drain(..).zip(receipts) {
        let (_, j, si, placed) = p;
        match r {
            Some(r) if r.success => hh[j].slots[i].live[si] = placed,
            Some(r) => {
                let kind = if placed.is_some() { "order" } else { "cancel" };
                let why = if wants_example(tx, kind) {
                    let ts = rpc
                        .call("eth_getBlockByNumber", json!([format!("{:#x}", r.block_number), false]))
                        .await
                        .ok()
                        .and_then(|b| b.get("timestamp").and_then(crate::chain::hex_u64))
                        .unwrap_or(0);
                    format!(" (block time {ts}, gate closes at {gate})")
                        + &revert_reason(rpc, r.hash, r.block_number).await
                } else {
                    String::new()
                };
                record_failure(tx, kind, format!("reverted in block {}{why}", r.block_number))
            }
            None if last => {
                record_failure(
                    tx,
                    if placed.is_some() { "order" } else { "cancel" },
                    format!("no receipt by the gate closure of slot index {i}"),
                );
                resync.push(j);
            }
            None => still.push(p),
        }
    }
    *pending = still;
    resync.sort_unstable();
    resync.dedup();
    for j in resync {
        hh[j].account.nonce = rpc.nonce(hh[j].account.address()).await.map_err(rpc_err)?;
    }
    Ok(())
}

/// The clearing task (the operator's keeper): clears each queued slot that has orders, waiting for
/// its receipt and trying again only if the node refused the transaction or it reverted (for
/// instance when a lagging block was still before the gate closure).
async fn clearer(
    market: Arc<Market>,
    chain_id: u64,
    mut acct: Account,
    mut rx: mpsc::Receiver<ClearJob>,
) -> Vec<(usize, ClearOutcome)> {
    let mut out = Vec::new();
    let mut scratch = TxStats::default();
    while let Some(job) = rx.recv().await {
        let mut o = ClearOutcome::default();
        let gate = market.c.slot_start(job.chain_slot) - market.c.gate_closure as u64;
        let give_up = now_unix() + 3.0 * market.c.slot_length as f64 + 20.0;
        while now_unix() < give_up {
            let status =
                market.rpc.view(market.c.market, &EnergyMarket::slotInfoCall { slot: job.chain_slot }).await;
            match status.map(|s| s.status) {
                Ok(2) => {
                    o.cleared = true;
                    break;
                }
                Ok(0) => {
                    o.empty = true; // no order: nothing to clear
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    o.errors.push(format!("slotInfo: {e}"));
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
            }
            wait_for_block_time(&market.rpc, gate, 10.0).await;
            let t = acct.sign_call(
                chain_id,
                market.c.market,
                &EnergyMarket::clearCall { slot: job.chain_slot },
                GAS_CLEAR,
            );
            o.txs += 1;
            let wait = Duration::from_secs_f64((give_up - now_unix()).max(1.0));
            match send_and_wait(&market.rpc, &[t], wait, &mut scratch, "clear").await {
                Ok(r) if r[0].as_ref().is_some_and(|r| r.success) => {
                    o.cleared = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => o.errors.push(e.to_string()),
            }
            if let Ok(n) = market.rpc.nonce(acct.address()).await {
                acct.nonce = n;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        for k in scratch.failures.values_mut() {
            o.errors.append(&mut k.examples);
        }
        scratch = TxStats::default();
        if let Some(slot) = job.open {
            let t = acct.sign_call(chain_id, market.c.market, &EnergyMarket::openSlotCall { slot }, GAS_OPEN);
            o.opens += 1;
            let wait = Duration::from_secs(market.c.slot_length as u64);
            match send_and_wait(&market.rpc, &[t], wait, &mut scratch, "open").await {
                Ok(r) if r[0].as_ref().is_some_and(|r| r.success) => {}
                Ok(_) => {
                    for k in scratch.failures.values_mut() {
                        o.open_errors.append(&mut k.examples);
                    }
                    if let Ok(n) = market.rpc.nonce(acct.address()).await {
                        acct.nonce = n;
                    }
                }
                Err(e) => o.open_errors.push(e.to_string()),
            }
            scratch = TxStats::default();
        }
        out.push((job.index, o));
    }
    out
}

/// The settlement task: settles queued slots in order; returns the outcome per slot index.
async fn settler(
    market: Arc<Market>,
    chain_id: u64,
    mut acct: Account,
    from_block: u64,
    mut rx: mpsc::Receiver<SettleJob>,
) -> Vec<(usize, SettleOutcome)> {
    let mut out = Vec::new();
    let mut scratch = TxStats::default();
    while let Some(job) = rx.recv().await {
        sleep_until_unix(job.not_before).await;
        wait_for_block_time(
            &market.rpc,
            market.c.slot_start(job.chain_slot + 1) + market.c.grace_period as u64,
            10.0,
        )
        .await;
        let mut o = SettleOutcome::default();
        // The slot must be cleared (by the operator's keeper) first.
        loop {
            let status =
                market.rpc.view(market.c.market, &EnergyMarket::slotInfoCall { slot: job.chain_slot }).await;
            if status.is_ok_and(|s| s.status == 2) {
                break;
            }
            if now_unix() > job.give_up_at {
                o.errors.push(format!("chain slot {} was not cleared", job.chain_slot));
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if !o.errors.is_empty() {
            out.push((job.index, o));
            continue;
        }
        // Who has orders in the slot, from the chain's events.
        let book = match market.rpc.head().await {
            Ok((head, _)) => match market.slot_events(job.chain_slot, from_block, head).await {
                Ok(ev) => ev.book(),
                Err(e) => {
                    o.errors.push(format!("chain slot {}: reading its orders: {e}", job.chain_slot));
                    out.push((job.index, o));
                    continue;
                }
            },
            Err(e) => {
                o.errors.push(format!("chain slot {}: {e}", job.chain_slot));
                out.push((job.index, o));
                continue;
            }
        };
        let trading: Vec<(Address, Address)> =
            job.households.iter().filter(|(a, _)| book.iter().any(|b| b.account == *a)).copied().collect();
        let job = SettleJob { households: trading, ..job };
        // Wait for every trading meter's last reading of the slot.
        if job.min_reading_ts > 0 {
            loop {
                let calls: Vec<(Address, MeterReadings::latestReadingCall)> = job
                    .households
                    .iter()
                    .map(|(_, m)| (market.c.readings, MeterReadings::latestReadingCall { meter: *m }))
                    .collect();
                let missing = match market.rpc.views(&calls).await {
                    Ok(rs) => rs
                        .iter()
                        .filter(|r| !r.as_ref().is_ok_and(|r| r.timestamp >= job.min_reading_ts))
                        .count(),
                    Err(_) => job.households.len(),
                };
                if missing == 0 {
                    break;
                }
                if now_unix() > job.give_up_at {
                    o.missing_readings = missing;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        o.delay_s = now_unix() - job.slot_end;
        let mut txs = Vec::new();
        let mut parts: Vec<Vec<Address>> = Vec::new();
        let accounts: Vec<Address> = job.households.iter().map(|h| h.0).collect();
        for part in accounts.chunks(SETTLE_CHUNK) {
            let gas = GAS_SETTLE_BASE + GAS_SETTLE_EACH * part.len() as u64;
            txs.push(acct.sign_call(
                chain_id,
                market.c.market,
                &EnergyMarket::settleCall { slot: job.chain_slot, participants: part.to_vec() },
                gas,
            ));
            parts.push(part.to_vec());
        }
        o.txs += txs.len() as u64;
        match send_and_wait(&market.rpc, &txs, Duration::from_secs(60), &mut scratch, "settle").await {
            Ok(rs) => {
                for (part, r) in parts.iter().zip(rs) {
                    if r.as_ref().is_some_and(|r| r.success) {
                        o.settled += part.len();
                    } else {
                        o.errors.push(format!(
                            "chain slot {}: a settle transaction of {} participants failed",
                            job.chain_slot,
                            part.len()
                        ));
                    }
                }
            }
            Err(e) => o.errors.push(format!("chain slot {}: {e}", job.chain_slot)),
        }
        if !o.errors.is_empty() {
            if let Ok(n) = market.rpc.nonce(acct.address()).await {
                acct.nonce = n;
            }
        }
        out.push((job.index, o));
    }
    out
}

/// Lists files written by a run (for the console).
pub fn output_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_offsets_fit_in_the_slot() {
        // 300 s telemetry, 5 s slots: three messages, the last one a second before the end with the
        // whole slot.
        assert_eq!(telemetry_offsets(300, 5), vec![(1, 5), (3, 10), (4, 15)]);
        // More messages than whole seconds: one per second at most, still ending with minute 15.
        let o = telemetry_offsets(60, 5);
        assert_eq!(o.len(), 4);
        assert_eq!(*o.last().unwrap(), (4, 15));
        assert!(o.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        // Long slots: every 5 simulated minutes.
        assert_eq!(telemetry_offsets(300, 900), vec![(300, 5), (599, 10), (899, 15)]);
        assert_eq!(telemetry_offsets(3600, 5), vec![(4, 15)]);
    }

    #[test]
    fn simulated_meters_get_a_rise_limit_for_compressed_time() {
        use crate::bridge::simulated_rated_current_a;
        // 5 s slots, readings at (1 s, 5 min), (3, 10), (4, 15): 5 simulated minutes in 1 s is the
        // fastest step (x 300), so 63 A x 300.
        let a = simulated_rated_current_a(&telemetry_offsets(300, 5), 5);
        assert_eq!(a, 18_900);
        // Real-time slots: every 5 minutes in 299 s at the fastest, x 1.003.
        assert_eq!(simulated_rated_current_a(&telemetry_offsets(300, 900), 900), 64);
        // A 10 kW household in the 5 s slots: 10 kW x 300 s of simulated time per second stays under
        // 3 x 230 V x 18,900 A.
        assert!(10_000 * 300 < 3 * 230 * a);
    }

    #[test]
    fn slot_times() {
        assert_eq!(hhmm(0), "00:00");
        assert_eq!(hhmm(45), "11:15");
        assert_eq!(hhmm(95), "23:45");
    }
}
