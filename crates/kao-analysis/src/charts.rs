//! Charts drawn with plotters on any drawing area: [`svg`] renders one to an SVG string for
//! `report.html`; in a notebook, `plotters::evcxr::evcxr_figure` shows the same drawing inline.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::summary::NO_MATCH;
use crate::threshold::RocPoint;
use crate::{AnalysisError, Result};

/// Renders `draw` on a `width`×`height` SVG canvas and returns the SVG text.
pub fn svg(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        draw(&root)?;
        root.present().map_err(chart_error)?;
    }
    Ok(text)
}

/// A series colour per label, stable for a given set of labels: [`NO_MATCH`] (or an empty
/// label) is grey, the others take plotters' 99-colour palette in sorted order.
pub fn colours<'a>(labels: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, RGBColor> {
    let mut map = BTreeMap::new();
    let mut names: Vec<&str> = labels.into_iter().collect();
    names.sort();
    names.dedup();
    let mut next = 0;
    for name in names {
        let colour = if name == NO_MATCH || name.is_empty() {
            RGBColor(150, 150, 150)
        } else {
            next += 1;
            let c = Palette99::pick(next - 1).to_rgba();
            RGBColor(c.0, c.1, c.2)
        };
        map.insert(name.to_string(), colour);
    }
    map
}

/// Histograms of distances, one outlined series per group (for example per identity), with
/// `bins` bins over the range of all values and a dashed line at `threshold`.
pub fn distance_histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    groups: &[(String, Vec<f32>)],
    threshold: Option<f32>,
    bins: usize,
) -> Result<()> {
    let values = || {
        groups
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite())
    };
    let (lo, hi) = span(
        values().map(f64::from).chain(threshold.map(f64::from)),
        0.0,
        1.0,
    );
    let bins = bins.max(1);
    let width = (hi - lo) / bins as f64;
    let counts: Vec<Vec<u32>> = groups
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0u32; bins];
            for x in v.iter().filter(|x| x.is_finite()) {
                let i = (((f64::from(*x) - lo) / width) as usize).min(bins - 1);
                c[i] += 1;
            }
            c
        })
        .collect();
    let top = counts.iter().flatten().copied().max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(lo..hi, 0u32..top + top / 10 + 1)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc("distance")
        .y_desc("faces")
        .draw()
        .map_err(chart_error)?;
    let palette = colours(groups.iter().map(|(n, _)| n.as_str()));
    for ((name, _), c) in groups.iter().zip(&counts) {
        let colour = palette[name.as_str()];
        chart
            .draw_series(c.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| {
                let x0 = lo + i as f64 * width;
                Rectangle::new([(x0, 0), (x0 + width, *n)], colour.mix(0.35).filled())
            }))
            .map_err(chart_error)?
            .label(format!("{name} ({})", c.iter().sum::<u32>()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    if let Some(t) = threshold {
        threshold_line(&mut chart, f64::from(t), 0, top + top / 10 + 1)?;
    }
    legend(&mut chart)
}

/// One face on a timeline.
#[derive(Clone, Debug)]
pub struct TimelinePoint {
    /// Time in the video, seconds.
    pub seconds: f64,
    /// Distance to the nearest reference.
    pub distance: f32,
    /// Identity ([`NO_MATCH`] when none).
    pub label: String,
}

/// Distance over video time, one colour per identity, with the threshold dashed and shot cuts
/// (times in seconds) as thin vertical lines.
pub fn timeline<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    points: &[TimelinePoint],
    threshold: Option<f32>,
    cuts: &[f64],
) -> Result<()> {
    let (t0, t1) = span(points.iter().map(|p| p.seconds), 0.0, 1.0);
    let (_, d1) = span(
        points
            .iter()
            .map(|p| f64::from(p.distance))
            .chain(threshold.map(f64::from)),
        0.0,
        1.0,
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(t0.min(0.0)..t1, 0.0..d1)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("distance")
        .draw()
        .map_err(chart_error)?;
    for &cut in cuts {
        chart
            .draw_series(LineSeries::new(
                [(cut, 0.0), (cut, d1)],
                RGBColor(200, 200, 200).stroke_width(1),
            ))
            .map_err(chart_error)?;
    }
    let palette = colours(points.iter().map(|p| p.label.as_str()));
    for (name, colour) in &palette {
        let colour = *colour;
        let series = points
            .iter()
            .filter(|p| &p.label == name && p.distance.is_finite());
        chart
            .draw_series(
                series.map(|p| Circle::new((p.seconds, f64::from(p.distance)), 2, colour.filled())),
            )
            .map_err(chart_error)?
            .label(name.clone())
            .legend(move |(x, y)| Circle::new((x + 5, y), 4, colour.filled()));
    }
    if let Some(t) = threshold {
        let t = f64::from(t);
        chart
            .draw_series(DashedLineSeries::new(
                [(t0.min(0.0), t), (t1, t)],
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(chart_error)?;
    }
    legend(&mut chart)
}

/// A scatter plot of 2-D points coloured by label (for example an embedding projection
/// coloured by identity or track).
pub fn scatter<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    axes: (&str, &str),
    points: &[(f64, f64)],
    labels: &[String],
) -> Result<()> {
    let (x0, x1) = span(points.iter().map(|p| p.0), -1.0, 1.0);
    let (y0, y1) = span(points.iter().map(|p| p.1), -1.0, 1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc(axes.0)
        .y_desc(axes.1)
        .draw()
        .map_err(chart_error)?;
    let palette = colours(labels.iter().map(String::as_str));
    for (name, colour) in &palette {
        let colour = *colour;
        let series = points
            .iter()
            .zip(labels)
            .filter(|(_, l)| *l == name)
            .map(|(p, _)| *p);
        chart
            .draw_series(series.map(|p| Circle::new(p, 3, colour.filled())))
            .map_err(chart_error)?
            .label(name.clone())
            .legend(move |(x, y)| Circle::new((x + 5, y), 4, colour.filled()));
    }
    legend(&mut chart)
}

/// The ROC: true accept rate against false accept rate, with `marked` points (for example the
/// default threshold) labelled by their threshold.
pub fn roc<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    curve: &[RocPoint],
    marked: &[RocPoint],
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..1.0, 0.0..1.02)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc("false accept rate (different people)")
        .y_desc("true accept rate (same person)")
        .draw()
        .map_err(chart_error)?;
    chart
        .draw_series(LineSeries::new(
            curve.iter().map(|p| (p.false_accept, p.true_accept)),
            BLUE.stroke_width(2),
        ))
        .map_err(chart_error)?;
    for p in marked {
        let at = (p.false_accept, p.true_accept);
        chart
            .draw_series([Circle::new(at, 5, RED.filled())])
            .map_err(chart_error)?;
        chart
            .draw_series([Text::new(
                format!("  {:.3}", p.threshold),
                at,
                ("sans-serif", 14).into_font(),
            )])
            .map_err(chart_error)?;
    }
    Ok(())
}

fn threshold_line<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordu32>,
    >,
    t: f64,
    y0: u32,
    y1: u32,
) -> Result<()> {
    chart
        .draw_series(DashedLineSeries::new(
            [(t, y0), (t, y1)],
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(chart_error)?
        .label(format!("threshold {t:.2}"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 10, y)], BLACK));
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(chart_error)
}

