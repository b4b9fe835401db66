//! Photovoltaic generation from first principles: the sun's position (NOAA's solar calculator
//! equations), clear-sky irradiance (Ineichen–Perez with a Linke turbidity), a cloudiness process
//! (bounded AR(1) cloud cover with the Kasten–Czeplak attenuation), transposition to the panel plane
//! (isotropic sky) and a PV system with temperature derating and lumped losses.

use rand::Rng;

use crate::rng::normal;

/// Where the microgrid is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// Latitude in degrees, north positive.
    pub lat_deg: f64,
    /// Longitude in degrees, east positive.
    pub lon_deg: f64,
    /// Altitude above sea level in metres.
    pub altitude_m: f64,
    /// Linke turbidity of the clear sky (2 very clean, 3–4 typical central Europe, 5+ hazy).
    pub linke_turbidity: f64,
}

/// The sun seen from a location.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SunPosition {
    /// Zenith angle in degrees (90 = horizon).
    pub zenith_deg: f64,
    /// Azimuth in degrees clockwise from north (180 = south).
    pub azimuth_deg: f64,
}

impl SunPosition {
    /// Solar elevation in degrees.
    pub fn elevation_deg(&self) -> f64 {
        90.0 - self.zenith_deg
    }
}

/// The sun's position at `unix_secs` (UTC) seen from `lat_deg`/`lon_deg`, by the equations of NOAA's
/// solar calculator (Meeus' low-precision solar coordinates; about 0.01° in zenith, without
/// atmospheric refraction).
pub fn sun_position(unix_secs: f64, lat_deg: f64, lon_deg: f64) -> SunPosition {
    let jd = unix_secs / 86_400.0 + 2_440_587.5;
    let t = (jd - 2_451_545.0) / 36_525.0;
    let l0 = (280.466_46 + t * (36_000.769_83 + t * 0.000_303_2)).rem_euclid(360.0);
    let m = 357.529_11 + t * (35_999.050_29 - 0.000_153_7 * t);
    let e = 0.016_708_634 - t * (0.000_042_037 + 0.000_000_126_7 * t);
    let mr = m.to_radians();
    let c = mr.sin() * (1.914_602 - t * (0.004_817 + 0.000_014 * t))
        + (2.0 * mr).sin() * (0.019_993 - 0.000_101 * t)
        + (3.0 * mr).sin() * 0.000_289;
    let true_long = l0 + c;
    let omega = (125.04 - 1934.136 * t).to_radians();
    let lambda = (true_long - 0.005_69 - 0.004_78 * omega.sin()).to_radians();
    let eps0 = 23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.000_59 - t * 0.001_813))) / 60.0) / 60.0;
    let eps = (eps0 + 0.002_56 * omega.cos()).to_radians();
    let decl = (eps.sin() * lambda.sin()).asin();
    let y = (eps / 2.0).tan().powi(2);
    let l0r = l0.to_radians();
    let eot_min = 4.0
        * (y * (2.0 * l0r).sin() - 2.0 * e * mr.sin() + 4.0 * e * y * mr.sin() * (2.0 * l0r).cos()
            - 0.5 * y * y * (4.0 * l0r).sin()
            - 1.25 * e * e * (2.0 * mr).sin())
        .to_degrees();
    let utc_min = unix_secs.rem_euclid(86_400.0) / 60.0;
    let tst = (utc_min + eot_min + 4.0 * lon_deg).rem_euclid(1440.0);
    let ha = (tst / 4.0 - 180.0).to_radians();
    let lat = lat_deg.to_radians();
    let cos_z = (lat.sin() * decl.sin() + lat.cos() * decl.cos() * ha.cos()).clamp(-1.0, 1.0);
    let zenith = cos_z.acos();
    let az_south = ha.sin().atan2(ha.cos() * lat.sin() - decl.tan() * lat.cos());
    SunPosition {
        zenith_deg: zenith.to_degrees(),
        azimuth_deg: (az_south.to_degrees() + 180.0).rem_euclid(360.0),
    }
}

/// Irradiance components in W/m².
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Irradiance {
    /// Global horizontal.
    pub ghi: f64,
    /// Direct normal.
    pub dni: f64,
    /// Diffuse horizontal.
    pub dhi: f64,
}

