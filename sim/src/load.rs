//! Household load from a standard load profile that this project generates itself.
//!
//! The profile follows the *structure* of the BDEW H0 household profile (96 quarter-hour values for
//! 3 seasons × 3 day types, scaled to 1,000 kWh per year, multiplied by the dynamisation factor
//! `F(t) = −3.92e−10·t⁴ + 3.2e−7·t³ − 7.02e−5·t² + 2.1e−3·t + 1.24` for day of year `t`), but its
//! values are not BDEW's: each day shape is a night base plus Gaussian bumps for the morning,
//! lunch, afternoon, evening and late-evening activity, with parameters chosen here (later and
//! broader mornings at weekends, a big Sunday lunch, a later and smaller evening peak in summer).
//! Every shape is normalised to a mean of 1, weekend days carry slightly more energy, and the
//! whole year is scaled so that it sums to exactly 1,000 kWh.
//!
//! A household draws its annual consumption, a personal time shift, a slowly varying multiplicative
//! noise and random appliance events (kettle, oven, washing machine) whose expected energy is a
//! fixed share of the profile's, so its expected daily energy stays the profile's.

use rand::Rng;

use crate::calendar::{Date, Weekday};
use crate::rng::{normal, uniform};

/// BDEW seasons: winter 1 Nov – 20 Mar, summer 15 May – 14 Sep, transition otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Season {
    /// 1 November – 20 March.
    Winter,
    /// 15 May – 14 September.
    Summer,
    /// The rest of the year.
    Transition,
}

/// BDEW day types (public holidays count as Sundays; none are modelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayType {
    /// Monday to Friday.
    Workday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

/// The season of a date.
pub fn season_of(d: Date) -> Season {
    match (d.month, d.day) {
        (11..=12, _) | (1..=2, _) | (3, 1..=20) => Season::Winter,
        (5, 15..) | (6..=8, _) | (9, 1..=14) => Season::Summer,
        _ => Season::Transition,
    }
}

/// The day type of a date.
pub fn day_type_of(d: Date) -> DayType {
    match d.weekday() {
        Weekday::Sat => DayType::Saturday,
        Weekday::Sun => DayType::Sunday,
        _ => DayType::Workday,
    }
}

/// The dynamisation factor for day of year `t` (1–366).
pub fn dynamisation(t: u32) -> f64 {
    let t = t as f64;
    -3.92e-10 * t.powi(4) + 3.2e-7 * t.powi(3) - 7.02e-5 * t.powi(2) + 2.1e-3 * t + 1.24
}

/// (centre hour, width in hours, amplitude) of each activity bump, and the night base.
fn shape_params(season: Season, day: DayType) -> (f64, [(f64, f64, f64); 5]) {
    use DayType::*;
    use Season::*;
    match (day, season) {
        (Workday, Winter) => (
            0.55,
            [(7.0, 0.8, 0.55), (12.3, 1.2, 0.55), (15.5, 2.0, 0.30), (19.0, 1.7, 1.15), (22.3, 0.9, 0.25)],
        ),
        (Workday, Transition) => (
            0.55,
            [(7.0, 0.8, 0.50), (12.3, 1.2, 0.55), (15.8, 2.1, 0.32), (19.6, 1.8, 1.00), (22.5, 0.9, 0.25)],
        ),
        (Workday, Summer) => (
            0.55,
            [(6.8, 0.8, 0.45), (12.3, 1.2, 0.55), (16.0, 2.2, 0.35), (20.3, 1.8, 0.85), (22.8, 0.9, 0.25)],
        ),
        (Saturday, Winter) => (
            0.55,
            [(9.0, 1.4, 0.60), (12.3, 1.1, 0.70), (15.5, 2.2, 0.45), (18.9, 1.7, 1.05), (22.5, 1.0, 0.30)],
        ),
        (Saturday, Transition) => (
            0.55,
            [(9.0, 1.4, 0.55), (12.3, 1.1, 0.68), (15.8, 2.3, 0.45), (19.5, 1.8, 0.92), (22.8, 1.0, 0.30)],
        ),
        (Saturday, Summer) => (
            0.55,
            [(9.0, 1.4, 0.50), (12.3, 1.1, 0.65), (16.0, 2.4, 0.45), (20.0, 1.8, 0.80), (23.0, 1.0, 0.30)],
        ),
        (Sunday, Winter) => (
            0.55,
            [(9.5, 1.3, 0.60), (12.2, 0.9, 1.00), (15.5, 2.2, 0.40), (18.7, 1.6, 0.95), (22.0, 1.0, 0.20)],
        ),
        (Sunday, Transition) => (
            0.55,
            [(9.5, 1.3, 0.55), (12.2, 0.9, 0.95), (15.8, 2.3, 0.40), (19.3, 1.7, 0.85), (22.3, 1.0, 0.20)],
        ),
        (Sunday, Summer) => (
            0.55,
            [(9.5, 1.3, 0.50), (12.2, 0.9, 0.90), (16.0, 2.4, 0.40), (19.8, 1.8, 0.75), (22.5, 1.0, 0.20)],
        ),
    }
}

