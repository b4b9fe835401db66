//! `p2pe-sim`: with no arguments, a dev chain, an embedded MQTT broker, the bridge, 20 simulated
//! households with meters and trading agents, and a simulated day of 96 slots of 5 s each.
//! `--help` lists every option; README, "Simulator", explains them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use p2pe_sim::calendar::Date;
use p2pe_sim::config::SimConfig;
use p2pe_sim::household::Strategy;
use p2pe_sim::island::IslandSpec;
use p2pe_sim::lab::{parse_offset, LabConfig};
use p2pe_sim::pcc::PccLimits;

/// Microgrid simulator and trading agents on the p2p-energy chain.
#[derive(Parser, Debug)]
#[command(name = "p2pe-sim", version)]
struct Args {
    /// Number of simulated households.
    #[arg(long, default_value_t = 20)]
    households: usize,
    /// Number of 15-minute slots to simulate.
    #[arg(long, default_value_t = 96)]
    slots: usize,
    /// First slot of the day to simulate, as `HH:MM` (a multiple of 15 minutes).
    #[arg(long, default_value = "00:00")]
    start: String,
    /// Wall-clock seconds per 15-minute slot (the contracts accept ≥ 5).
    #[arg(long, default_value_t = 5)]
    slot_seconds: u32,
    /// Gate closure: orders close this many seconds before a slot starts.
    #[arg(long, default_value_t = 1)]
    gate_closure: u32,
    /// Seconds after a slot ends before it may be settled; also how long the meters' readings of the
    /// slot may take to reach the chain (the readings contract makes the slot final then).
    #[arg(long, default_value_t = 5)]
    grace_period: u32,
    /// Order rounds per slot along the agents' price ramp.
    #[arg(long, default_value_t = 3)]
    ramp_rounds: usize,
    /// Simulated seconds between two messages of a meter (Tasmota's TelePeriod is 300).
    #[arg(long, default_value_t = 300)]
    telemetry_seconds: u32,
    /// The simulated day.
    #[arg(long, default_value = "2026-06-21")]
    date: String,
    /// Local time zone of the site, e.g. +02:00.
    #[arg(long, default_value = "+02:00", allow_hyphen_values = true)]
    utc_offset: String,
    /// Latitude of the site, degrees north.
    #[arg(long, default_value_t = 48.14, allow_hyphen_values = true)]
    lat: f64,
    /// Longitude of the site, degrees east.
    #[arg(long, default_value_t = 11.58, allow_hyphen_values = true)]
    lon: f64,
    /// Altitude of the site, metres.
    #[arg(long, default_value_t = 520.0)]
    altitude: f64,
    /// Linke turbidity of the clear sky.
    #[arg(long, default_value_t = 3.5)]
    turbidity: f64,
    /// Mean cloud cover of the day, 0 (clear) to 1 (overcast).
    #[arg(long, default_value_t = 0.3)]
    cloudiness: f64,
    /// Random seed (households, weather, load).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of households with PV.
    #[arg(long, default_value_t = 0.5)]
    pv_share: f64,
    /// Share of households with PV and a battery.
    #[arg(long, default_value_t = 0.2)]
    battery_share: f64,
    /// Strategy of battery households: arbitrage or ramp.
    #[arg(long, default_value = "arbitrage")]
    battery_strategy: String,
    /// Credits deposited for each household.
    #[arg(long, default_value_t = 100)]
    deposit: u64,
    /// Fraction of a forecast deficit that agents bid.
    #[arg(long, default_value_t = 0.9)]
    buy_fraction: f64,
    /// Fraction of a forecast surplus that agents ask.
    #[arg(long, default_value_t = 0.8)]
    sell_fraction: f64,
    /// An external MQTT broker (mqtt://host:port) instead of the embedded one.
    #[arg(long)]
    broker: Option<String>,
    /// User name on the external broker.
    #[arg(long)]
    broker_user: Option<String>,
    /// File whose first line is the broker password.
    #[arg(long)]
    broker_password_file: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "p2pe-sim-out")]
    out: PathBuf,
    /// Keep the chain's data directory in OUT/chain.
    #[arg(long)]
    keep_chain: bool,
    /// No progress bar and no console messages except the summary.
    #[arg(long)]
    quiet: bool,
    /// Lab configuration: households mapped to real meters (README, "Simulator").
    #[arg(long)]
    lab: Option<PathBuf>,
    /// Do not simulate meters: real meters publish (needs --lab).
    #[arg(long)]
    no_sim_meters: bool,
    /// Port of the dev chain's JSON-RPC and of the trading dApp (http://127.0.0.1:PORT/). If it is
    /// taken (or 0), a free port is used and printed.
    #[arg(long, default_value_t = 8545)]
    rpc_port: u16,
    /// After the day, keep the dev chain and the dApp running (to look around in the browser) until
    /// Ctrl-C.
    #[arg(long)]
    stay: bool,
    /// Import limit of the community's connection to the grid (point of common coupling), kW:
    /// import beyond it sheds load. Default: none (or the lab file's `[pcc] import_kw`).
    #[arg(long)]
    pcc_import_kw: Option<f64>,
    /// Export limit of the community's connection, kW: export beyond it curtails PV. Default: none
    /// (or the lab file's `[pcc] export_kw`).
    #[arg(long)]
    pcc_export_kw: Option<f64>,
    /// Islanded: no grid; a community battery, a genset and a PV plant balance the community every
    /// minute, and the operator prices every slot between a floor and a cap (README, "Islanded").
    #[arg(long)]
    islanded: bool,
    /// Islanded: the community battery's capacity, kWh.
    #[arg(long, default_value_t = 60.0)]
    island_battery_kwh: f64,
    /// Islanded: the community battery's charge and discharge power, kW.
    #[arg(long, default_value_t = 30.0)]
    island_battery_kw: f64,
    /// Islanded: the genset's rating, kW (0: none).
    #[arg(long, default_value_t = 20.0)]
    genset_kw: f64,
    /// Islanded: the PV plant's peak power, kWp (0: none).
    #[arg(long, default_value_t = 30.0)]
    plant_kwp: f64,
    /// Islanded: fuel price, credits per litre.
    #[arg(long, default_value_t = 1.2)]
    fuel_price: f64,
    /// Islanded: the value of lost load, credits/kWh: the cap of the islanded price band above
    /// its 0.08 floor (what unbought import costs). Default: 0.335, the most the registry's 255
    /// price levels reach at the 0.001 tick; a higher cap (studies use 5–20) deploys the dev chain
    /// with the finest coarser tick that reaches it exactly (0.02 for 5).
    #[arg(long)]
    voll: Option<f64>,
}