/// The range of `values` with a 5 % margin, or `(lo, hi)` when there are none.
fn span(values: impl Iterator<Item = f64>, lo: f64, hi: f64) -> (f64, f64) {
    let (min, max) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !min.is_finite() {
        return (lo, hi);
    }
    let pad = ((max - min) * 0.05).max(1e-3);
    (min - pad, max + pad)
}

fn chart_error(e: impl std::fmt::Display) -> AnalysisError {
    AnalysisError::Chart(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_svg_histogram_has_one_bar_per_filled_bin_and_a_legend() {
        let groups = vec![
            ("obama".to_string(), vec![0.3, 0.31, 0.5]),
            (NO_MATCH.to_string(), vec![0.7]),
        ];
        let text = svg(400, 300, |area| {
            distance_histogram(area, "distances", &groups, Some(0.48), 10)
        })
        .unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..60]);
        assert!(
            text.contains("obama (3)")
                && text.contains("(no match) (1)")
                && text.contains("threshold 0.48")
        );
    }

    #[test]
    fn empty_input_still_draws_axes() {
        let text = svg(300, 200, |area| timeline(area, "t", &[], Some(0.5), &[])).unwrap();
        assert!(text.contains("time (s)"));
        let text = svg(300, 200, |area| {
            scatter(area, "s", ("pc1", "pc2"), &[], &[])
        })
        .unwrap();
        assert!(text.contains("pc1"));
    }
}