/// Extraterrestrial normal irradiance on day of year `doy` (W/m²).
pub fn extraterrestrial(doy: u32) -> f64 {
    1361.0 * (1.0 + 0.033 * (2.0 * std::f64::consts::PI * doy as f64 / 365.0).cos())
}

/// Clear-sky irradiance by the Ineichen–Perez model (Solar Energy 73(3), 2002) with the Perez
/// enhancement factor, for the sun at `zenith_deg` on day `doy` at `altitude_m`, Linke turbidity `tl`.
pub fn clear_sky(zenith_deg: f64, doy: u32, altitude_m: f64, tl: f64) -> Irradiance {
    let cos_z = zenith_deg.to_radians().cos();
    if zenith_deg >= 90.0 || cos_z <= 0.0 {
        return Irradiance::default();
    }
    // Kasten–Young relative air mass, made absolute with the pressure at the altitude.
    let am_rel = 1.0 / (cos_z + 0.505_72 * (96.079_95 - zenith_deg).powf(-1.6364));
    let pressure_ratio = (1.0 - 2.255_77e-5 * altitude_m).powf(5.255_88);
    let am = am_rel * pressure_ratio;
    let i0 = extraterrestrial(doy);
    let fh1 = (-altitude_m / 8000.0).exp();
    let fh2 = (-altitude_m / 1250.0).exp();
    let cg1 = 5.09e-5 * altitude_m + 0.868;
    let cg2 = 3.92e-5 * altitude_m + 0.0387;
    let ghi = (cg1 * i0 * cos_z * (-cg2 * am * (fh1 + fh2 * (tl - 1.0))).exp() * (0.01 * am.powf(1.8)).exp())
        .max(0.0);
    let b = 0.664 + 0.163 / fh1;
    let dni_beam = (i0 * b * (-0.09 * am * (tl - 1.0)).exp()).max(0.0);
    let dni_limit = ghi * ((1.0 - (0.1 - 0.2 * (-tl).exp()) / (0.1 + 0.882 / fh1)) / cos_z).clamp(0.0, 1e20);
    let dni = dni_beam.min(dni_limit);
    let dhi = (ghi - dni * cos_z).max(0.0);
    Irradiance { ghi, dni, dhi }
}

/// Irradiance under cloud cover `c` (0 clear … 1 overcast): the global irradiance is attenuated by
/// Kasten–Czeplak's `1 − 0.75·c^3.4`, and the diffuse fraction rises from the clear-sky value to 1
/// with `c²`.
pub fn cloudy(clear: Irradiance, zenith_deg: f64, c: f64) -> Irradiance {
    let c = c.clamp(0.0, 1.0);
    let cos_z = zenith_deg.to_radians().cos();
    if clear.ghi <= 0.0 || cos_z <= 0.0 {
        return Irradiance::default();
    }
    let ghi = clear.ghi * (1.0 - 0.75 * c.powf(3.4));
    let kd_clear = (clear.dhi / clear.ghi).clamp(0.0, 1.0);
    let kd = kd_clear + (1.0 - kd_clear) * c * c;
    let dhi = ghi * kd;
    let dni = ((ghi - dhi) / cos_z).max(0.0);
    Irradiance { ghi, dni, dhi }
}

/// Cloud cover as a bounded first-order autoregressive process: every step,
/// `c ← μ + φ·(c − μ) + σ·ε`, clipped to [0, 1]. A sunny day has a low mean, an overcast one a high mean.
#[derive(Debug, Clone)]
pub struct CloudProcess {
    /// Mean cloud cover μ.
    pub mean: f64,
    /// Persistence φ per step.
    pub phi: f64,
    /// Innovation σ per step.
    pub sigma: f64,
    /// Current cover.
    pub cover: f64,
}

impl CloudProcess {
    /// A process around `mean` (0–1) for 5-minute steps, started at its mean.
    pub fn new(mean: f64) -> Self {
        let mean = mean.clamp(0.0, 1.0);
        Self { mean, phi: 0.92, sigma: 0.10, cover: mean }
    }

    /// Advances one step and returns the new cover.
    pub fn step<R: Rng>(&mut self, rng: &mut R) -> f64 {
        self.cover =
            (self.mean + self.phi * (self.cover - self.mean) + self.sigma * normal(rng)).clamp(0.0, 1.0);
        self.cover
    }
}