fn config(a: Args) -> anyhow::Result<SimConfig> {
    let mut c = SimConfig::defaults();
    c.households = a.households;
    c.slots = a.slots;
    let (h, m) = a.start.split_once(':').ok_or_else(|| anyhow::anyhow!("--start must be HH:MM"))?;
    let (h, m): (usize, usize) = (h.parse()?, m.parse()?);
    if h > 23 || m % 15 != 0 || m > 45 {
        anyhow::bail!("--start must be HH:MM on a quarter hour");
    }
    c.first_slot = h * 4 + m / 15;
    c.slot_seconds = a.slot_seconds;
    c.gate_closure = a.gate_closure;
    c.grace_period = a.grace_period;
    c.ramp_rounds = a.ramp_rounds;
    c.telemetry_seconds = a.telemetry_seconds;
    c.date = Date::parse(&a.date).ok_or_else(|| anyhow::anyhow!("--date must be YYYY-MM-DD"))?;
    c.utc_offset_secs = parse_offset(&a.utc_offset)?;
    c.location.lat_deg = a.lat;
    c.location.lon_deg = a.lon;
    c.location.altitude_m = a.altitude;
    c.location.linke_turbidity = a.turbidity;
    c.cloudiness = a.cloudiness;
    c.seed = a.seed;
    c.pv_share = a.pv_share;
    c.battery_share = a.battery_share;
    c.battery_strategy = match a.battery_strategy.as_str() {
        "arbitrage" => Strategy::Arbitrage,
        "ramp" => Strategy::Ramp,
        s => anyhow::bail!("--battery-strategy must be arbitrage or ramp, not {s}"),
    };
    c.deposit_credits = a.deposit;
    c.agent.buy_fraction = a.buy_fraction;
    c.agent.sell_fraction = a.sell_fraction;
    c.broker = a.broker;
    c.broker_user = a.broker_user;
    c.broker_password = match a.broker_password_file {
        Some(p) => Some(std::fs::read_to_string(&p)?.lines().next().unwrap_or("").to_string()),
        None => None,
    };
    c.out = a.out;
    c.keep_chain = a.keep_chain;
    c.rpc_port = Some(a.rpc_port);
    c.stay = a.stay;
    c.quiet = a.quiet;
    c.lab = match (a.lab, a.no_sim_meters) {
        (Some(p), _) => Some(LabConfig::load(&p)?),
        (None, true) => {
            anyhow::bail!("--no-sim-meters needs --lab FILE mapping the real meters to households")
        }
        (None, false) => None,
    };
    let lab_pcc = c.lab.as_ref().and_then(|l| l.pcc).unwrap_or_default();
    c.pcc = PccLimits {
        import_kw: a.pcc_import_kw.or(lab_pcc.import_kw),
        export_kw: a.pcc_export_kw.or(lab_pcc.export_kw),
    };
    c.pcc.validate()?;
    if a.islanded || c.lab.as_ref().is_some_and(|l| l.islanded) {
        if c.pcc.is_limited() {
            anyhow::bail!("--islanded has no grid connection: drop --pcc-import-kw / --pcc-export-kw");
        }
        let mut s = IslandSpec::defaults();
        s.battery.capacity_wh = a.island_battery_kwh * 1000.0;
        s.battery.max_charge_w = a.island_battery_kw * 1000.0;
        s.battery.max_discharge_w = a.island_battery_kw * 1000.0;
        s.genset_kw = a.genset_kw;
        s.plant_kwp = a.plant_kwp;
        s.fuel_price = a.fuel_price;
        s.validate()?;
        c.islanded = Some(s);
        c.voll = a.voll;
        c.price_tick_milli()?;
    } else if a.voll.is_some() {
        anyhow::bail!("--voll is the islanded price cap: it needs --islanded");
    }
    Ok(c)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("P2PE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rumqttd=off"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cfg = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = rt.block_on(async {
        tokio::select! {
            r = p2pe_sim::simulate(cfg) => r.map(Some),
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    });
    match result {
        Ok(Some(f)) => {
            println!("{}", f.table);
            if let Some(chain) = &f.live {
                eprintln!("the dev chain and the dApp stay up at {}/ until Ctrl-C", chain.url);
                rt.block_on(async {
                    tokio::signal::ctrl_c().await.ok();
                });
            }
            if f.checks.passed() {
                ExitCode::SUCCESS
            } else {
                eprintln!("end-of-run checks failed (details in {})", f.out.join("summary.json").display());
                ExitCode::from(1)
            }
        }
        Ok(None) => {
            eprintln!("interrupted");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
