//! The training-curves figure: per epoch, the losses and whichever validation metrics a run
//! logged (macro mAP, top-1, recall@1, …), read from the lines of its `metrics.jsonl` and drawn
//! once for SVG and PNG (see `figure`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::figure::{self, Axis, Dash, DrawResult, Figure, Scale, INK, MUTED, PALETTE};
use crate::{Error, Result};

/// A run's per-epoch series.
#[derive(Clone, Debug, PartialEq)]
pub struct Curves {
    /// The logged epochs, increasing.
    pub epochs: Vec<usize>,
    /// `train_loss`, then any validation loss (`val_…loss…`), each with a value per epoch.
    pub losses: Vec<Metric>,
    /// The other `val_…` numbers (macro mAP, top-1, …), each with a value per epoch.
    pub validation: Vec<Metric>,
}

/// One logged number per epoch; `None` where an epoch's line lacks it or holds `null` (a loss
/// that was not finite, a mAP without positives).
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// The key in `metrics.jsonl`.
    pub key: String,
    pub values: Vec<Option<f64>>,
}

impl Metric {
    /// The name a reader knows it by.
    pub fn label(&self) -> String {
        match self.key.as_str() {
            "train_loss" => "training loss".into(),
            "val_loss" => "validation loss".into(),
            "val_macro_map" => "macro mAP".into(),
            "val_top1" => "top-1 accuracy".into(),
            "val_map_at_r" => "MAP@R".into(),
            k => k.strip_prefix("val_").unwrap_or(k).replace('_', " "),
        }
    }

    fn points(&self, epochs: &[usize]) -> Vec<Option<(f64, f64)>> {
        epochs.iter().zip(&self.values).map(|(&e, v)| v.map(|v| (e as f64, v))).collect()
    }
}

/// Known keys first, in this order, then the others by name.
const ORDER: [&str; 5] = ["train_loss", "val_loss", "val_macro_map", "val_top1", "val_map_at_r"];

/// The curves in the text of a `metrics.jsonl`: one JSON object per line with `epoch`,
/// `train_loss` and `val_…` numbers (other keys, such as `lr` or `seconds`, are not drawn). An
/// epoch logged twice (a run resumed before a checkpoint it had logged) keeps its last line; a
/// last line cut short (a run stopped while writing it) is left out.
pub fn training_curves_from_jsonl(text: &str) -> Result<Curves> {
    let mut by_epoch: BTreeMap<usize, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).collect();
    for (k, &(n, line)) in lines.iter().enumerate() {
        let object = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(o)) => o,
            Err(e) if e.is_eof() && k + 1 == lines.len() && !text.ends_with('\n') => continue,
            Ok(_) => return Err(Error::Invalid(format!("metrics.jsonl line {n}: not a JSON object"))),
            Err(e) => return Err(Error::Invalid(format!("metrics.jsonl line {n}: not JSON ({e})"))),
        };
        let epoch = object.get("epoch").and_then(serde_json::Value::as_u64).ok_or_else(|| {
            Error::Invalid(format!("metrics.jsonl line {n}: no 'epoch' (a whole number from 1) in {line}"))
        })?;
        by_epoch.insert(epoch as usize, object);
    }
    let mut keys: Vec<&String> = by_epoch
        .values()
        .flat_map(|o| o.iter())
        .filter(|(k, v)| (k.as_str() == "train_loss" || k.starts_with("val_")) && (v.is_number() || v.is_null()))
        .map(|(k, _)| k)
        .collect();
    keys.sort_by_key(|k| (ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()), k.as_str()));
    keys.dedup();
    let metric = |key: &String| Metric {
        key: key.clone(),
        values: by_epoch.values().map(|o| o.get(key).and_then(serde_json::Value::as_f64)).collect(),
    };
    let (losses, validation) = keys.into_iter().map(metric).partition(|m| m.key.contains("loss"));
    Ok(Curves { epochs: by_epoch.keys().copied().collect(), losses, validation })
}

/// Writes `curves.svg` and `curves.png` into `dir`; returns their paths.
pub fn write_training_curves(dir: &Path, curves: &Curves) -> Result<Vec<PathBuf>> {
    if curves.epochs.is_empty() {
        return Err(Error::Invalid("metrics.jsonl holds no epoch yet, so there are no training curves to draw".into()));
    }
    figure::write(dir, "curves", curves)
}

impl Curves {
    /// The figure as an SVG document.
    pub fn svg(&self) -> Result<String> {
        figure::svg(self)
    }

    /// The figure as PNG bytes.
    pub fn png(&self) -> Result<Vec<u8>> {
        figure::png(self)
    }

