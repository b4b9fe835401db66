//! The day loop. Each cycle begins at the gate closure of the previous slot, `start(c − 1) − G`:
//! the slot just closed is handed to the clearer, its fills are read from its final book, its
//! physics runs and its meters' readings are scheduled, and it is queued for settlement; then the
//! later order rounds of the next slot run, and the plans and first round of the one after.

use std::sync::Arc;
use std::time::Duration;

use alloy_provider::DynProvider;
use alloy_rpc_types_eth::TransactionRequest;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::keepers::{clearer, open_requests, settler, ClearJob, ClearOutcome, SettleJob};
use super::model::{Fills, Hh, Participant, Registers, SettleOutcome, SlotRec, TxStats};
use super::rounds::{begin_rounds, expected_fills, finish_rounds, rounds_after_first, PlanInputs, Rounds};
use super::send::{record_failure, rpc_err, send_filled, wait_for_block_time};
use super::setup::Schedule;
use super::{hhmm, telemetry_offsets};
use crate::agent::forecast_net;
use crate::chain::Account;
use crate::clearing::Side;
use crate::clock::{now_unix, sleep_until_unix};
use crate::config::SimConfig;
use crate::household::SlotPhysics;
use crate::household::SLOT_MINUTES;
use crate::island::{AssetKind, Island};
use crate::market::{credits_per_kwh, BookOrder, Market, Prices};
use crate::meters::{register, Telemetry};
use crate::microgrid::SlotReport;
use crate::pcc::{step_community, Coupling, Member, PccPricing};

/// What the day leaves behind besides the households' state.
pub(crate) struct DayOutcome {
    /// The slots.
    pub slots: Vec<SlotRec>,
    /// Messages that need attention.
    pub warnings: Vec<String>,
    /// Islanded: the community's assets at the end, with their dispatch minute by minute.
    pub island: Option<Island>,
}

/// The keys and channels the day runs with.
pub(crate) struct DayInputs {
    /// The operator (opens and clears slots).
    pub operator: Account,
    /// The settler.
    pub settler: Account,
    /// Where the meters' schedules go.
    pub telemetry: mpsc::Sender<Schedule>,
    /// The head block when the day starts (events are read from there).
    pub setup_block: u64,
    /// Islanded: the community's assets.
    pub island: Option<Island>,
}

/// The loop's state between cycles.
struct DayLoop<'a> {
    cfg: &'a SimConfig,
    market: &'a Arc<Market>,
    c0: u64,
    publish_offsets: Vec<(u32, usize)>,
    setup_block: u64,
    defaults: Prices,
    clear_tx: mpsc::Sender<ClearJob>,
    settle_tx: mpsc::Sender<SettleJob>,
    telemetry: mpsc::Sender<Schedule>,
    slots: Vec<SlotRec>,
    warnings: Vec<String>,
    last_alpha: Option<f64>,
    progress: ProgressBar,
    /// Islanded: the assets on the platform, and a copy of them behind the baseline.
    island: Option<Island>,
    base_island: Option<Island>,
}

