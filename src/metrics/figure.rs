//! What the figures share: one drawing rendered to SVG and to PNG, the bundled font, the
//! palette and line styles, axes, and clipping lines to them.
//!
//! A figure draws itself once, generic over the plotters backend, at a scale: 1 for SVG (whose
//! text names the `sans-serif` family and is left to the viewer), 2 for PNG, which is then scaled
//! down by half so that its lines and text are anti-aliased (plotters' bitmap lines are not).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::{ImageEncoder, RgbImage};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{Error, Result};

/// The family the figures' text names; in PNGs, the bundled Open Sans.
pub const FONT: &str = "sans-serif";

/// Open Sans Regular (Apache 2.0, see `assets/fonts/`): the bitmap backend needs glyphs of its
/// own, and embedding them keeps the PNGs the same on every machine.
static OPEN_SANS: &[u8] = include_bytes!("../../assets/fonts/OpenSans-Regular.ttf");

/// PNGs are drawn at this multiple of their size and scaled down.
const SUPERSAMPLE: u32 = 2;

pub(crate) type DrawResult<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A figure that draws itself on any backend; sizes are in SVG pixels times `s`.
pub(crate) trait Figure {
    /// Width and height in SVG pixels (and PNG pixels).
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, s: Scale) -> DrawResult<DB>;
}

/// Lengths in SVG pixels, scaled for the backend being drawn.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scale(pub f64);

impl Scale {
    pub fn px(self, v: f64) -> i32 {
        (v * self.0).round() as i32
    }
    pub fn pt(self, x: f64, y: f64) -> (i32, i32) {
        (self.px(x), self.px(y))
    }
    /// Text of `size` SVG pixels in `colour`.
    pub fn text(self, size: f64, colour: RGBColor) -> TextStyle<'static> {
        TextStyle { font: (FONT, size * self.0).into_font(), color: colour.to_backend_color(), pos: Pos::default() }
    }
    pub fn stroke(self, width: f64, colour: RGBColor) -> ShapeStyle {
        colour.stroke_width(self.px(width).max(1) as u32)
    }
}

pub(crate) const INK: RGBColor = RGBColor(34, 34, 34);
pub(crate) const MUTED: RGBColor = RGBColor(90, 90, 90);
pub(crate) const GRID: RGBColor = RGBColor(226, 226, 226);

/// Eight colours that stay apart (matplotlib's tab10 without its grey and olive, which the
/// precision floor and the grid would be confused with).
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// How a line is drawn: solid, or dashes of `on` with gaps of `off` (SVG pixels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Dash {
    Solid,
    Dashed { on: f64, off: f64 },
}

/// The line style of the `k`th curve of a panel: its own colour, and a dash pattern that also
/// tells neighbours in the palette apart for readers who do not see the colours.
pub(crate) fn line_style(k: usize) -> (RGBColor, Dash) {
    const DASHES: [Dash; 3] = [Dash::Solid, Dash::Dashed { on: 9.0, off: 4.0 }, Dash::Dashed { on: 2.5, off: 3.0 }];
    (PALETTE[k % PALETTE.len()], DASHES[k % DASHES.len()])
}

/// A polyline, solid or dashed, in the coordinates of `area`.
pub(crate) fn polyline<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    points: Vec<CT::From>,
    style: ShapeStyle,
    dash: Dash,
    s: Scale,
) -> DrawResult<DB>
where
    CT::From: Clone,
{
    match dash {
        Dash::Solid => area.draw(&PathElement::new(points, style)),
        Dash::Dashed { on, off } => {
            area.draw(&DashedPathElement::new(points, s.px(on).max(1), s.px(off).max(1), style))
        }
    }
}

/// Text anchored at `at` (backend pixels) by its `h` and `v` sides.
pub(crate) fn text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &str,
    at: (i32, i32),
    style: &TextStyle,
    h: HPos,
    v: VPos,
) -> DrawResult<DB> {
    area.draw(&Text::new(s.to_string(), at, style.pos(Pos::new(h, v))))
}

/// `s` cut to `max` backend pixels wide in `style`, with an ellipsis where it was cut.
pub(crate) fn fit<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &str,
    style: &TextStyle,
    max: i32,
) -> std::result::Result<String, DrawingAreaErrorKind<DB::ErrorType>> {
    if area.estimate_text_size(s, style)?.0 as i32 <= max {
        return Ok(s.to_string());
    }
    let chars: Vec<char> = s.chars().collect();
    for n in (1..chars.len()).rev() {
        let cut: String = chars[..n].iter().collect::<String>().trim_end().to_string() + "…";
        if area.estimate_text_size(&cut, style)?.0 as i32 <= max {
            return Ok(cut);
        }
    }
    Ok("…".into())
}

/// The multiples of `step` from `lo` to `hi` (inclusive, up to rounding).
pub(crate) fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let (first, last) = ((lo / step - 1e-9).ceil() as i64, (hi / step + 1e-9).floor() as i64);
    (first..=last).map(|i| (i as f64 * step * 1e6).round() / 1e6).collect()
}