    /// The panels drawn: the losses (their axis from 0), and the validation metrics when there
    /// are any values.
    fn panels(&self) -> Vec<Panel<'_>> {
        let has_values = |ms: &[Metric]| ms.iter().any(|m| m.values.iter().any(Option::is_some));
        let mut panels = vec![Panel { title: "Loss", metrics: &self.losses, from_zero: true }];
        if has_values(&self.validation) {
            panels.push(Panel { title: "Validation", metrics: &self.validation, from_zero: false });
        }
        panels
    }

    fn epoch_axis(&self) -> Axis {
        let (first, last) = (self.epochs[0] as f64, *self.epochs.last().unwrap_or(&1) as f64);
        if first == last {
            return Axis::padded(first - 0.5, last + 0.5, 1.0, "Epoch", 0.0);
        }
        // Wide margins: the first and last markers stay clear of the frame.
        Axis::padded(first, last, figure::tick_step(last - first).max(1.0), "Epoch", 0.05)
    }

    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        Panel { title, metrics, from_zero }: Panel,
        colour_from: usize,
        s: Scale,
    ) -> DrawResult<DB> {
        let x = self.epoch_axis();
        let values: Vec<f64> = metrics.iter().flat_map(|m| m.values.iter().flatten().copied()).collect();
        let y = value_axis(&values, from_zero, title);
        let (chart_area, legend) = area.split_vertically(s.px(PANEL_H - LEGEND_H));
        let chart = figure::chart(&chart_area, None, &x, &y, s)?;
        let plot = chart.plotting_area();
        let markers = self.epochs.len() <= 40;
        for (k, m) in metrics.iter().enumerate() {
            let colour = PALETTE[(colour_from + k) % PALETTE.len()];
            // A missing value breaks the line; a lone point still shows by its marker.
            let points = m.points(&self.epochs);
            for run in points.split(Option::is_none) {
                let run: Vec<(f64, f64)> = run.iter().flatten().copied().collect();
                for part in figure::clip(&run, x.range, y.range) {
                    figure::polyline(plot, part, s.stroke(2.0, colour), Dash::Solid, s)?;
                }
            }
            if markers || points.iter().filter(|p| p.is_some()).count() == 1 {
                for p in points.iter().flatten().filter(|p| y.contains(p.1)) {
                    plot.draw(&Circle::new(*p, s.px(3.5), colour.filled()))?;
                }
            }
        }
        // The legend, one row under the chart.
        let mut at = 70.0;
        let style = s.text(13.0, INK);
        for (k, m) in metrics.iter().enumerate() {
            let colour = PALETTE[(colour_from + k) % PALETTE.len()];
            let y = LEGEND_H / 2.0;
            figure::polyline(&legend, vec![s.pt(at, y), s.pt(at + 24.0, y)], s.stroke(2.0, colour), Dash::Solid, s)?;
            if markers {
                legend.draw(&Circle::new(s.pt(at + 12.0, y), s.px(3.5), colour.filled()))?;
            }
            // The last value logged, as the console printed it.
            let last = m.values.iter().rev().flatten().next();
            let label = last.map_or(m.label(), |v| format!("{} {v:.3}", m.label()));
            figure::text(&legend, &label, s.pt(at + 30.0, y), &style, HPos::Left, VPos::Center)?;
            at += 30.0 + legend.estimate_text_size(&label, &style)?.0 as f64 / s.0 + 32.0;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Panel<'a> {
    title: &'static str,
    metrics: &'a [Metric],
    from_zero: bool,
}

/// A value axis over `values`: from 0 for losses; for other metrics, the span of the values
/// with a margin, kept within [0, 1] when they are.
fn value_axis(values: &[f64], from_zero: bool, title: &str) -> Axis {
    let finite = || values.iter().copied().filter(|v| v.is_finite());
    let (min, max) = (finite().fold(f64::INFINITY, f64::min), finite().fold(f64::NEG_INFINITY, f64::max));
    if !min.is_finite() {
        return Axis::new(0.0, 1.0, 0.2, title);
    }
    let unit = min >= 0.0 && max <= 1.0;
    let margin = ((max - min) * 0.1).max(0.02);
    let (lo, hi) = if from_zero { (min.min(0.0), max + margin) } else { (min - margin, max + margin) };
    let (lo, hi) = if unit { (lo.max(0.0), hi.min(1.0)) } else { (lo, hi) };
    let step = figure::tick_step(hi - lo);
    Axis::new((lo / step).floor() * step, (hi / step).ceil() * step, step, title)
}

// The layout, in SVG pixels: the panels side by side, each a chart over a legend row.
const TITLE_H: f64 = 56.0;
const PANEL_W: f64 = 520.0;
const PANEL_H: f64 = 420.0;
const LEGEND_H: f64 = 34.0;
const MARGIN: f64 = 12.0;

impl Figure for Curves {
    fn size(&self) -> (u32, u32) {
        let w = self.panels().len() as f64 * PANEL_W + 2.0 * MARGIN;
        ((w as u32), (TITLE_H + PANEL_H + MARGIN) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, s: Scale) -> DrawResult<DB> {
        let w = self.size().0 as f64;
        let n = self.epochs.len();
        let subtitle = format!("{n} epoch{}", if n == 1 { "" } else { "s" });
        figure::text(root, "Training curves", s.pt(w / 2.0, 22.0), &s.text(20.0, INK), HPos::Center, VPos::Center)?;
        figure::text(root, &subtitle, s.pt(w / 2.0, 44.0), &s.text(13.0, MUTED), HPos::Center, VPos::Center)?;
        let body = root.margin(s.px(TITLE_H), s.px(MARGIN), s.px(MARGIN), s.px(MARGIN));
        let panels = self.panels();
        let areas = body.split_evenly((1, panels.len()));
        let mut colour_from = 0;
        for (area, panel) in areas.iter().zip(panels) {
            self.draw_panel(area, panel, colour_from, s)?;
            colour_from += panel.metrics.len();
        }
        Ok(())
    }
}