/// Unnormalised shape at `hour` (0–24), circular over midnight.
fn raw_shape(season: Season, day: DayType, hour: f64) -> f64 {
    let (base, bumps) = shape_params(season, day);
    let mut v = base;
    for (mu, sigma, a) in bumps {
        for wrap in [-24.0, 0.0, 24.0] {
            let z = (hour - mu - wrap) / sigma;
            v += a * (-0.5 * z * z).exp();
        }
    }
    v
}

/// Relative daily energy of a day type (people at home use a little more at weekends).
fn day_level(day: DayType) -> f64 {
    match day {
        DayType::Workday => 1.0,
        DayType::Saturday => 1.05,
        DayType::Sunday => 1.08,
    }
}

/// The generated standard load profile for one year, at 1,000 kWh/year.
#[derive(Debug, Clone)]
pub struct StandardLoadProfile {
    year: i32,
    /// Mean power (W) of a day with F = 1 and level 1, so that the year sums to 1,000 kWh.
    mean_w: f64,
    /// Normalised minute shapes (mean 1) per (season, day type), 1440 values each.
    shapes: Vec<((Season, DayType), Vec<f64>)>,
}

impl StandardLoadProfile {
    /// The profile for `year`.
    pub fn new(year: i32) -> Self {
        let mut shapes = Vec::new();
        for season in [Season::Winter, Season::Summer, Season::Transition] {
            for day in [DayType::Workday, DayType::Saturday, DayType::Sunday] {
                let raw: Vec<f64> =
                    (0..1440).map(|m| raw_shape(season, day, (m as f64 + 0.5) / 60.0)).collect();
                let mean = raw.iter().sum::<f64>() / raw.len() as f64;
                shapes.push(((season, day), raw.into_iter().map(|v| v / mean).collect()));
            }
        }
        let first = Date::new(year, 1, 1).expect("1 January");
        let days = first.days_in_year();
        let weight: f64 = (0..days)
            .map(|i| {
                let d = Date::from_days_since_epoch(first.days_since_epoch() + i as i64);
                dynamisation(d.day_of_year()) * day_level(day_type_of(d))
            })
            .sum();
        let mean_w = 1_000_000.0 / (24.0 * weight);
        Self { year, mean_w, shapes }
    }

    /// The year this profile is scaled for.
    pub fn year(&self) -> i32 {
        self.year
    }

    fn shape(&self, season: Season, day: DayType) -> &[f64] {
        &self.shapes.iter().find(|(k, _)| *k == (season, day)).expect("all nine shapes").1
    }

    /// Power (W, at 1,000 kWh/year) on `date` at `minute` of the local day (0–1439), dynamised.
    pub fn power_w(&self, date: Date, minute: usize) -> f64 {
        let f = dynamisation(date.day_of_year()) * day_level(day_type_of(date));
        self.mean_w * f * self.shape(season_of(date), day_type_of(date))[minute % 1440]
    }