/// Trades the day slot by slot in wall-clock time.
pub(crate) async fn run_day(
    cfg: &SimConfig,
    market: &Arc<Market>,
    chain_id: u64,
    hh: &mut [Hh],
    tx: &mut TxStats,
    inputs: DayInputs,
) -> anyhow::Result<DayOutcome> {
    let DayInputs { operator, settler: settle_account, telemetry, setup_block, island } = inputs;
    // From here on the operator sends a few transactions per slot: through alloy's fillers.
    let operator = market.rpc.signing(operator.signer().clone(), chain_id);
    let contracts = &market.c;
    let g = contracts.gate_closure as f64;
    let c0 = first_chain_slot(market);
    // First readings: the meters' counters before the first traded slot.
    if cfg.lab.is_none() {
        let ts = now_unix().floor() + 0.25;
        let first: Vec<Telemetry> = hh
            .iter()
            .map(|h| Telemetry { ts, import_wh: h.meter_import, export_wh: h.meter_export, power_w: 0.0 })
            .collect();
        telemetry.send(vec![(ts, first)]).await.ok();
    }
    // The registry's prices before the operator sets any of its own (the PCC's scarcity and
    // surplus prices are derived from them).
    let defaults = market.prices(c0).await.map_err(rpc_err)?;
    let mut slots: Vec<SlotRec> = (0..cfg.slots)
        .map(|i| SlotRec { day_slot: cfg.first_slot + i, chain_slot: c0 + i as u64, ..Default::default() })
        .collect();
    let first: Vec<Option<(u128, u128)>> = (0..cfg.slots.min(4))
        .map(|i| {
            slots[i].pcc_pricing = operator_pricing(cfg, hh, cfg.first_slot + i);
            slots[i].pcc_pricing.and_then(|p| p.prices(&defaults))
        })
        .collect();
    open_first_slots(market, &operator, c0, &first, tx).await?;

    // Keeper tasks: the operator clears, the settler settles (each with its own key and nonces).
    let (clear_tx, clear_rx) = mpsc::channel::<ClearJob>(cfg.slots + 1);
    let clear_task = tokio::spawn(clearer(market.clone(), operator, clear_rx));
    let (settle_tx, settle_rx) = mpsc::channel::<SettleJob>(cfg.slots + 1);
    let settle_task = tokio::spawn(settler(market.clone(), chain_id, settle_account, setup_block, settle_rx));

    let mut day = DayLoop {
        cfg,
        market,
        c0,
        publish_offsets: telemetry_offsets(cfg.telemetry_seconds, contracts.slot_length),
        setup_block,
        clear_tx,
        settle_tx,
        telemetry,
        slots,
        defaults,
        warnings: Vec::new(),
        last_alpha: None,
        progress: progress_bar(cfg),
        base_island: island.clone(),
        island,
    };

    // Slot 0's plans and first order round now; every later slot's as soon as the previous slot's
    // last round is out (the order window of slot i spans most of slot i − 1's).
    let nothing = vec![Fills::default(); hh.len()];
    let first = PlanInputs { expected: &nothing, last_alpha: None };
    let mut next =
        Some(begin_rounds(cfg, market, chain_id, hh, &mut day.slots, 0, first, tx, &mut day.warnings).await?);
    let mut prev: Option<Rounds> = None;
    for i in 0..=cfg.slots {
        let c = c0 + i as u64;
        sleep_until_unix(contracts.slot_start(c - 1) as f64 - g + 0.05).await;
        if let Some(p) = prev.take() {
            finish_rounds(p, market, hh, tx).await?;
        }
        if i >= 1 {
            day.close_slot(hh, i - 1).await?;
        }
        // 4. The later order rounds of slot i, until shortly before its gate closes; then slot i + 1's
        //    plans and first round.
        if let Some(mut r) = next.take() {
            rounds_after_first(&mut r, market, chain_id, hh, tx).await?;
            prev = Some(r);
        }
        if i + 1 < cfg.slots {
            let expected = expected_fills(market, hh, &day.slots[i], i).await?;
            let inputs = PlanInputs { expected: &expected, last_alpha: day.last_alpha };
            next = Some(
                begin_rounds(cfg, market, chain_id, hh, &mut day.slots, i + 1, inputs, tx, &mut day.warnings)
                    .await?,
            );
        }
    }
    if let Some(p) = prev.take() {
        finish_rounds(p, market, hh, tx).await?;
    }
    day.finish(clear_task, settle_task, tx).await
}

impl DayLoop<'_> {
    /// After the last cycle: the last two slots' reports go to the clearer (each waits for its
    /// slot's end), the channels close, and the keepers' outcomes are collected.
    async fn finish(
        self,
        clear_task: JoinHandle<Vec<(usize, ClearOutcome)>>,
        settle_task: JoinHandle<Vec<(usize, SettleOutcome)>>,
        tx: &mut TxStats,
    ) -> anyhow::Result<DayOutcome> {
        let n = self.cfg.slots;
        for j in n.saturating_sub(2)..n {
            if let Some(r) = self.slots[j].report {
                let job = ClearJob {
                    index: j,
                    clear: None,
                    open: None,
                    report: Some((self.slots[j].chain_slot, r)),
                };
                self.clear_tx.send(job).await.ok();
            }
        }
        let DayLoop { mut slots, mut warnings, progress, clear_tx, settle_tx, telemetry, island, .. } = self;
        drop(clear_tx);
        drop(settle_tx);
        drop(telemetry);
        progress.finish_and_clear();
        collect_keepers(clear_task, settle_task, tx, &mut slots, &mut warnings).await?;
        Ok(DayOutcome { slots, warnings, island })
    }
}

