//! Precision-recall figures, one per rarity group as in the paper, and the layout that the SVG
//! and PNG renderers share.

use std::path::{Path, PathBuf};

use super::ap::PrCurve;
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

    /// The legend entry: the name, cut to fit, and the AP.
    pub fn legend(&self) -> String {
        const MAX: usize = LEGEND_NAME;
        let name: String = if self.name.chars().count() > MAX {
            self.name.chars().take(MAX - 2).chain("..".chars()).collect()
        } else {
            self.name.clone()
        };
        format!("{name:MAX$} {}", fmt3(self.ap))
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
                title: format!("{} labels - precision vs recall", group.name()),
                precision_floor: Some(r.precision_floor),
                series,
            }
        })
        .collect()
}

/// Writes `{stem}_{key}.svg` and `.png` for each figure into `dir`; returns the paths.
pub fn write_pr_figures(dir: &Path, stem: &str, figures: &[PrFigure]) -> Result<Vec<PathBuf>> {
    let mut paths = vec![];
    for fig in figures {
        let svg = dir.join(format!("{stem}_{}.svg", fig.key));
        super::write_atomic(&svg, super::plot_svg::render(fig).as_bytes())?;
        let png = dir.join(format!("{stem}_{}.png", fig.key));
        super::write_atomic(&png, &super::plot_png::encode(&super::plot_png::render(fig))?)?;
        paths.extend([svg, png]);
    }
    Ok(paths)
}

/// Twenty distinguishable colours (matplotlib's tab10, then its lighter tab20 partners).
pub const PALETTE: [[u8; 3]; 20] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
    [174, 199, 232],
    [255, 187, 120],
    [152, 223, 138],
    [255, 152, 150],
    [197, 176, 213],
    [196, 156, 148],
    [247, 182, 210],
    [199, 199, 199],
    [219, 219, 141],
    [158, 218, 229],
];

pub fn colour(k: usize) -> [u8; 3] {
    PALETTE[k % PALETTE.len()]
}

/// Pixel geometry shared by both renderers: a square plot on the left, the legend on the right.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    pub left: f64,
    pub top: f64,
    pub size: f64,
    pub legend_x: f64,
    pub row_height: f64,
}

impl Layout {
    pub fn new(series: usize) -> Self {
        let (top, size, row_height) = (60.0, 520.0, 20.0);
        let legend_bottom = top + 30.0 + row_height * series as f64 + 20.0;
        let height = (top + size + 70.0).max(legend_bottom);
        Layout { width: 1040, height: height as u32, left: 90.0, top, size, legend_x: 650.0, row_height }
    }

    pub fn x(&self, recall: f64) -> f64 {
        self.left + recall.clamp(0.0, 1.0) * self.size
    }

    pub fn y(&self, precision: f64) -> f64 {
        self.top + (1.0 - precision.clamp(0.0, 1.0)) * self.size
    }

    /// The top of legend row `k`.
    pub fn legend_y(&self, k: usize) -> f64 {
        self.top + 30.0 + self.row_height * k as f64
    }

    /// Pixel vertices of a series, with repeats after rounding to 0.1 px dropped.
    pub fn pixels(&self, s: &Series) -> Vec<(f64, f64)> {
        let round = |v: f64| (v * 10.0).round() / 10.0;
        let mut v: Vec<(f64, f64)> = s.points.iter().map(|&(r, p)| (round(self.x(r)), round(self.y(p)))).collect();
        v.dedup();
        v
    }
}

const LEGEND_NAME: usize = 20;

/// The legend's column titles, aligned with `Series::legend` in a fixed-width font.
pub fn legend_header() -> String {
    format!("{:LEGEND_NAME$} AP", "Label")
}

/// Tick positions on both axes.
pub const TICKS: [f64; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
