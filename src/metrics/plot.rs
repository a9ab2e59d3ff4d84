//! Precision-recall figures, one per rarity group as in the paper: each label's step curve, its
//! AP in the legend, and the precision floor, drawn once for SVG and PNG (see `figure`). Many
//! curves are split into panels of a few each, so that every one stays readable.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::ap::PrCurve;
use super::figure::{self, Axis, Dash, DrawResult, Figure, Scale, INK, MUTED};
use super::groups::Rarity;
use super::report::{fmt3, Evaluation};
use crate::Result;

/// One label's curve as the vertices of its step plot, (recall, precision).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub ap: Option<f64>,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// Steps as scikit-learn's `PrecisionRecallDisplay` draws them: between two recalls the
    /// precision of the higher one, so the area under the steps is the AP.
    pub fn from_curve(name: impl Into<String>, curve: &PrCurve) -> Self {
        let (r, p) = (&curve.recall, &curve.precision);
        let mut points = vec![(r[0], p[0])];
        for k in 0..r.len() - 1 {
            points.push((r[k + 1], p[k]));
            points.push((r[k + 1], p[k + 1]));
        }
        points.dedup();
        Series { name: name.into(), ap: Some(curve.average_precision()), points }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PrFigure {
    /// Names the files: `{stem}_{key}.svg`.
    pub key: String,
    pub title: String,
    /// Drawn as a dashed horizontal line.
    pub precision_floor: Option<f64>,
    pub series: Vec<Series>,
}

/// One figure per rarity group (majority, minority, rare), each with the curves of its labels
/// that have positives in the evaluation split.
pub fn pr_figures(ev: &Evaluation) -> Vec<PrFigure> {
    let r = &ev.report;
    Rarity::ALL
        .iter()
        .map(|&group| {
            let series = r
                .labels
                .iter()
                .zip(&ev.curves)
                .filter(|(l, _)| l.rarity == group)
                .filter_map(|(l, c)| c.as_ref().map(|c| Series::from_curve(l.name.clone(), c)))
                .collect();
            PrFigure {
                key: group.name().into(),
                title: format!("{} labels: precision vs recall", capitalised(group.name())),
                precision_floor: Some(r.precision_floor),
                series,
            }
        })
        .collect()
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
}

/// Writes `{stem}_{key}.svg` and `.png` for each figure into `dir`; returns the paths.
pub fn write_pr_figures(dir: &Path, stem: &str, figures: &[PrFigure]) -> Result<Vec<PathBuf>> {
    let mut paths = vec![];
    for fig in figures {
        paths.extend(figure::write(dir, &format!("{stem}_{}", fig.key), fig)?);
    }
    Ok(paths)
}

/// At most this many curves share a panel, each with its own colour, ...
pub const CURVES_PER_PANEL: usize = 8;
/// ... and a figure has at most this many panels.
pub const MAX_PANELS: usize = 4;

impl PrFigure {
    /// The curves drawn, best AP first: all of them up to `CURVES_PER_PANEL * MAX_PANELS`; past
    /// that, that many spread evenly over the AP ranking, the best and the worst among them.
    pub fn drawn(&self) -> Vec<&Series> {
        let mut sorted: Vec<&Series> = self.series.iter().collect();
        sorted.sort_by(|a, b| b.ap.unwrap_or(-1.0).total_cmp(&a.ap.unwrap_or(-1.0)).then_with(|| a.name.cmp(&b.name)));
        let (n, max) = (sorted.len(), CURVES_PER_PANEL * MAX_PANELS);
        if n <= max {
            return sorted;
        }
        // Rank i * (n - 1) / (max - 1), rounded: distinct because n > max.
        (0..max).map(|i| sorted[(2 * i * (n - 1) + max - 1) / (2 * (max - 1))]).collect()
    }

    /// The drawn curves in panels of at most `CURVES_PER_PANEL`, as even in size as they can be
    /// (12 curves: two panels of 6); one empty panel when there are none.
    pub fn panels(&self) -> Vec<Vec<&Series>> {
        let drawn = self.drawn();
        let k = drawn.len().div_ceil(CURVES_PER_PANEL).max(1);
        let (base, extra) = (drawn.len() / k, drawn.len() % k);
        let mut rest = drawn.as_slice();
        (0..k)
            .map(|p| {
                let (head, tail) = rest.split_at(base + usize::from(p < extra));
                rest = tail;
                head.to_vec()
            })
            .collect()
    }

    /// The top of the precision axis: 1, or less when no curve comes near 1 past recall 0, so
    /// that low curves are not squeezed against the bottom. (Every curve starts at precision 1
    /// at recall 0 by convention; that point is left out and its segment clipped.)
    pub fn precision_top(&self) -> f64 {
        let top = self.drawn().iter().flat_map(|s| &s.points).filter(|p| p.0 > 0.0).map(|p| p.1).fold(0.0, f64::max);
        [0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0].into_iter().find(|&t| top * 1.05 <= t).unwrap_or(1.0)
    }

    /// The line under the title: how many labels, and which are drawn when not all.
    pub fn subtitle(&self) -> String {
        let (n, drawn) = (self.series.len(), self.drawn().len());
        match n {
            0 => "no label of this group has positives in the evaluated data".into(),
            _ if drawn < n => format!(
                "{drawn} of {n} labels drawn, spread evenly over the AP ranking (eval.md lists all); best AP first"
            ),
            1 => "1 label".into(),
            _ => format!("{n} labels, best AP first"),
        }
    }

    /// The figure as an SVG document.
    pub fn svg(&self) -> Result<String> {
        figure::svg(self)
    }

    /// The figure as PNG bytes.
    pub fn png(&self) -> Result<Vec<u8>> {
        figure::png(self)
    }

    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        caption: Option<&str>,
        curves: &[&Series],
        (x, y): (&Axis, &Axis),
        s: Scale,
    ) -> DrawResult<DB> {
        let (chart_area, legend) = area.split_horizontally(s.px(CHART_W));
        let chart = figure::chart(&chart_area, caption, x, y, s)?;
        let plot = chart.plotting_area();
        let floor = self.precision_floor.filter(|&f| y.contains(f));
        if let Some(f) = floor {
            let dash = Dash::Dashed { on: 6.0, off: 4.0 };
            figure::polyline(plot, vec![(x.range.0, f), (x.range.1, f)], s.stroke(1.3, MUTED), dash, s)?;
            // Above the line at the left, where good curves are high above it; under the curves,
            // which pass over it where they must, on a ground that hides the grid.
            let (line, base) = (chart.backend_coord(&(0.0, f)), plot.get_base_pixel());
            let pixels = plot.strip_coord_spec();
            let (text, style) = (floor_text(f), s.text(12.0, MUTED));
            let (w, h) = pixels.estimate_text_size(&text, &style)?;
            let (x0, y1) = (line.0 - base.0 + s.px(6.0), line.1 - base.1 - s.px(3.0));
            let (w, h) = (w as i32 + s.px(6.0), h as i32 + s.px(2.0));
            pixels.draw(&Rectangle::new([(x0, y1 - h), (x0 + w, y1)], WHITE.filled()))?;
            figure::text(&pixels, &text, (x0 + s.px(3.0), y1 - h / 2), &style, HPos::Left, VPos::Center)?;
        }
        for (k, series) in curves.iter().enumerate() {
            let (colour, dash) = figure::line_style(k);
            for part in figure::clip(&series.points, x.range, y.range) {
                figure::polyline(plot, part, s.stroke(2.0, colour), dash, s)?;
            }
        }
        self.draw_legend(&legend, caption.is_some(), curves, s)
    }

    fn draw_legend<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        captioned: bool,
        curves: &[&Series],
        s: Scale,
    ) -> DrawResult<DB> {
        let (x0, x_ap) = (8.0, LEGEND_W - 20.0);
        let mut y = if captioned { 52.0 } else { 40.0 };
        let head = s.text(12.5, MUTED);
        if curves.is_empty() {
            return figure::text(area, "no labels with positives", s.pt(x0, y), &head, HPos::Left, VPos::Center);
        }
        figure::text(area, "Label", s.pt(x0 + 40.0, y), &head, HPos::Left, VPos::Center)?;
        figure::text(area, "AP", s.pt(x_ap, y), &head, HPos::Right, VPos::Center)?;
        let body = s.text(13.0, INK);
        let name_width = s.px(x_ap - 52.0 - (x0 + 40.0));
        for (k, series) in curves.iter().enumerate() {
            y += ROW_H;
            let (colour, dash) = figure::line_style(k);
            figure::polyline(area, vec![s.pt(x0, y), s.pt(x0 + 32.0, y)], s.stroke(2.0, colour), dash, s)?;
            let name = figure::fit(area, &series.name, &body, name_width)?;
            figure::text(area, &name, s.pt(x0 + 40.0, y), &body, HPos::Left, VPos::Center)?;
            figure::text(area, &fmt3(series.ap), s.pt(x_ap, y), &body, HPos::Right, VPos::Center)?;
        }
        if let Some(f) = self.precision_floor {
            y += ROW_H * 1.5;
            let dash = Dash::Dashed { on: 6.0, off: 4.0 };
            figure::polyline(area, vec![s.pt(x0, y), s.pt(x0 + 32.0, y)], s.stroke(1.3, MUTED), dash, s)?;
            let note = if f > self.precision_top() { " (no curve reaches it)" } else { "" };
            let text = format!("{}{note}", floor_text(f));
            figure::text(area, &text, s.pt(x0 + 40.0, y), &s.text(13.0, MUTED), HPos::Left, VPos::Center)?;
        }
        Ok(())
    }
}