/// The first chain slot whose cycle starts comfortably in the future.
fn first_chain_slot(market: &Market) -> u64 {
    let contracts = &market.c;
    let now = now_unix();
    let mut c0 = contracts.slot_at(now as u64).unwrap_or(0) + 2;
    while contracts.slot_start(c0 - 1) as f64 - (contracts.gate_closure as f64) < now + 2.0 {
        c0 += 1;
    }
    c0
}

/// The operator's reading of a binding PCC limit in day slot `day_slot`: the community's net
/// import forecast from every household's own forecast (expected load, clear-sky PV times its last
/// measured clear-sky index; batteries are left out), against the limits.
fn operator_pricing(cfg: &SimConfig, hh: &[Hh], day_slot: usize) -> Option<PccPricing> {
    if cfg.islanded.is_some() {
        return Some(PccPricing::Islanded);
    }
    if !cfg.pcc.is_limited() {
        return None;
    }
    let export: f64 = hh.iter().map(|h| forecast_net(&h.trace, day_slot, h.clear_sky_index)).sum();
    PccPricing::decide(-export, &cfg.pcc, SLOT_MINUTES as f64 / 60.0)
}

/// The operator's keeper opens slots ahead of their orders (`openSlot`: price snapshot and level
/// words paid in advance, so that no order creates storage): the first four now, then one per
/// cycle (the clearer), three slots ahead of the slot whose orders start next (a slot of margin for
/// a keeper that falls behind on a loaded machine). Every slot the households order in is opened
/// here: only the operator opens a slot and fixes its prices, an order in a slot not yet open
/// reverts with `SlotNotOpen` (issue 14).
async fn open_first_slots(
    market: &Market,
    operator: &DynProvider,
    c0: u64,
    prices: &[Option<(u128, u128)>],
    tx: &mut TxStats,
) -> anyhow::Result<()> {
    let opens: Vec<TransactionRequest> = prices
        .iter()
        .enumerate()
        .flat_map(|(i, p)| open_requests(market, operator, c0 + i as u64, *p))
        .collect();
    tx.opens += prices.len() as u64;
    send_filled(&market.rpc, operator, opens, Duration::from_secs(10), tx, "open").await?;
    Ok(())
}

fn progress_bar(cfg: &SimConfig) -> ProgressBar {
    let progress = if cfg.quiet { ProgressBar::hidden() } else { ProgressBar::new(cfg.slots as u64) };
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos:>2}/{len} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    progress
}