    /// The 96 quarter-hour values (W at 1,000 kWh/year, before dynamisation) of a season and day
    /// type, as a BDEW-style table row.
    pub fn quarter_hours(&self, season: Season, day: DayType) -> Vec<f64> {
        let s = self.shape(season, day);
        (0..96)
            .map(|q| self.mean_w * day_level(day) * s[q * 15..q * 15 + 15].iter().sum::<f64>() / 15.0)
            .collect()
    }
}

/// One household's consumption model.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadModel {
    /// Annual consumption, kWh.
    pub annual_kwh: f64,
    /// Personal time shift of the daily routine, minutes (positive = later).
    pub shift_min: f64,
    /// Standard deviation of the slowly varying multiplicative noise (log scale).
    pub noise_sigma: f64,
    /// Share of the expected energy that comes as discrete appliance events.
    pub event_share: f64,
}

/// Mean power (W) and duration (min) ranges of appliance events.
const EVENT_POWER_W: (f64, f64) = (800.0, 2500.0);
const EVENT_MINUTES: (f64, f64) = (5.0, 40.0);

impl LoadModel {
    /// A random household: 1–5 persons with typical German annual consumptions, a time shift of
    /// about ±30 minutes, and noise.
    pub fn random<R: Rng>(rng: &mut R) -> Self {
        let persons = [1, 2, 2, 3, 3, 4, 4, 5][rng.gen_range(0..8)];
        let typical = match persons {
            1 => 1_800.0,
            2 => 2_800.0,
            3 => 3_600.0,
            4 => 4_200.0,
            _ => 5_000.0,
        };
        Self {
            annual_kwh: typical * uniform(rng, 0.8, 1.2),
            shift_min: (normal(rng) * 30.0).clamp(-75.0, 75.0),
            noise_sigma: 0.3,
            event_share: 0.3,
        }
    }

    /// Expected power (W) at `minute` of `date`: the profile scaled to the annual consumption and
    /// shifted by the household's routine. This is what the household's agent forecasts.
    pub fn expected_w(&self, slp: &StandardLoadProfile, date: Date, minute: usize) -> f64 {
        let m = (minute as f64 - self.shift_min).round().rem_euclid(1440.0) as usize;
        slp.power_w(date, m) * self.annual_kwh / 1000.0
    }

