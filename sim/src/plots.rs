//! Plots with plotters, each as PNG and SVG: prices over the day, energy flows, savings per
//! household. Text in PNGs is drawn with an embedded DejaVu Sans Mono (ab_glyph), so no system fonts
//! are needed.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::results::{HouseholdResult, SlotResult};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
static REGISTER: Once = Once::new();

/// A legend entry's colour sample: a filled bar, as thick as the plotted lines or more. A 1-pixel
/// line made the blue "traded peer to peer" entry read as black next to the black "load".
fn legend_swatch(x: i32, y: i32, color: RGBColor) -> Rectangle<(i32, i32)> {
    Rectangle::new([(x, y - 3), (x + 20, y + 3)], color.filled())
}

fn register_font() {
    REGISTER.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the embedded font could not be loaded; PNG plots will have no text");
        }
    });
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot: {e}")
}

const SIZE: (u32, u32) = (1000, 560);

type SeriesFn = Box<dyn Fn(&SlotResult) -> f64>;

fn hour(s: &SlotResult) -> f64 {
    s.day_slot as f64 / 4.0 + 0.125
}

fn hhmm_label(x: &f64) -> String {
    let m = (x * 60.0).round() as i64;
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn x_range(slots: &[SlotResult]) -> std::ops::Range<f64> {
    let a = slots.first().map_or(0.0, |s| s.day_slot as f64 / 4.0);
    let b = slots.last().map_or(24.0, |s| (s.day_slot + 1) as f64 / 4.0);
    a..b.max(a + 0.25)
}

fn draw_prices<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    slots: &[SlotResult],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let top = slots.iter().map(|s| s.retail).fold(0.3, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(root)
        .caption("Clearing price over the day", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range(slots), 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("local time")
        .x_label_formatter(&hhmm_label)
        .y_desc("credits / kWh")
        .draw()
        .map_err(err)?;
    let retail: Vec<(f64, f64)> = slots.iter().map(|s| (hour(s), s.retail)).collect();
    let feed_in: Vec<(f64, f64)> = slots.iter().map(|s| (hour(s), s.feed_in)).collect();
    chart
        .draw_series(LineSeries::new(retail, RED.stroke_width(1)))
        .map_err(err)?
        .label("retail (grid sells)")
        .legend(|(x, y)| legend_swatch(x, y, RED));
    chart
        .draw_series(LineSeries::new(feed_in, GREEN.stroke_width(1)))
        .map_err(err)?
        .label("feed-in (grid buys)")
        .legend(|(x, y)| legend_swatch(x, y, GREEN));
    let traded: Vec<(f64, f64)> = slots.iter().filter_map(|s| s.price.map(|p| (hour(s), p))).collect();
    chart
        .draw_series(LineSeries::new(traded.clone(), BLUE.stroke_width(2)))
        .map_err(err)?
        .label("clearing price")
        .legend(|(x, y)| legend_swatch(x, y, BLUE));
    chart.draw_series(traded.iter().map(|p| Circle::new(*p, 3, BLUE.filled()))).map_err(err)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn draw_energy<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    slots: &[SlotResult],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let kwh = |v: f64| v / 1000.0;
    let top = slots
        .iter()
        .map(|s| kwh(s.pv_wh.max(s.load_wh).max(s.metered_import_wh as f64).max(s.metered_export_wh as f64)))
        .fold(0.1, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption("Energy flows per 15-minute slot", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range(slots), 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("local time")
        .x_label_formatter(&hhmm_label)
        .y_desc("kWh per slot")
        .draw()
        .map_err(err)?;
    let series: [(&str, RGBColor, SeriesFn); 5] = [
        ("load", BLACK, Box::new(|s| s.load_wh)),
        ("PV", RGBColor(230, 160, 0), Box::new(|s| s.pv_wh)),
        ("traded peer to peer", BLUE, Box::new(|s| s.volume_wh as f64)),
        ("grid import (net)", RED, Box::new(|s| s.grid_import_wh as f64)),
        ("grid export (net)", GREEN, Box::new(|s| s.grid_export_wh as f64)),
    ];
    for (name, color, f) in series {
        let pts: Vec<(f64, f64)> = slots.iter().map(|s| (hour(s), kwh(f(s)))).collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| legend_swatch(x, y, color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn draw_savings<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    hs: &[HouseholdResult],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let mut v: Vec<&HouseholdResult> = hs.iter().collect();
    v.sort_by_key(|h| std::cmp::Reverse(h.savings));
    let vals: Vec<f64> = v.iter().map(|h| h.savings as f64 / 1e18).collect();
    let hi = vals.iter().copied().fold(0.0, f64::max);
    let lo = vals.iter().copied().fold(0.0, f64::min);
    let pad = ((hi - lo) * 0.1).max(0.01);
    let n = v.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .caption("Savings per household against grid tariffs only", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n as f64, (lo - pad)..(hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("households, sorted (blue: consumer, orange: PV, green: PV + battery)")
        .y_desc("credits per day")
        .x_label_formatter(&|_| String::new())
        .draw()
        .map_err(err)?;
    chart
        .draw_series(v.iter().zip(&vals).enumerate().map(|(i, (h, val))| {
            let color = if h.battery_kwh > 0.0 {
                RGBColor(40, 160, 60)
            } else if h.pv_kwp > 0.0 {
                RGBColor(230, 140, 0)
            } else {
                RGBColor(40, 90, 200)
            };
            Rectangle::new([(i as f64 + 0.1, 0.0), (i as f64 + 0.9, *val)], color.filled())
        }))
        .map_err(err)?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (n as f64, 0.0)], BLACK)).map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `prices`, `energy` and `savings` as `.png` and `.svg` into `dir`.
pub fn write_plots(dir: &Path, slots: &[SlotResult], hs: &[HouseholdResult]) -> anyhow::Result<()> {
    register_font();
    {
        let png = dir.join("prices.png");
        draw_prices(&BitMapBackend::new(&png, SIZE).into_drawing_area(), slots)?;
        let svg = dir.join("prices.svg");
        draw_prices(&SVGBackend::new(&svg, SIZE).into_drawing_area(), slots)?;
    }
    {
        let png = dir.join("energy.png");
        draw_energy(&BitMapBackend::new(&png, SIZE).into_drawing_area(), slots)?;
        let svg = dir.join("energy.svg");
        draw_energy(&SVGBackend::new(&svg, SIZE).into_drawing_area(), slots)?;
    }
    {
        let png = dir.join("savings.png");
        draw_savings(&BitMapBackend::new(&png, SIZE).into_drawing_area(), hs)?;
        let svg = dir.join("savings.svg");
        draw_savings(&SVGBackend::new(&svg, SIZE).into_drawing_area(), hs)?;
    }
    Ok(())
}

/// The PCC's net import minute by minute (hours, kW; negative: export).
fn pcc_series(d: &crate::engine::RunData) -> Vec<(f64, f64)> {
    d.slots
        .iter()
        .flat_map(|s| {
            s.pcc_import_kw
                .iter()
                .enumerate()
                .map(move |(m, kw)| ((s.day_slot * crate::household::SLOT_MINUTES + m) as f64 / 60.0, *kw))
        })
        .collect()
}

fn draw_pcc<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    d: &crate::engine::RunData,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let flow = pcc_series(d);
    let (imp, exp) = (d.cfg.pcc.import_kw, d.cfg.pcc.export_kw);
    let hi = flow.iter().map(|p| p.1).chain(imp).fold(1.0, f64::max) * 1.15;
    let lo = flow.iter().map(|p| p.1).chain(exp.map(|e| -e)).fold(-1.0, f64::min) * 1.15;
    let x0 = d.slots.first().map_or(0.0, |s| s.day_slot as f64 / 4.0);
    let x1 = d.slots.last().map_or(24.0, |s| (s.day_slot + 1) as f64 / 4.0).max(x0 + 0.25);
    let mut chart = ChartBuilder::on(root)
        .caption("Point of common coupling: net import and its limits", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("local time")
        .x_label_formatter(&hhmm_label)
        .y_desc("kW (import > 0 > export)")
        .draw()
        .map_err(err)?;
    if let Some(lim) = imp {
        chart
            .draw_series(LineSeries::new([(x0, lim), (x1, lim)], RED.stroke_width(3)))
            .map_err(err)?
            .label("import limit")
            .legend(|(x, y)| legend_swatch(x, y, RED));
    }
    if let Some(lim) = exp {
        chart
            .draw_series(LineSeries::new([(x0, -lim), (x1, -lim)], GREEN.stroke_width(3)))
            .map_err(err)?
            .label("export limit")
            .legend(|(x, y)| legend_swatch(x, y, GREEN));
    }
    // The flow last, on top of the limits it often runs along.
    chart
        .draw_series(LineSeries::new(flow, BLUE.stroke_width(2)))
        .map_err(err)?
        .label("net import at the PCC, per minute")
        .legend(|(x, y)| legend_swatch(x, y, BLUE));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn draw_soc<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    island: &crate::island::Island,
    x: std::ops::Range<f64>,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let b = &island.spec.battery;
    let top = (b.capacity_wh / 1000.0).max(1.0) * 1.05;
    let soc: Vec<(f64, f64)> =
        island.minutes.iter().map(|(m, a)| (*m as f64 / 60.0, a.soc_wh / 1000.0)).collect();
    let mut chart = ChartBuilder::on(root)
        .caption("Community battery: state of charge", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x.clone(), 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("local time")
        .x_label_formatter(&hhmm_label)
        .y_desc("kWh")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(soc, BLUE.stroke_width(2)))
        .map_err(err)?
        .label("state of charge")
        .legend(|(x, y)| legend_swatch(x, y, BLUE));
    let floor = b.min_soc * b.capacity_wh / 1000.0;
    chart
        .draw_series(LineSeries::new([(x.start, floor), (x.end, floor)], RED.stroke_width(1)))
        .map_err(err)?
        .label("minimum state of charge")
        .legend(|(x, y)| legend_swatch(x, y, RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `pcc.png` and `pcc.svg` into `dir`: the flow at the point of common coupling against its
/// limits (islanded: the households' net draw on the community's assets), and islanded
/// `soc.png`/`soc.svg`, the community battery's state of charge (simulated meters only; nothing is
/// written without physics).
pub fn write_pcc_plot(dir: &Path, d: &crate::engine::RunData) -> anyhow::Result<()> {
    if !d.simulated_meters {
        return Ok(());
    }
    register_font();
    let png = dir.join("pcc.png");
    draw_pcc(&BitMapBackend::new(&png, SIZE).into_drawing_area(), d)?;
    let svg = dir.join("pcc.svg");
    draw_pcc(&SVGBackend::new(&svg, SIZE).into_drawing_area(), d)?;
    if let Some(island) = &d.island {
        let x0 = d.slots.first().map_or(0.0, |s| s.day_slot as f64 / 4.0);
        let x1 = d.slots.last().map_or(24.0, |s| (s.day_slot + 1) as f64 / 4.0).max(x0 + 0.25);
        let png = dir.join("soc.png");
        draw_soc(&BitMapBackend::new(&png, SIZE).into_drawing_area(), island, x0..x1)?;
        let svg = dir.join("soc.svg");
        draw_soc(&SVGBackend::new(&svg, SIZE).into_drawing_area(), island, x0..x1)?;
    }
    Ok(())
}
