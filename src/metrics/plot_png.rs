//! Precision-recall figures rasterised into an RGB image with the built-in bitmap font.

use image::{ImageEncoder, Rgb, RgbImage};

use super::font;
use super::plot::{colour, legend_header, Layout, PrFigure, TICKS};
use crate::{Error, Result};

const BLACK: [u8; 3] = [0, 0, 0];
const GRID: [u8; 3] = [221, 221, 221];
const FLOOR: [u8; 3] = [136, 136, 136];

pub fn render(fig: &PrFigure) -> RgbImage {
    let l = Layout::new(fig.series.len());
    let mut c = Canvas(RgbImage::from_pixel(l.width, l.height, Rgb([255, 255, 255])));
    axes(&mut c, &l, fig);
    for (k, series) in fig.series.iter().enumerate() {
        let px = l.pixels(series);
        for w in px.windows(2) {
            c.line(w[0], w[1], colour(k), 2);
        }
        let y = l.legend_y(k);
        c.rect(l.legend_x, y + 6.0, 24.0, 4.0, colour(k));
        c.text(l.legend_x + 32.0, y + 1.0, &series.legend(), 2, BLACK);
    }
    c.0
}

pub fn encode(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = vec![];
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::Invalid(format!("could not encode a PNG: {e}")))?;
    Ok(out)
}

fn axes(c: &mut Canvas, l: &Layout, fig: &PrFigure) {
    let (x0, x1, y0, y1) = (l.x(0.0), l.x(1.0), l.y(0.0), l.y(1.0));
    for t in TICKS {
        c.line((l.x(t), y1), (l.x(t), y0), GRID, 1);
        c.line((x0, l.y(t)), (x1, l.y(t)), GRID, 1);
        let label = format!("{t:.1}");
        c.text(l.x(t) - text_width(&label, 2) / 2.0, y0 + 10.0, &label, 2, BLACK);
        c.text(x0 - 10.0 - text_width(&label, 2), l.y(t) - 7.0, &label, 2, BLACK);
    }
    if let Some(p) = fig.precision_floor {
        let mut x = x0;
        while x < x1 {
            c.line((x, l.y(p)), ((x + 6.0).min(x1), l.y(p)), FLOOR, 1);
            x += 10.0;
        }
    }
    for (a, b) in [((x0, y0), (x1, y0)), ((x0, y1), (x1, y1)), ((x0, y0), (x0, y1)), ((x1, y0), (x1, y1))] {
        c.line(a, b, BLACK, 1);
    }
    c.text((l.width as f64 - text_width(&fig.title, 2)) / 2.0, 18.0, &fig.title, 2, BLACK);
    c.text((x0 + x1 - text_width("RECALL", 2)) / 2.0, y0 + 38.0, "RECALL", 2, BLACK);
    c.text_up(x0 - 72.0, (y0 + y1 + text_width("PRECISION", 2)) / 2.0, "PRECISION", 2, BLACK);
    c.text(l.legend_x + 32.0, l.top + 4.0, &legend_header(), 2, BLACK);
    if fig.series.is_empty() {
        c.text(l.legend_x, l.legend_y(0), "NO LABELS WITH POSITIVES", 2, BLACK);
    }
}

fn text_width(s: &str, scale: usize) -> f64 {
    (s.chars().count() * font::ADVANCE * scale) as f64
}

struct Canvas(RgbImage);

impl Canvas {
    fn put(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as u32) < self.0.width() && (y as u32) < self.0.height() {
            self.0.put_pixel(x as u32, y as u32, Rgb(rgb));
        }
    }

    /// A straight line `thick` pixels wide, one square per step along the longer axis.
    fn line(&mut self, a: (f64, f64), b: (f64, f64), rgb: [u8; 3], thick: i64) {
        let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as i64;
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let x = (a.0 + (b.0 - a.0) * t).round() as i64 - (thick - 1) / 2;
            let y = (a.1 + (b.1 - a.1) * t).round() as i64 - (thick - 1) / 2;
            for (dx, dy) in (0..thick).flat_map(|dx| (0..thick).map(move |dy| (dx, dy))) {
                self.put(x + dx, y + dy, rgb);
            }
        }
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, rgb: [u8; 3]) {
        for py in y as i64..(y + h) as i64 {
            for px in x as i64..(x + w) as i64 {
                self.put(px, py, rgb);
            }
        }
    }

    /// Text with its top-left corner at (`x`, `y`), each font pixel `scale` pixels square.
    fn text(&mut self, x: f64, y: f64, s: &str, scale: usize, rgb: [u8; 3]) {
        self.glyphs(s, scale, |gx, gy| (x as i64 + gx, y as i64 + gy), rgb);
    }

    /// Text read bottom to top, starting at (`x`, `y`).
    fn text_up(&mut self, x: f64, y: f64, s: &str, scale: usize, rgb: [u8; 3]) {
        self.glyphs(s, scale, |gx, gy| (x as i64 + gy, y as i64 - gx), rgb);
    }

    fn glyphs(&mut self, s: &str, scale: usize, at: impl Fn(i64, i64) -> (i64, i64), rgb: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            for (fx, fy) in (0..font::WIDTH).flat_map(|fx| (0..font::HEIGHT).map(move |fy| (fx, fy))) {
                if !font::is_set(ch, fx, fy) {
                    continue;
                }
                for (sx, sy) in (0..scale).flat_map(|sx| (0..scale).map(move |sy| (sx, sy))) {
                    let gx = ((k * font::ADVANCE + fx) * scale + sx) as i64;
                    let (px, py) = at(gx, (fy * scale + sy) as i64);
                    self.put(px, py, rgb);
                }
            }
        }
    }
}