/// Ambient air temperature (°C) at local hour `hour` on day `doy`, for a mid-latitude climate: a
/// seasonal mean from about 1 °C (mid January) to 19 °C (mid July), and a daily swing of ±5 °C peaking at 15:00.
pub fn ambient_temperature(doy: u32, hour: f64, lat_deg: f64) -> f64 {
    let season = -(2.0 * std::f64::consts::PI * (doy as f64 - 15.0) / 365.25).cos();
    // Southern hemisphere: seasons swap.
    let season = if lat_deg < 0.0 { -season } else { season };
    let mean = 10.0 + 9.0 * season;
    mean + 5.0 * (2.0 * std::f64::consts::PI * (hour - 15.0) / 24.0).cos()
}

/// A rooftop PV system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PvSystem {
    /// Peak power under standard test conditions, kW.
    pub kwp: f64,
    /// Panel tilt from horizontal, degrees.
    pub tilt_deg: f64,
    /// Panel azimuth, degrees clockwise from north (180 = facing south).
    pub azimuth_deg: f64,
    /// Lumped system efficiency after temperature: inverter, wiring, soiling, mismatch (0.86 typical).
    pub performance: f64,
    /// Power temperature coefficient, 1/K (−0.004 for crystalline silicon).
    pub temp_coeff: f64,
    /// Nominal operating cell temperature, °C.
    pub noct: f64,
    /// Ground albedo for the reflected part.
    pub albedo: f64,
}

impl PvSystem {
    /// A system of `kwp` at `tilt_deg`/`azimuth_deg` with typical losses.
    pub fn new(kwp: f64, tilt_deg: f64, azimuth_deg: f64) -> Self {
        Self { kwp, tilt_deg, azimuth_deg, performance: 0.86, temp_coeff: -0.004, noct: 45.0, albedo: 0.2 }
    }

    /// Irradiance on the panel plane (W/m²), isotropic-sky transposition.
    pub fn plane_of_array(&self, sun: SunPosition, irr: Irradiance) -> f64 {
        if sun.zenith_deg >= 90.0 || irr.ghi <= 0.0 {
            return 0.0;
        }
        let (z, az) = (sun.zenith_deg.to_radians(), sun.azimuth_deg.to_radians());
        let (b, paz) = (self.tilt_deg.to_radians(), self.azimuth_deg.to_radians());
        let cos_aoi = z.cos() * b.cos() + z.sin() * b.sin() * (az - paz).cos();
        let beam = irr.dni * cos_aoi.max(0.0);
        let diffuse = irr.dhi * (1.0 + b.cos()) / 2.0;
        let ground = irr.ghi * self.albedo * (1.0 - b.cos()) / 2.0;
        (beam + diffuse + ground).max(0.0)
    }