impl DayLoop<'_> {
    /// The gate of slot `k` has closed: clear it, work out the fills, deliver it and queue its
    /// settlement.
    async fn close_slot(&mut self, hh: &mut [Hh], k: usize) -> anyhow::Result<()> {
        let (cfg, market, contracts) = (self.cfg, self.market, &self.market.c);
        let ck = self.slots[k].chain_slot;
        // 1. Once the last block that could hold its orders is in, its book is final and public.
        //    The operator's keeper clears it; every household knows its fills already (the
        //    clearing is a deterministic function of the book).
        wait_for_block_time(&market.rpc, contracts.slot_start(ck) - contracts.gate_closure as u64, 10.0)
            .await;
        let i = k + 1;
        let open = (i + 3 < cfg.slots).then(|| {
            let pricing = operator_pricing(cfg, hh, cfg.first_slot + i + 3);
            self.slots[i + 3].pcc_pricing = pricing;
            (self.c0 + i as u64 + 3, pricing.and_then(|p| p.prices(&self.defaults)))
        });
        // The operator reports slot k − 2, delivered by now (slot k − 1 ends as slot k starts).
        let report = k.checked_sub(2).and_then(|j| Some((self.slots[j].chain_slot, self.slots[j].report?)));
        self.clear_tx.send(ClearJob { index: k, clear: Some(ck), open, report }).await.ok();
        let (head, _) = market.rpc.head().await.map_err(rpc_err)?;
        let book = market.slot_events(ck, self.setup_block, head).await.map_err(rpc_err)?.book();
        let cleared_msg = self.fills_from_book(hh, k, &book);
        // 2. Physics of slot k (delivered from now on) and its meters' readings.
        // The slot's last reading carries the register at the slot's end, so it is stamped with the end
        // (the next slot's start): the contract interpolates slot boundaries between the readings that
        // bracket them, and a reading exactly at the boundary fixes it exactly.
        self.slots[k].last_reading_ts = contracts.slot_start(ck + 1);
        for h in hh.iter_mut() {
            h.slots[k].soc_start = h.battery.map_or(0.0, |b| b.soc_wh);
        }
        if cfg.lab.is_none() {
            let schedule = self.deliver(hh, k);
            if self.telemetry.send(schedule).await.is_err() {
                self.warnings.push("the meter task stopped".into());
            }
        }
        // 3. Settlement, once the slot is cleared, its grace period is over and the readings are in.
        if !book.is_empty() {
            let end = contracts.slot_start(ck + 1) as f64;
            let job = SettleJob {
                index: k,
                chain_slot: ck,
                households: hh
                    .iter()
                    .map(|h| Participant { account: h.account.address(), meter: h.meter })
                    .collect(),
                // Simulated meters: their last reading of the slot. Real meters: a reading at or
                // after the slot's end (the bridge submits each meter's readings in order, so
                // everything the meter sent during the slot is then on chain).
                min_reading_ts: if cfg.lab.is_none() {
                    self.slots[k].last_reading_ts
                } else {
                    contracts.slot_start(ck + 1)
                },
                slot_end: end,
                not_before: end + contracts.grace_period as f64 + 0.1,
                give_up_at: end + contracts.grace_period as f64 + 3.0 * contracts.slot_length as f64 + 15.0,
            };
            self.settle_tx.send(job).await.ok();
        }
        self.progress.set_message(cleared_msg);
        self.progress.inc(1);
        Ok(())
    }

    /// Each household's fills in slot `k` from its final book (the merit order the contract
    /// applies); returns the progress message.
    fn fills_from_book(&mut self, hh: &mut [Hh], k: usize, book: &[BookOrder]) -> String {
        let mut msg = format!("{} no trade", hhmm(self.cfg.first_slot + k));
        let Some(p) = self.slots[k].prices else { return msg };
        let orders: Vec<crate::clearing::Order<usize>> = book
            .iter()
            .filter_map(|o| {
                let j = hh.iter().position(|h| h.account.address() == o.account)?;
                Some(crate::clearing::Order { who: j, side: o.side, level: p.level(o.price)?, wh: o.wh })
            })
            .collect();
        let cl = crate::clearing::merit_order(&orders);
        for o in &orders {
            hh[o.who].slots[k].position = true;
            let f = cl.fills.get(&(o.who, o.side)).copied().unwrap_or(0.0).floor() as u64;
            match o.side {
                Side::Bid => hh[o.who].slots[k].fills.bought_wh = f,
                Side::Ask => hh[o.who].slots[k].fills.sold_wh = f,
            }
        }
        if let Some(level) = cl.price_level {
            self.last_alpha = Some(p.alpha(p.price(level)));
            msg = format!(
                "{} price {:.3} vol {:.1} kWh",
                hhmm(self.cfg.first_slot + k),
                credits_per_kwh(p.price(level)),
                cl.volume_wh as f64 / 1000.0
            );
        }
        msg
    }

    /// Slot `k`'s physics of every member, platform and baseline, in `hh`'s order: the households
    /// minute by minute behind the PCC (islanded: behind the community's assets, each run with its
    /// own copy of them; the genset runs what it sold), then each asset's part of the dispatch.
    fn physics(&mut self, hh: &mut [Hh], k: usize) -> (Vec<SlotPhysics>, Vec<SlotPhysics>) {
        let day_slot = self.cfg.first_slot + k;
        if let Some(i) = self.island.as_mut() {
            let sold = |kind| {
                hh.iter().find(|h| h.asset == Some(kind)).map_or(0.0, |h| h.slots[k].fills.sold_wh as f64)
            };
            i.set_genset_schedule(day_slot, sold(AssetKind::Genset));
            i.set_plant_schedule(day_slot, sold(AssetKind::Plant));
        }
        let (mut limits, mut base_limits) = (self.cfg.pcc, self.cfg.pcc);
        let coupling: &mut dyn Coupling = match self.island.as_mut() {
            Some(i) => i,
            None => &mut limits,
        };
        let base_coupling: &mut dyn Coupling = match self.base_island.as_mut() {
            Some(i) => i,
            None => &mut base_limits,
        };
        let (mut phys, pcc_kw) = {
            let mut members: Vec<Member> = hh
                .iter_mut()
                .filter(|h| h.is_household())
                .map(|h| Member {
                    target_export_wh: h.slots[k].fills.target_export_wh(),
                    trace: &h.trace,
                    battery: h.battery.as_mut(),
                })
                .collect();
            step_community(&mut members, day_slot, coupling)
        };
        let (mut base, _) = {
            let mut members: Vec<Member> = hh
                .iter_mut()
                .filter(|h| h.is_household())
                .map(|h| Member { trace: &h.trace, battery: h.base_battery.as_mut(), target_export_wh: 0.0 })
                .collect();
            step_community(&mut members, day_slot, base_coupling)
        };
        self.slots[k].report =
            Some(SlotReport::from_slot(day_slot, &pcc_kw, phys.iter(), self.island.as_ref()));
        self.slots[k].pcc_import_kw = pcc_kw;
        let (Some(island), Some(base_island)) = (&self.island, &self.base_island) else {
            return (phys, base);
        };
        for h in hh.iter_mut() {
            let Some(kind) = h.asset else { continue };
            let dispatched = "the island dispatched every minute of the slot";
            phys.push(island.asset_physics(kind, day_slot).expect(dispatched));
            base.push(base_island.asset_physics(kind, day_slot).expect(dispatched));
            if kind == AssetKind::Storage {
                // The storage's agent reads its state of charge as a household reads its battery's.
                (h.battery, h.base_battery) = (Some(island.battery), Some(base_island.battery));
            }
        }
        (phys, base)
    }

    /// Runs slot `k`'s physics for every member (platform and baseline) and returns its meters'
    /// schedule of messages.
    fn deliver(&mut self, hh: &mut [Hh], k: usize) -> Schedule {
        let start_k = self.market.c.slot_start(self.slots[k].chain_slot) as f64;
        let slot_len = self.market.c.slot_length as f64;
        let mut schedule: Schedule = self
            .publish_offsets
            .iter()
            .map(|(o, _)| (start_k + *o as f64 + 0.05, Vec::with_capacity(hh.len())))
            .collect();
        let (phys, base) = self.physics(hh, k);
        // The day's first slot: its start boundary is fixed by a reading stamped exactly there (later
        // slots have the previous slot's last reading, stamped with their start).
        let mut boundary = Vec::new();
        for ((h, p), base) in hh.iter_mut().zip(phys).zip(base) {
            let reg_start =
                Registers { import_wh: register(h.meter_import), export_wh: register(h.meter_export) };
            if k == 0 {
                boundary.push(Telemetry {
                    ts: start_k,
                    import_wh: h.meter_import,
                    export_wh: h.meter_export,
                    power_w: 0.0,
                });
            }
            for (n, (_, minute)) in self.publish_offsets.iter().enumerate() {
                let m = minute - 1;
                let prev =
                    if m == 0 { (0.0, 0.0) } else { (p.import_by_minute[m - 1], p.export_by_minute[m - 1]) };
                let power = ((p.import_by_minute[m] - prev.0) - (p.export_by_minute[m] - prev.1)) * 60.0;
                // The register after the slot's last minute is the register at its end.
                let ts = if *minute == SLOT_MINUTES { start_k + slot_len } else { schedule[n].0 };
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
            s.reg_end =
                Registers { import_wh: register(h.meter_import), export_wh: register(h.meter_export) };
            s.base_delta = Registers {
                import_wh: register(h.base_import) - b0.0,
                export_wh: register(h.base_export) - b0.1,
            };
            s.phys = Some(p);
            s.base = Some(base);
        }
        if !boundary.is_empty() {
            schedule.insert(0, (start_k + 0.05, boundary));
        }
        schedule
    }
}

/// Waits for the keepers to finish and records what they did.
async fn collect_keepers(
    clear_task: JoinHandle<Vec<(usize, ClearOutcome)>>,
    settle_task: JoinHandle<Vec<(usize, SettleOutcome)>>,
    tx: &mut TxStats,
    slots: &mut [SlotRec],
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    for (idx, o) in clear_task.await.context("clearing task")? {
        tx.clears += o.txs;
        tx.opens += o.opens;
        tx.reports += o.reports;
        for e in &o.report_errors {
            record_failure(tx, "report", format!("slot index {idx}: {e}"));
        }
        for e in &o.open_errors {
            record_failure(tx, "open", format!("after slot index {idx}: {e}"));
        }
        for e in &o.errors {
            record_failure(tx, "clear", format!("slot index {idx}: {e}"));
        }
        if !o.cleared && !o.empty {
            warnings.push(format!("slot index {idx}: not cleared"));
        }
    }
    for (idx, o) in settle_task.await.context("settlement task")? {
        tx.settles += o.txs;
        for e in &o.errors {
            record_failure(tx, "settle", format!("slot index {idx}: {e}"));
        }
        slots[idx].settle = Some(o);
    }
    Ok(())
}