/// A tick spacing of 1, 2 or 5 times a power of ten that cuts `span` into at most 8 steps.
pub(crate) fn tick_step(span: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / 5.0;
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|&st| span / st <= 8.0).unwrap_or(10.0 * p)
}

/// A tick label with as few decimals as the step needs.
pub(crate) fn tick_label(v: f64, step: f64) -> String {
    let decimals = (0..6).find(|&d| (step * 10f64.powi(d)).fract().abs() < 1e-9).unwrap_or(6) as usize;
    format!("{v:.decimals$}")
}

/// One axis of a chart: its range, the ticks (with grid lines) and its title. Ticks are the
/// multiples in the range of 1, 2 or 5 times a power of ten: plotters places them itself, from
/// their count, at exactly these.
#[derive(Clone, Debug)]
pub(crate) struct Axis {
    pub range: (f64, f64),
    pub ticks: Vec<f64>,
    pub step: f64,
    pub title: String,
}

impl Axis {
    /// `lo` to `hi` with ticks every `step`, the range padded by 2% so that lines on the
    /// limits are not hidden under the frame.
    pub fn new(lo: f64, hi: f64, step: f64, title: impl Into<String>) -> Self {
        Self::padded(lo, hi, step, title, 0.02)
    }
    /// With `pad` of the span added at both ends.
    pub fn padded(lo: f64, hi: f64, step: f64, title: impl Into<String>, pad: f64) -> Self {
        let (lo, hi) = (lo - (hi - lo) * pad, hi + (hi - lo) * pad);
        Axis { range: (lo, hi), ticks: ticks(lo, hi, step), step, title: title.into() }
    }
    pub fn contains(&self, v: f64) -> bool {
        v >= self.range.0 && v <= self.range.1
    }
}

pub(crate) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A framed chart on `area` with tick labels, grid lines at the ticks and axis titles.
pub(crate) fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: Option<&str>,
    x: &Axis,
    y: &Axis,
    s: Scale,
) -> std::result::Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut b = ChartBuilder::on(area);
    b.margin_top(s.px(10.0)).margin_right(s.px(14.0)).x_label_area_size(s.px(48.0)).y_label_area_size(s.px(56.0));
    if let Some(c) = caption {
        b.caption(c, s.text(14.0, INK));
    }
    let mut chart = b.build_cartesian_2d(x.range.0..x.range.1, y.range.0..y.range.1)?;
    let fx = |v: &f64| tick_label(*v, x.step);
    let fy = |v: &f64| tick_label(*v, y.step);
    chart
        .configure_mesh()
        .bold_line_style(s.stroke(1.0, GRID))
        .light_line_style(TRANSPARENT)
        .axis_style(s.stroke(1.0, MUTED))
        .set_all_tick_mark_size(s.px(4.0))
        .label_style(s.text(12.5, INK))
        .axis_desc_style(s.text(14.0, INK))
        .x_labels(x.ticks.len())
        .y_labels(y.ticks.len())
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .x_desc(x.title.clone())
        .y_desc(y.title.clone())
        .draw()?;
    let (x0, x1) = (x.range.0, x.range.1);
    let (y0, y1) = (y.range.0, y.range.1);
    chart
        .plotting_area()
        .draw(&PathElement::new(vec![(x0, y0), (x0, y1), (x1, y1), (x1, y0), (x0, y0)], s.stroke(1.0, MUTED)))?;
    Ok(chart)
}

/// The parts of a polyline inside the rectangle `x` × `y` (Liang-Barsky on each segment),
/// without vertices in the middle of straight runs.
pub(crate) fn clip(points: &[(f64, f64)], x: (f64, f64), y: (f64, f64)) -> Vec<Vec<(f64, f64)>> {
    let mut parts: Vec<Vec<(f64, f64)>> = vec![];
    let inside = |p: (f64, f64)| p.0 >= x.0 && p.0 <= x.1 && p.1 >= y.0 && p.1 <= y.1;
    if points.len() == 1 && inside(points[0]) {
        return vec![points.to_vec()];
    }
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        let d = (b.0 - a.0, b.1 - a.1);
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        let mut keep = true;
        for (p, q) in [(-d.0, a.0 - x.0), (d.0, x.1 - a.0), (-d.1, a.1 - y.0), (d.1, y.1 - a.1)] {
            if p == 0.0 {
                keep &= q >= 0.0;
            } else if p < 0.0 {
                t0 = t0.max(q / p);
            } else {
                t1 = t1.min(q / p);
            }
        }
        if !keep || t0 > t1 {
            continue;
        }
        // The ends themselves where they are inside, so that parts join exactly.
        let at = |t: f64| {
            if t == 0.0 {
                a
            } else if t == 1.0 {
                b
            } else {
                (a.0 + t * d.0, a.1 + t * d.1)
            }
        };
        let (ca, cb) = (at(t0), at(t1));
        // Plotters joins thick segments with miters, which spike where two segments are
        // parallel: a vertex inside a straight run is dropped, and where the line turns back on
        // itself (a PR curve's precision moving at one recall) a new part starts.
        match parts.last_mut().filter(|part| part.last() == Some(&ca)) {
            None => parts.push(vec![ca, cb]),
            Some(part) => {
                let n = part.len();
                match (n >= 2).then(|| collinear(part[n - 2], part[n - 1], cb)).flatten() {
                    Some(true) => part[n - 1] = cb,
                    Some(false) => {
                        let q = part[n - 1];
                        parts.push(vec![q, cb]);
                    }
                    None => part.push(cb),
                }
            }
        }
    }
    parts
}