    /// One day of minute powers (W): the expected power split into a noisy base part (AR(1)
    /// log-normal factor with mean 1) and appliance events (Poisson, with an intensity that follows
    /// the profile, so that their expected energy is `event_share` of the expected energy).
    pub fn simulate_day<R: Rng>(&self, slp: &StandardLoadProfile, date: Date, rng: &mut R) -> Vec<f64> {
        let phi: f64 = 0.97;
        let s = self.noise_sigma;
        let mean_event_wmin =
            (EVENT_POWER_W.0 + EVENT_POWER_W.1) / 2.0 * (EVENT_MINUTES.0 + EVENT_MINUTES.1) / 2.0;
        let mut x = normal(rng) * s;
        let mut out = vec![0.0; 1440];
        for (m, slot) in out.iter_mut().enumerate() {
            let expected = self.expected_w(slp, date, m);
            x = phi * x + s * (1.0 - phi * phi).sqrt() * normal(rng);
            *slot += (1.0 - self.event_share) * expected * (x - s * s / 2.0).exp();
        }
        for m in 0..1440 {
            let expected = self.expected_w(slp, date, m);
            let p = self.event_share * expected / mean_event_wmin;
            if rng.gen::<f64>() < p {
                let power = uniform(rng, EVENT_POWER_W.0, EVENT_POWER_W.1);
                let minutes = uniform(rng, EVENT_MINUTES.0, EVENT_MINUTES.1);
                let whole = minutes.floor() as usize;
                for k in 0..=whole {
                    let frac = if k < whole { 1.0 } else { minutes - whole as f64 };
                    out[(m + k) % 1440] += power * frac;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn dynamisation_matches_the_published_polynomial() {
        assert!((dynamisation(1) - 1.2421).abs() < 1e-3);
        assert!((dynamisation(180) - 0.798).abs() < 2e-3, "{}", dynamisation(180));
        assert!(dynamisation(180) < dynamisation(1) && dynamisation(180) < dynamisation(365));
    }

    #[test]
    fn seasons_and_day_types() {
        let d = |s| Date::parse(s).unwrap();
        assert_eq!(season_of(d("2026-03-20")), Season::Winter);
        assert_eq!(season_of(d("2026-03-21")), Season::Transition);
        assert_eq!(season_of(d("2026-05-15")), Season::Summer);
        assert_eq!(season_of(d("2026-09-15")), Season::Transition);
        assert_eq!(season_of(d("2026-11-01")), Season::Winter);
        assert_eq!(day_type_of(d("2026-06-20")), DayType::Saturday);
        assert_eq!(day_type_of(d("2026-06-21")), DayType::Sunday);
        assert_eq!(day_type_of(d("2026-06-22")), DayType::Workday);
    }

    #[test]
    fn profile_sums_to_1000_kwh_per_year() {
        for year in [2025, 2028] {
            let slp = StandardLoadProfile::new(year);
            let first = Date::new(year, 1, 1).unwrap();
            let mut wh = 0.0;
            for i in 0..first.days_in_year() as i64 {
                let d = Date::from_days_since_epoch(first.days_since_epoch() + i);
                wh += (0..1440).map(|m| slp.power_w(d, m)).sum::<f64>() / 60.0;
            }
            assert!((wh / 1000.0 - 1000.0).abs() < 1e-6, "{year}: {} kWh", wh / 1000.0);
        }
    }

    #[test]
    fn profile_has_the_household_shape() {
        let slp = StandardLoadProfile::new(2026);
        let wd = slp.quarter_hours(Season::Winter, DayType::Workday);
        assert_eq!(wd.len(), 96);
        let night = wd[3 * 4..5 * 4].iter().sum::<f64>() / 8.0;
        let evening = wd[18 * 4..20 * 4].iter().sum::<f64>() / 8.0;
        let mean = wd.iter().sum::<f64>() / 96.0;
        assert!(night < 0.6 * mean, "night {night} mean {mean}");
        assert!(evening > 1.5 * mean, "evening {evening} mean {mean}");
        // Weekend mornings start later.
        let su = slp.quarter_hours(Season::Winter, DayType::Sunday);
        assert!(wd[7 * 4] > su[7 * 4]);
        assert!(su[10 * 4] > wd[10 * 4]);
        // Mean of a workday at F = 1 is about 1,000 kWh / 8,760 h = 114 W.
        assert!((mean - 114.0).abs() < 10.0, "{mean}");
    }

    #[test]
    fn household_day_has_the_expected_energy_on_average() {
        let slp = StandardLoadProfile::new(2026);
        let date = Date::parse("2026-06-22").unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let model = LoadModel { annual_kwh: 3500.0, shift_min: 20.0, noise_sigma: 0.3, event_share: 0.3 };
        let expected: f64 = (0..1440).map(|m| model.expected_w(&slp, date, m)).sum::<f64>() / 60.0;
        let n = 300;
        let mean: f64 =
            (0..n).map(|_| model.simulate_day(&slp, date, &mut rng).iter().sum::<f64>() / 60.0).sum::<f64>()
                / n as f64;
        assert!((mean / expected - 1.0).abs() < 0.03, "simulated {mean} Wh vs expected {expected} Wh");
        let day = model.simulate_day(&slp, date, &mut rng);
        assert!(day.iter().all(|w| *w > 0.0));
        // 3,500 kWh/year in June: roughly 7–9 kWh/day.
        assert!(expected > 6_500.0 && expected < 9_500.0, "{expected}");
    }
}
