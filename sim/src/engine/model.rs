//! What a run knows about its households, slots and transactions: the engine's named types.

use alloy_primitives::{Address, B256};

use crate::agent::{Plan, PriceRule};
use crate::battery::Battery;
use crate::chain::Account;
use crate::config::SimConfig;
use crate::household::{DayTrace, Environment, HouseholdSpec, SlotPhysics};
use crate::market::{ClearedEvent, Prices, SlotEvents};
use crate::node::DevChain;

/// One credit in base units.
pub const CREDIT: u128 = 1_000_000_000_000_000_000;

/// An account in the market contract: its free balance and its debt, in base units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarketAccount {
    /// Free balance.
    pub free: u128,
    /// Debt.
    pub debt: u128,
}

impl MarketAccount {
    /// Free balance minus debt.
    pub fn net(&self) -> i128 {
        self.free as i128 - self.debt as i128
    }
}

/// A value at the start and at the end of the day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartEnd<T> {
    /// At the start of the day (after set-up).
    pub start: T,
    /// At the end (after read-back).
    pub end: T,
}

/// A meter's two energy registers (or their change over a slot), whole Wh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Registers {
    /// Import register, Wh.
    pub import_wh: u64,
    /// Export register, Wh.
    pub export_wh: u64,
}

/// A household's fills in one slot, Wh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fills {
    /// Energy bought.
    pub bought_wh: u64,
    /// Energy sold.
    pub sold_wh: u64,
}

impl Fills {
    /// The traded position the battery steers towards: sold − bought, Wh.
    pub fn target_export_wh(&self) -> f64 {
        self.sold_wh as f64 - self.bought_wh as f64
    }
}

/// A meter's energy in one slot as the chain's `MeterReadings` has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeteredSlot {
    /// Imported energy, Wh.
    pub import_wh: u64,
    /// Exported energy, Wh.
    pub export_wh: u64,
    /// Whether the meter has a reading at or after the slot's end.
    pub has_reading: bool,
}

/// Meter messages the simulated meters sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeterMessages {
    /// Published (acknowledged by the broker).
    pub published: u64,
    /// Failed.
    pub failed: u64,
}

/// Wall-clock seconds of a run's phases.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WallTimes {
    /// Start-up: chain, registration, broker, bridge.
    pub setup_s: f64,
    /// The simulated day.
    pub day_s: f64,
    /// Reading everything back from the chain.
    pub readback_s: f64,
}

impl WallTimes {
    /// The whole run.
    pub fn total_s(&self) -> f64 {
        self.setup_s + self.day_s + self.readback_s
    }
}

/// A household's trading account and meter address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Participant {
    /// Trading account.
    pub account: Address,
    /// Meter address.
    pub meter: Address,
}

/// A member of the market at run time: a household, or (islanded) one of the community's
/// assets, which trades and is metered the same way.
pub struct Hh {
    /// Equipment and agent settings (an asset: its id, and the plant's PV).
    pub spec: HouseholdSpec,
    /// Which asset, if it is not a household.
    pub asset: Option<crate::island::AssetKind>,
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
    /// Its market account at the start of the day.
    pub balance_start: MarketAccount,
    /// Its market account at the end.
    pub balance_end: MarketAccount,
}

impl Hh {
    /// Whether it is a household (not one of the community's assets).
    pub fn is_household(&self) -> bool {
        self.asset.is_none()
    }

    /// Whether it may sell: prosumer households and every asset.
    pub fn sells(&self) -> bool {
        self.asset.is_some() || self.spec.is_prosumer()
    }
}

/// An order standing during the rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveOrder {
    /// Price level.
    pub level: u32,
    /// Energy, Wh.
    pub wh: u32,
    /// How its price moves over the rounds.
    pub rule: PriceRule,
}

/// One household in one slot.
#[derive(Debug, Clone, Default)]
pub struct HhSlot {
    /// Physics on the platform (simulated meters only).
    pub phys: Option<SlotPhysics>,
    /// Physics of the grid-only baseline.
    pub base: Option<SlotPhysics>,
    /// Platform meter registers at the slot's start.
    pub reg_start: Registers,
    /// Platform meter registers at the slot's end.
    pub reg_end: Registers,
    /// Change of the baseline's registers over the slot.
    pub base_delta: Registers,
    /// State of charge at the slot start, Wh.
    pub soc_start: f64,
    /// The agent's plan.
    pub plan: Plan,
    /// Fills of the slot's final public book (what settlement will give, within 1 Wh).
    pub fills: Fills,
    /// Whether it had an order at gate closure.
    pub position: bool,
    /// Live orders during the rounds, per side (0 bid, 1 ask).
    pub live: [Option<LiveOrder>; 2],
}

/// A transaction of the order rounds without a receipt yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingTx {
    /// Its hash.
    pub hash: B256,
    /// The household that sent it.
    pub household: usize,
    /// Side index (0 bid, 1 ask).
    pub side: usize,
    /// The order it places, or `None` for a cancel.
    pub placed: Option<LiveOrder>,
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
    /// `reportMicrogrid` calls (the operator's report of each delivered slot).
    pub reports: u64,
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
    /// Net import at the point of common coupling in each simulated minute, kW (negative: export;
    /// simulated meters only).
    pub pcc_import_kw: Vec<f64>,
    /// How the operator priced the slot because of a forecast binding PCC limit, if it did.
    pub pcc_pricing: Option<crate::pcc::PccPricing>,
    /// What the operator reports on chain for the slot once it is delivered (simulated meters only).
    pub report: Option<crate::microgrid::SlotReport>,
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
    /// The grid's market account at start and end.
    pub grid_balance: StartEnd<MarketAccount>,
    /// Credits held by the market contract at start and end.
    pub market_tokens: StartEnd<u128>,
    /// On-chain meter energy per household and slot.
    pub metered: Vec<Vec<MeteredSlot>>,
    /// The microgrid's parameters in the registry after set-up and at the end.
    pub microgrid: StartEnd<crate::market::MicrogridParams>,
    /// The operator's microgrid reports on chain (`MicrogridReported`), by chain slot.
    pub reports: std::collections::BTreeMap<u64, crate::microgrid::SlotReport>,
    /// Transactions sent by the simulator.
    pub tx: TxStats,
    /// Transactions in the blocks of the day (everyone's, including the bridge's).
    pub chain_txs: u64,
    /// First and last block of the day.
    pub blocks: StartEnd<u64>,
    /// Meter messages published / failed.
    pub meter_messages: MeterMessages,
    /// The bridge's `/health` at the end.
    pub bridge_health: serde_json::Value,
    /// Wall-clock seconds: setup, the day, read-back.
    pub wall: WallTimes,
    /// Whether meters were simulated.
    pub simulated_meters: bool,
    /// Pay-as-bid market.
    pub pay_as_bid: bool,
    /// The run's progress messages that need attention.
    pub warnings: Vec<String>,
    /// The dev chain, still running (with `stay`).
    pub live: Option<DevChain>,
    /// Islanded: the community's assets at the end, with their dispatch minute by minute.
    pub island: Option<crate::island::Island>,
}

impl RunData {
    /// Number of households (the members that are not the community's assets).
    pub fn households(&self) -> usize {
        self.hh.iter().filter(|h| h.is_household()).count()
    }
}