    /// AC power in W for plane irradiance `poa` (W/m²) at ambient `t_amb` °C, clipped at the inverter
    /// rating (= kWp).
    pub fn ac_power_w(&self, poa: f64, t_amb: f64) -> f64 {
        if poa <= 0.0 {
            return 0.0;
        }
        let t_cell = t_amb + poa / 800.0 * (self.noct - 20.0);
        let dc = self.kwp * 1000.0 * poa / 1000.0 * (1.0 + self.temp_coeff * (t_cell - 25.0));
        (dc * self.performance).clamp(0.0, self.kwp * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Date;

    fn unix(date: &str, h: f64) -> f64 {
        Date::parse(date).unwrap().days_since_epoch() as f64 * 86_400.0 + h * 3600.0
    }

    #[test]
    fn sun_at_solar_noon_on_the_solstice() {
        // Munich, 2026-06-21: solar noon near 11:14 UTC; zenith = latitude − declination (23.44°).
        let lat = 48.14;
        let lon = 11.58;
        let best = (0..24 * 60)
            .map(|m| sun_position(unix("2026-06-21", m as f64 / 60.0), lat, lon))
            .min_by(|a, b| a.zenith_deg.total_cmp(&b.zenith_deg))
            .unwrap();
        assert!((best.zenith_deg - (lat - 23.44)).abs() < 0.1, "{best:?}");
        assert!((best.azimuth_deg - 180.0).abs() < 2.0, "{best:?}");
        let noon = sun_position(unix("2026-06-21", 11.0 + 14.0 / 60.0), lat, lon);
        assert!((noon.azimuth_deg - 180.0).abs() < 1.5, "{noon:?}");
        // Morning sun is in the east, evening sun in the west.
        assert!(sun_position(unix("2026-06-21", 5.0), lat, lon).azimuth_deg < 90.0);
        assert!(sun_position(unix("2026-06-21", 17.0), lat, lon).azimuth_deg > 260.0);
        // Midnight: below the horizon.
        assert!(sun_position(unix("2026-06-21", 23.0), lat, lon).zenith_deg > 90.0);
        // Winter solstice noon.
        let dec = (0..24 * 60)
            .map(|m| sun_position(unix("2026-12-21", m as f64 / 60.0), lat, lon).zenith_deg)
            .fold(f64::MAX, f64::min);
        assert!((dec - (lat + 23.44)).abs() < 0.1, "{dec}");
    }

    #[test]
    fn clear_sky_is_plausible() {
        let noon = clear_sky(25.0, 172, 500.0, 3.0);
        assert!(noon.ghi > 850.0 && noon.ghi < 1050.0, "{noon:?}");
        assert!(noon.dni > 750.0 && noon.dni < 1000.0, "{noon:?}");
        assert!(noon.dhi > 50.0 && noon.dhi < 200.0, "{noon:?}");
        let low = clear_sky(80.0, 172, 500.0, 3.0);
        assert!(low.ghi < noon.ghi / 3.0 && low.ghi > 0.0, "{low:?}");
        assert_eq!(clear_sky(95.0, 172, 500.0, 3.0), Irradiance::default());
        // Haze reduces the direct beam.
        assert!(clear_sky(25.0, 172, 500.0, 6.0).dni < noon.dni * 0.8);
        // Components add up: GHI = DNI·cos z + DHI.
        let z: f64 = 25.0;
        assert!((noon.dni * z.to_radians().cos() + noon.dhi - noon.ghi).abs() < 1e-6);
    }

    #[test]
    fn clouds_attenuate_and_diffuse() {
        let clear = clear_sky(30.0, 172, 0.0, 3.0);
        let half = cloudy(clear, 30.0, 0.5);
        let over = cloudy(clear, 30.0, 1.0);
        assert_eq!(cloudy(clear, 30.0, 0.0).ghi, clear.ghi);
        assert!(half.ghi < clear.ghi && over.ghi < half.ghi);
        assert!((over.ghi - 0.25 * clear.ghi).abs() < 1e-9);
        assert!(over.dni < 1e-9, "overcast sky has no beam: {over:?}");
    }

    #[test]
    fn cloud_process_stays_bounded_and_near_its_mean() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut p = CloudProcess::new(0.4);
        let xs: Vec<f64> = (0..5000).map(|_| p.step(&mut rng)).collect();
        assert!(xs.iter().all(|x| (0.0..=1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.4).abs() < 0.08, "{mean}");
    }

    #[test]
    fn pv_system_power() {
        let pv = PvSystem::new(5.0, 30.0, 180.0);
        let sun = SunPosition { zenith_deg: 30.0, azimuth_deg: 180.0 };
        let irr = clear_sky(30.0, 172, 0.0, 3.0);
        let poa = pv.plane_of_array(sun, irr);
        // Sun straight onto a 30° south panel: POA close to DNI + diffuse.
        assert!(poa > irr.dni && poa < irr.dni + irr.dhi + 50.0, "{poa} {irr:?}");
        let p = pv.ac_power_w(poa, 20.0);
        assert!(p > 3500.0 && p <= 5000.0, "{p}");
        // Hot cells produce less.
        assert!(pv.ac_power_w(poa, 35.0) < p);
        // A steep north-facing panel gets no beam from a low southern sun, only diffuse and reflected light.
        let low = SunPosition { zenith_deg: 60.0, azimuth_deg: 180.0 };
        let irr = clear_sky(60.0, 172, 0.0, 3.0);
        let north = PvSystem::new(5.0, 45.0, 0.0);
        assert!(north.plane_of_array(low, irr) <= irr.dhi + irr.ghi * 0.2 + 1e-9);
        assert!(
            north.plane_of_array(low, irr) < PvSystem::new(5.0, 45.0, 180.0).plane_of_array(low, irr) / 2.0
        );
    }
}