/// For `r` on the line through `p` and `q`: whether it goes on in the direction `p`→`q` (true)
/// or back (false); `None` off the line.
fn collinear(p: (f64, f64), q: (f64, f64), r: (f64, f64)) -> Option<bool> {
    let (u, v) = ((q.0 - p.0, q.1 - p.1), (r.0 - q.0, r.1 - q.1));
    let cross = u.0 * v.1 - u.1 * v.0;
    (cross.abs() <= 1e-9 * u.0.hypot(u.1) * v.0.hypot(v.1)).then_some(u.0 * v.0 + u.1 * v.1 > 0.0)
}

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, OPEN_SANS).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid("the figures' bundled font (assets/fonts/OpenSans-Regular.ttf) could not be read".into()))
    }
}

fn draw_error(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("could not draw a figure: {e}"))
}

/// The figure as an SVG document.
pub(crate) fn svg(fig: &impl Figure) -> Result<String> {
    register_font()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, fig.size()).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        fig.draw(&root, Scale(1.0)).map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(out)
}

/// The figure as an RGB image of its size.
pub(crate) fn raster(fig: &impl Figure) -> Result<RgbImage> {
    register_font()?;
    let (w, h) = fig.size();
    let (bw, bh) = (w * SUPERSAMPLE, h * SUPERSAMPLE);
    let mut buf = vec![255u8; bw as usize * bh as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (bw, bh)).into_drawing_area();
        fig.draw(&root, Scale(SUPERSAMPLE as f64)).map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    let big = RgbImage::from_raw(bw, bh, buf).expect("the buffer holds bw * bh RGB pixels");
    Ok(image::imageops::resize(&big, w, h, image::imageops::FilterType::Triangle))
}

/// The figure as PNG bytes.
pub(crate) fn png(fig: &impl Figure) -> Result<Vec<u8>> {
    let img = raster(fig)?;
    let mut out = vec![];
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::Adaptive,
    )
    .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
    .map_err(|e| Error::Invalid(format!("could not encode a PNG: {e}")))?;
    Ok(out)
}

/// Writes `{stem}.svg` and `{stem}.png` into `dir`; returns their paths.
pub(crate) fn write(dir: &Path, stem: &str, fig: &impl Figure) -> Result<Vec<PathBuf>> {
    let svg_path = dir.join(format!("{stem}.svg"));
    super::write_atomic(&svg_path, svg(fig)?.as_bytes())?;
    let png_path = dir.join(format!("{stem}.png"));
    super::write_atomic(&png_path, &png(fig)?)?;
    Ok(vec![svg_path, png_path])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_at_the_frame_and_splits_where_a_line_turns_back() {
        // A step curve from (0, 1) clipped at precision 0.5: its first segment is cut.
        let parts = clip(&[(0.0, 1.0), (0.0, 0.4), (0.5, 0.4), (0.5, 0.2), (1.0, 0.2)], (0.0, 1.0), (0.0, 0.5));
        assert_eq!(parts, [vec![(0.0, 0.5), (0.0, 0.4), (0.5, 0.4), (0.5, 0.2), (1.0, 0.2)]]);
        // Down, up again at the same recall, then right: two parts, no 180° join; a vertex in a
        // straight run is dropped.
        let parts = clip(&[(0.5, 0.8), (0.5, 0.3), (0.5, 0.6), (0.7, 0.6), (1.0, 0.6)], (0.0, 1.0), (0.0, 1.0));
        assert_eq!(parts, [vec![(0.5, 0.8), (0.5, 0.3)], vec![(0.5, 0.3), (0.5, 0.6), (1.0, 0.6)]]);
        // Wholly outside: nothing; a lone point inside stays.
        assert!(clip(&[(0.0, 2.0), (1.0, 3.0)], (0.0, 1.0), (0.0, 1.0)).is_empty());
        assert_eq!(clip(&[(0.5, 0.5)], (0.0, 1.0), (0.0, 1.0)), [vec![(0.5, 0.5)]]);
    }

    #[test]
    fn ticks_are_round_multiples() {
        assert_eq!(ticks(-0.02, 1.02, 0.2), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(ticks(0.5, 1.5, 1.0), [1.0]);
        assert_eq!((tick_step(1.0), tick_step(0.3), tick_step(59.0), tick_step(2.4)), (0.2, 0.05, 10.0, 0.5));
        assert_eq!(
            (tick_label(0.4, 0.2), tick_label(0.15, 0.05), tick_label(20.0, 10.0)),
            ("0.4".into(), "0.15".into(), "20".into())
        );
    }
}
