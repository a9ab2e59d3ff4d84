//! Precision-recall figures as SVG, written by hand: one `<path>` per curve; axes, grid and
//! legend swatches are `<line>`s, so the paths are exactly the curves.

use std::fmt::Write;

use super::plot::{colour, legend_header, Layout, PrFigure, TICKS};

pub fn render(fig: &PrFigure) -> String {
    let l = Layout::new(fig.series.len());
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n",
        w = l.width,
        h = l.height
    );
    axes(&mut s, &l, fig);
    for (k, series) in fig.series.iter().enumerate() {
        let [r, g, b] = colour(k);
        let d: Vec<String> = l.pixels(series).iter().map(|(x, y)| format!("{x} {y}")).collect();
        let _ = writeln!(
            s,
            "<path d=\"M{}\" fill=\"none\" stroke=\"rgb({r},{g},{b})\" stroke-width=\"1.8\"/>",
            d.join(" L")
        );
        let y = l.legend_y(k) + 8.0;
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"rgb({r},{g},{b})\" stroke-width=\"4\"/>\
             <text x=\"{}\" y=\"{}\" font-family=\"monospace\" xml:space=\"preserve\">{}</text>",
            l.legend_x,
            l.legend_x + 24.0,
            l.legend_x + 32.0,
            y + 4.0,
            escape(&series.legend())
        );
    }
    s + "</svg>\n"
}

fn axes(s: &mut String, l: &Layout, fig: &PrFigure) {
    let (x0, x1, y0, y1) = (l.x(0.0), l.x(1.0), l.y(0.0), l.y(1.0));
    for t in TICKS {
        let (x, y) = (l.x(t), l.y(t));
        let _ = writeln!(
            s,
            "<line x1=\"{x}\" y1=\"{y1}\" x2=\"{x}\" y2=\"{y0}\" stroke=\"#ddd\"/>\
             <line x1=\"{x0}\" y1=\"{y}\" x2=\"{x1}\" y2=\"{y}\" stroke=\"#ddd\"/>\
             <text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{t:.1}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{t:.1}</text>",
            y0 + 20.0,
            x0 - 8.0,
            y + 4.0
        );
    }
    if let Some(p) = fig.precision_floor {
        let y = l.y(p);
        let _ = writeln!(
            s,
            "<line x1=\"{x0}\" y1=\"{y}\" x2=\"{x1}\" y2=\"{y}\" stroke=\"#888\" stroke-dasharray=\"6 4\"/>"
        );
    }
    let _ = writeln!(
        s,
        "<rect x=\"{x0}\" y=\"{y1}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"16\">{}</text>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">Recall</text>\n\
         <text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\">Precision</text>\n\
         <text x=\"{}\" y=\"{}\" font-family=\"monospace\" font-weight=\"bold\" xml:space=\"preserve\">{}</text>",
        l.size,
        l.size,
        l.width as f64 / 2.0,
        l.top - 25.0,
        escape(&fig.title),
        (x0 + x1) / 2.0,
        y0 + 45.0,
        x0 - 50.0,
        (y0 + y1) / 2.0,
        l.legend_x + 32.0,
        l.top + 12.0,
        legend_header()
    );
    if fig.series.is_empty() {
        let _ =
            writeln!(s, "<text x=\"{}\" y=\"{}\">no labels with positives</text>", l.legend_x, l.legend_y(0) + 12.0);
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