/// "precision floor 0.6".
pub fn floor_text(floor: f64) -> String {
    format!("precision floor {floor}")
}

// The layout, in SVG pixels: a chart and its legend per panel, two panels to a row.
const TITLE_H: f64 = 62.0;
const CHART_W: f64 = 500.0;
const CHART_H: f64 = 500.0;
const LEGEND_W: f64 = 290.0;
const ROW_H: f64 = 22.0;
const MARGIN: f64 = 12.0;

impl Figure for PrFigure {
    fn size(&self) -> (u32, u32) {
        let panels = self.panels().len();
        let (cols, rows) = (panels.min(2), panels.div_ceil(2));
        let w = cols as f64 * (CHART_W + LEGEND_W) + 2.0 * MARGIN;
        let h = TITLE_H + rows as f64 * CHART_H + MARGIN;
        (w as u32, h as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, s: Scale) -> DrawResult<DB> {
        let w = self.size().0 as f64;
        figure::text(root, &self.title, s.pt(w / 2.0, 24.0), &s.text(20.0, INK), HPos::Center, VPos::Center)?;
        figure::text(root, &self.subtitle(), s.pt(w / 2.0, 48.0), &s.text(13.0, MUTED), HPos::Center, VPos::Center)?;
        let body = root.margin(s.px(TITLE_H), s.px(MARGIN), s.px(MARGIN), s.px(MARGIN));
        let panels = self.panels();
        let cols = panels.len().min(2);
        let areas = body.split_evenly((panels.len().div_ceil(cols), cols));
        let top = self.precision_top();
        let y = Axis::new(
            0.0,
            top,
            if top > 0.6 {
                0.2
            } else if top > 0.2 {
                0.1
            } else {
                0.05
            },
            "Precision",
        );
        let x = Axis::new(0.0, 1.0, 0.2, "Recall");
        let mut first = 0;
        for (area, curves) in areas.iter().zip(&panels) {
            // Ranks when every label is drawn; past the cap, the panel's AP range.
            let caption = match (panels.len(), self.drawn().len() < self.series.len()) {
                (1, _) => None,
                (_, false) => Some(format!("labels {}–{} by AP", first + 1, first + curves.len())),
                (_, true) => Some(format!(
                    "AP {} to {}",
                    fmt3(curves.first().and_then(|c| c.ap)),
                    fmt3(curves.last().and_then(|c| c.ap))
                )),
            };
            self.draw_panel(area, caption.as_deref(), curves, (&x, &y), s)?;
            first += curves.len();
        }
        Ok(())
    }
}
