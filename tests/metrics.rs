//! Evaluation metrics against scikit-learn 1.9 (constants computed once with
//! `average_precision_score` / `precision_recall_curve`), and the reports they feed.

use std::path::PathBuf;

use tailor::metrics::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn assert_close(got: Option<f64>, want: Option<f64>) {
    match (got, want) {
        (Some(g), Some(w)) => assert!(close(g, w), "got {g}, want {w}"),
        _ => assert_eq!(got, want),
    }
}

fn bools(v: &[u8]) -> Vec<bool> {
    v.iter().map(|&b| b == 1).collect()
}

/// A fresh directory under the target dir, removed first if a previous run left it.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tailor-metrics-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// y = [1,0,1,1,0,0], s = [.9,.8,.8,.3,.3,.1]: tied scores at 0.8 and 0.3 (one threshold each).
const TIE_S: [f64; 6] = [0.9, 0.8, 0.8, 0.3, 0.3, 0.1];
const TIE_Y: [u8; 6] = [1, 0, 1, 1, 0, 0];

#[test]
fn ap_with_ties_matches_sklearn() {
    assert_close(average_precision(&TIE_S, &bools(&TIE_Y)), Some(0.7555555555555555));
}

#[test]
fn ap_with_many_ties_matches_sklearn() {
    #[rustfmt::skip]
    let q = [0, 0, 3, 2, 2, 3, 3, 0, 2, 0, 2, 4, 2, 0, 2, 0, 3, 4, 4, 3, 4, 1, 0, 2, 2, 3, 4, 1, 4, 0, 1, 3, 1, 3, 2, 2,
        4, 4, 4, 2];
    #[rustfmt::skip]
    let y = [0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0,
        1, 1, 1, 1];
    let s: Vec<f64> = q.iter().map(|&v| v as f64 * 0.25).collect();
    let c = pr_curve(&s, &bools(&y)).unwrap();
    assert_eq!(c.thresholds, [0.0, 0.25, 0.5, 0.75, 1.0]);
    let want_p = [0.45, 0.5, 0.4642857142857143, 0.6470588235294118, 0.8888888888888888, 1.0];
    let want_r = [1.0, 0.8888888888888888, 0.7222222222222222, 0.6111111111111112, 0.4444444444444444, 0.0];
    assert!(c.precision.iter().zip(want_p).all(|(&g, w)| close(g, w)), "{:?}", c.precision);
    assert!(c.recall.iter().zip(want_r).all(|(&g, w)| close(g, w)), "{:?}", c.recall);
    assert_close(Some(c.average_precision()), Some(0.6878255005705987));
}

#[test]
fn pr_curve_points_match_sklearn() {
    let c = pr_curve(&TIE_S, &bools(&TIE_Y)).unwrap();
    assert_eq!(c.thresholds, [0.1, 0.3, 0.8, 0.9]);
    let want_p = [0.5, 0.6, 2.0 / 3.0, 1.0, 1.0];
    let want_r = [1.0, 1.0, 2.0 / 3.0, 1.0 / 3.0, 0.0];
    assert!(c.precision.iter().zip(want_p).all(|(&g, w)| close(g, w)), "{:?}", c.precision);
    assert!(c.recall.iter().zip(want_r).all(|(&g, w)| close(g, w)), "{:?}", c.recall);
    // Recent scikit-learn keeps thresholds below the one reaching full recall.
    let c = pr_curve(&[0.1, 0.2, 0.3], &[false, false, true]).unwrap();
    assert_eq!(
        (c.thresholds, c.precision, c.recall),
        (vec![0.1, 0.2, 0.3], vec![1.0 / 3.0, 0.5, 1.0, 1.0], vec![1.0, 1.0, 1.0, 0.0])
    );
}

#[test]
fn ap_all_positive_single_positive_and_none() {
    assert_close(average_precision(&[0.1, 0.2, 0.3], &[true; 3]), Some(1.0));
    let s = [0.5, 0.9, 0.4, 0.1, 0.3];
    let c = pr_curve(&s, &bools(&[0, 0, 1, 0, 0])).unwrap();
    assert_eq!(c.thresholds, [0.1, 0.3, 0.4, 0.5, 0.9]);
    assert_eq!(c.precision, [0.2, 0.25, 1.0 / 3.0, 0.0, 0.0, 1.0]);
    assert_eq!(c.recall, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    assert_close(Some(c.average_precision()), Some(1.0 / 3.0));
    // scikit-learn warns and returns 0 here; AP is undefined without positives.
    assert_eq!(average_precision(&[0.1, 0.2], &[false, false]), None);
    assert_eq!(pr_curve(&[], &[]), None);
    // All scores tied: one threshold, AP = prevalence.
    assert_close(average_precision(&[0.5; 4], &bools(&[1, 0, 0, 1])), Some(0.5));
}

// 12 × 4 multi-label; label 3 has no positives.
#[rustfmt::skip]
const ML_S: [f32; 48] = [0.9, 0.6, 0.65, 0.85, 0.55, 0.75, 0.8, 0.2, 0.05, 0.3, 0.25, 0.85, 0.9, 0.0, 0.45, 0.8, 0.1,
    0.75, 0.1, 0.45, 0.8, 0.3, 0.3, 0.25, 0.7, 0.25, 0.95, 0.4, 0.45, 0.5, 0.55, 0.55, 0.5, 0.95, 0.8, 0.75, 0.7, 0.6,
    0.3, 0.95, 0.45, 0.2, 0.8, 0.15, 0.85, 0.6, 0.1, 0.0];
#[rustfmt::skip]
const ML_Y: [u8; 48] = [1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0];
const ML_AP: [Option<f64>; 4] = [Some(0.3265151515151515), Some(0.2487373737373737), Some(0.28888888888888886), None];

fn multi() -> Predictions<'static> {
    Predictions { scores: &ML_S, num_labels: 4, truth: Truth::Multi(&ML_Y) }
}

#[test]
fn multi_label_macro_excludes_undefined_and_micro_pools() {
    let s = ApSummary::compute(&multi()).unwrap();
    for (g, w) in s.per_label.iter().zip(ML_AP) {
        assert_close(*g, w);
    }
    assert_close(s.macro_ap, Some((0.3265151515151515 + 0.2487373737373737 + 0.28888888888888886) / 3.0));
    // sklearn's micro average over the raveled matrix (the empty label's pairs are negatives).
    assert_close(s.micro_ap, Some(0.18122599345108292));
}

// 10 samples × 3 classes of softmax probabilities.
#[rustfmt::skip]
const SL_P: [f32; 30] = [0.5, 0.25, 0.25, 0.314, 0.351, 0.336, 0.628, 0.16, 0.212, 0.559, 0.333, 0.109, 0.422, 0.306,
    0.272, 0.366, 0.4, 0.233, 0.028, 0.634, 0.338, 0.338, 0.199, 0.463, 0.059, 0.87, 0.071, 0.07, 0.553, 0.376];
const SL_Y: [u32; 10] = [0, 1, 2, 0, 1, 0, 2, 2, 1, 0];

fn single() -> Predictions<'static> {
    Predictions { scores: &SL_P, num_labels: 3, truth: Truth::Single(&SL_Y) }
}

#[test]
fn single_label_one_vs_rest_ap() {
    let s = ApSummary::compute(&single()).unwrap();
    for (g, w) in s.per_label.iter().zip([0.5666666666666667, 0.6095238095238096, 0.6805555555555556]) {
        assert_close(*g, Some(w));
    }
    assert_close(s.macro_ap, Some(0.618915343915344));
    assert_close(s.micro_ap, Some(0.5218865675387414));
}

#[test]
fn bad_inputs_are_errors() {
    let bad = |scores: &[f32], truth: Truth| Predictions { scores, num_labels: 2, truth }.validate().is_err();
    assert!(bad(&[0.1, 0.2, 0.3], Truth::Multi(&[0, 1, 0])));
    assert!(bad(&[0.1, f32::NAN], Truth::Multi(&[0, 1])));
    assert!(bad(&[0.1, 0.2], Truth::Multi(&[0, 2])));
    assert!(bad(&[0.1, 0.2], Truth::Single(&[2])));
    assert!(bad(&[0.1, 0.2], Truth::Single(&[0, 1])));
    assert_eq!(multi_hot(&[vec![0, 2], vec![], vec![1]], 3).unwrap(), [1, 0, 1, 0, 0, 0, 0, 1, 0]);
    assert!(multi_hot(&[vec![3]], 3).is_err());
}

#[test]
fn threshold_at_precision_floor() {
    let c = pr_curve(&TIE_S, &bools(&TIE_Y)).unwrap();
    // Precision 3/5 is exactly 0.6: the floor is inclusive.
    let op = c.at_precision(0.6).unwrap();
    assert_eq!((op.threshold, op.precision, op.recall), (0.3, 0.6, 1.0));
    let op = c.at_precision(0.7).unwrap();
    assert_eq!((op.threshold, op.precision), (0.9, 1.0));
    assert!(close(op.recall, 1.0 / 3.0));
    let op = c.at_precision(0.61).unwrap();
    assert_eq!(op.threshold, 0.8);
    assert!(close(op.recall, 2.0 / 3.0));
    // The only positive is ranked last: no threshold reaches 0.6.
    assert_eq!(pr_curve(&[0.9, 0.1], &[false, true]).unwrap().at_precision(0.6), None);
}

#[test]
fn confusion_matrix_and_accuracy() {
    let m = ConfusionMatrix::from_scores(&SL_P, &SL_Y, 3).unwrap();
    assert_eq!(argmax_rows(&SL_P, 3), [0, 1, 0, 0, 0, 1, 1, 2, 1, 1]);
    assert_eq!(m.counts, [2, 2, 0, 1, 2, 0, 1, 1, 1]);
    assert_eq!(m.accuracy(), Some(0.5));
    assert_eq!(m.per_class_accuracy(), [Some(0.5), Some(2.0 / 3.0), Some(1.0 / 3.0)]);
    // Ties go to the first maximum, as numpy.argmax; an absent class has no accuracy.
    assert_eq!(argmax_rows(&[0.4, 0.4, 0.2], 3), [0]);
    let m = ConfusionMatrix::from_predictions(&[0, 0], &[0, 1], 3).unwrap();
    assert_eq!(m.per_class_accuracy(), [Some(0.5), None, None]);
    assert!(ConfusionMatrix::from_predictions(&[0, 3], &[0, 1], 3).is_err());
}

#[test]
fn shot_and_rarity_groups() {
    let s = ShotSplit::default();
    let groups: Vec<Shot> = [0, 19, 20, 100, 101, 5000].iter().map(|&n| s.group(n)).collect();
    assert_eq!(groups, [Shot::Few, Shot::Few, Shot::Medium, Shot::Medium, Shot::Many, Shot::Many]);
    let s = ShotSplit::new(50, 5).unwrap();
    assert_eq!((s.group(4), s.group(5), s.group(51)), (Shot::Few, Shot::Medium, Shot::Many));
    assert!(ShotSplit::new(10, 50).is_err());
    let r = RaritySplit::default();
    assert_eq!((r.group(100, 1000), r.group(99, 1000)), (Rarity::Majority, Rarity::Minority));
    assert_eq!((r.group(10, 1000), r.group(6, 1000)), (Rarity::Minority, Rarity::Rare));
    assert!(RaritySplit::new(0.01, 0.1).is_err());
}

fn names(n: usize) -> Vec<String> {
    ["sleeveless", "puff sleeve", "cap | sleeve", "bishop"].iter().take(n).map(|s| s.to_string()).collect()
}

fn multi_eval() -> Evaluation {
    // 1000 training samples: majority, minority, rare, rare.
    evaluate(&multi(), &names(4), &[400, 50, 6, 3], 1000, &EvalOptions::default()).unwrap()
}

#[test]
fn report_rows_groups_and_json_round_trip() {
    let ev = multi_eval();
    let r = &ev.report;
    assert_eq!((r.kind, r.eval_samples, r.labels.len()), (TaskKind::Multi, 12, 4));
    let shots: Vec<Shot> = r.labels.iter().map(|l| l.shot).collect();
    assert_eq!(shots, [Shot::Many, Shot::Medium, Shot::Few, Shot::Few]);
    let rar: Vec<Rarity> = r.labels.iter().map(|l| l.rarity).collect();
    assert_eq!(rar, [Rarity::Majority, Rarity::Minority, Rarity::Rare, Rarity::Rare]);
    assert_eq!(r.labels[3].eval_positives, 0);
    assert_eq!((r.labels[3].ap, r.labels[3].at_floor), (None, None));
    let rare = r.group("rare").unwrap();
    assert_eq!((rare.labels, rare.labels_with_ap), (2, 1));
    assert_close(rare.macro_ap, ML_AP[2]);
    for (l, c) in r.labels.iter().zip(&ev.curves) {
        assert_eq!(l.at_floor, c.as_ref().and_then(|c| c.at_precision(0.6)));
    }
    let json = r.to_json().unwrap();
    assert!(json.contains("\"ap\": null"));
    // Exact: serde_json parses floats with its `float_roundtrip` feature.
    let back = EvalReport::from_json(&json).unwrap();
    assert_eq!(&back, r);
    assert_eq!(back.to_json().unwrap(), json);
}

#[test]
fn single_label_report_has_accuracy_and_confusion() {
    let ev = evaluate(&single(), &names(3), &[500, 300, 10], 810, &EvalOptions::default()).unwrap();
    let s = ev.report.single.as_ref().unwrap();
    assert_eq!((s.top1_accuracy, s.confusion.counts.clone()), (Some(0.5), vec![2, 2, 0, 1, 2, 0, 1, 1, 1]));
    let back = EvalReport::from_json(&ev.report.to_json().unwrap()).unwrap();
    assert_eq!(back.single.unwrap().confusion, s.confusion);
    assert!(evaluate(&single(), &names(2), &[1, 2], 3, &EvalOptions::default()).is_err());
}

#[test]
fn markdown_table() {
    let md = multi_eval().report.to_markdown();
    assert!(
        md.contains("| Label | Train | Eval positives | Group | Rarity | AP | Threshold | Recall@0.6 | Precision |")
    );
    assert!(md.contains("| cap \\| sleeve | 6 |"), "{md}");
    assert!(md.contains("| bishop | 3 | 0 | few | rare | - | - | - | - |"), "{md}");
    assert!(md.contains("left out"));
}

#[test]
fn table_one_marks_the_best_scheme() {
    let labels = vec!["a".to_string(), "b".into(), "c".into()];
    let ap = vec![vec![Some(0.5), Some(0.7), Some(0.6)], vec![Some(0.4), Some(0.4), Some(0.3)], vec![None, None, None]];
    let t = SchemeComparison { schemes: PAPER_SCHEMES.map(String::from).to_vec(), labels, ap };
    let md = t.to_markdown();
    assert!(md.starts_with("| Label | NW | IFW | IEW |\n|---|---:|---:|---:|\n"));
    assert!(md.contains("| a | 0.500 | **0.700** | 0.600 |"), "{md}");
    assert!(md.contains("| b | **0.400** | **0.400** | 0.300 |"), "{md}");
    assert!(md.contains("| c | - | - | - |"));
    assert!(md.contains("| mAP | 0.450 | **0.550** | 0.450 |"), "{md}");
    let text = t.to_text();
    assert!(text.contains("a       0.500  0.700*   0.600"), "{text}");
    let r = multi_eval().report;
    let t = SchemeComparison::from_reports(&[("NW", &r), ("IEW", &r)]).unwrap();
    assert_eq!(t.ap[0], [ML_AP[0], ML_AP[0]]);
}

#[test]
fn step_series_encloses_the_ap() {
    let c = pr_curve(&TIE_S, &bools(&TIE_Y)).unwrap();
    let s = Series::from_curve("x", &c);
    // Area under the steps (trapezoids of a step function are rectangles).
    let area: f64 = s.points.windows(2).map(|w| (w[0].0 - w[1].0) * (w[0].1 + w[1].1) / 2.0).sum();
    assert!(close(area, c.average_precision()), "{area}");
}

/// The text of every `<text>` element of an SVG document, which must parse as XML.
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_string())
        .collect()
}

/// The `width` and `height` of an SVG document.
fn svg_size(svg: &str) -> (u32, u32) {
    let doc = roxmltree::Document::parse(svg).unwrap();
    let get = |a: &str| doc.root_element().attribute(a).unwrap().trim_end_matches("px").parse().unwrap();
    (get("width"), get("height"))
}

/// A PNG of `size` that is a drawing: many colours, some near `colour`.
fn assert_png(png: &[u8], size: (u32, u32), colour: [u8; 3]) {
    let img = image::load_from_memory(png).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), size);
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 20, "{} colours", colours.len());
    let near = |p: &image::Rgb<u8>| p.0.iter().zip(colour).all(|(&a, b)| a.abs_diff(b) < 24);
    assert!(img.pixels().filter(|p| near(p)).count() > 50, "no pixels near {colour:?}");
}

#[test]
fn pr_figure_svg_is_xml_with_the_labels_as_written() {
    let figs = pr_figures(&multi_eval());
    assert_eq!(figs.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(), ["majority", "minority", "rare"]);
    // Rare has two labels but one without positives: no curve for it.
    assert_eq!(figs.iter().map(|f| f.series.len()).collect::<Vec<_>>(), [1, 1, 1]);
    let fig = PrFigure { series: figs.iter().flat_map(|f| f.series.clone()).collect(), ..figs[0].clone() };
    let texts = svg_texts(&fig.svg().unwrap());
    for want in ["Majority labels: precision vs recall", "3 labels, best AP first", "Recall", "Precision"] {
        assert!(texts.iter().any(|t| t == want), "no '{want}' in {texts:?}");
    }
    // Every label with its AP, in the legend; the floor labelled on its line and in the legend.
    for s in &fig.series {
        assert!(texts.contains(&s.name), "no '{}' in {texts:?}", s.name);
        assert!(texts.contains(&format!("{:.3}", s.ap.unwrap())), "{texts:?}");
    }
    assert!(texts.iter().any(|t| t == "cap | sleeve"));
    assert_eq!(texts.iter().filter(|t| *t == "precision floor 0.6").count(), 2, "{texts:?}");
    // The group without curves says so.
    let empty = PrFigure { series: vec![], ..figs[0].clone() };
    assert!(svg_texts(&empty.svg().unwrap()).iter().any(|t| t.contains("no label of this group has positives")));
}

#[test]
fn pr_figure_png_is_a_drawing_the_size_of_the_svg() {
    let figs = pr_figures(&multi_eval());
    let size = svg_size(&figs[0].svg().unwrap());
    assert_png(&figs[0].png().unwrap(), size, [31, 119, 180]);
}

/// A step series falling from precision `p0` to `p0 / 2` at full recall.
fn fake_series(name: String, p0: f64) -> Series {
    Series {
        name,
        ap: Some(p0 * 0.75),
        points: vec![(0.0, 1.0), (0.0, p0), (0.5, p0), (0.5, p0 / 2.0), (1.0, p0 / 2.0)],
    }
}

#[test]
fn many_curves_are_split_into_panels_and_capped() {
    let fig = |n: usize| PrFigure {
        key: "minority".into(),
        title: "Minority labels: precision vs recall".into(),
        precision_floor: Some(0.6),
        series: (0..n).map(|i| fake_series(format!("L{i:02}"), 0.2 + 0.7 * i as f64 / n as f64)).collect(),
    };
    let sizes = |f: &PrFigure| f.panels().iter().map(Vec::len).collect::<Vec<_>>();
    assert_eq!(sizes(&fig(5)), [5]);
    assert_eq!(sizes(&fig(12)), [6, 6]);
    assert_eq!(sizes(&fig(17)), [6, 6, 5]);
    assert_eq!(sizes(&fig(40)), [8; 4]);
    assert!(sizes(&fig(40)).iter().all(|&n| n <= plot::CURVES_PER_PANEL));
    // Past the cap: an even spread over the AP ranking, best and worst included, best first.
    let big = fig(40);
    let drawn: Vec<&str> = big.drawn().iter().map(|s| s.name.as_str()).collect();
    assert_eq!((drawn.len(), drawn[0], drawn[31]), (32, "L39", "L00"));
    let texts = svg_texts(&big.svg().unwrap());
    assert!(texts.iter().any(|t| t.starts_with("32 of 40 labels drawn")), "{texts:?}");
    let legend: Vec<&String> = texts.iter().filter(|t| t.starts_with('L') && t.len() == 3).collect();
    assert_eq!(legend.len(), 32);
    // Two panels side by side make the figure wider; four, taller too.
    let (one, two, four) =
        (svg_size(&fig(5).svg().unwrap()), svg_size(&fig(12).svg().unwrap()), svg_size(&big.svg().unwrap()));
    assert!(two.0 > one.0 && two.1 == one.1 && four.1 > two.1, "{one:?} {two:?} {four:?}");
    assert_png(&fig(12).png().unwrap(), two, [255, 127, 14]);
}

#[test]
fn precision_axis_zooms_on_low_curves() {
    let low = PrFigure {
        key: "rare".into(),
        title: "Rare labels: precision vs recall".into(),
        precision_floor: Some(0.6),
        series: vec![fake_series("a".into(), 0.12), fake_series("b".into(), 0.05)],
    };
    // The point at recall 0 (precision 1 by convention) does not count.
    assert_eq!(low.precision_top(), 0.2);
    let texts = svg_texts(&low.svg().unwrap());
    assert!(texts.iter().any(|t| t == "precision floor 0.6 (no curve reaches it)"), "{texts:?}");
    assert!(texts.iter().any(|t| t == "0.20") && !texts.iter().any(|t| t == "0.60"), "{texts:?}");
    let high = PrFigure { series: vec![fake_series("c".into(), 0.9)], ..low.clone() };
    assert_eq!(high.precision_top(), 1.0);
    let mid = PrFigure { series: vec![fake_series("c".into(), 0.45)], ..low };
    assert_eq!(mid.precision_top(), 0.5);
}

const CLASSIFIER_JSONL: &str = r#"{"epoch":1,"images_per_s":812.5,"lr":0.003,"seconds":2.7,"step":70,"train_loss":2.1,"val_macro_map":0.31,"val_top1":0.42}
{"epoch":2,"images_per_s":830.1,"lr":0.003,"seconds":2.6,"step":140,"train_loss":1.6,"val_macro_map":null,"val_top1":0.55}
{"epoch":3,"images_per_s":829.0,"lr":0.003,"seconds":2.6,"step":210,"train_loss":1.9,"val_macro_map":0.47,"val_top1":0.61}
{"epoch":3,"images_per_s":829.0,"lr":0.003,"seconds":2.6,"step":210,"train_loss":1.2,"val_macro_map":0.52,"val_top1":0.66}
{"epoch":4,"train_loss":1.1,"val_ma"#;

#[test]
fn training_curves_read_metrics_jsonl() {
    let c = training_curves_from_jsonl(CLASSIFIER_JSONL).unwrap();
    // Epoch 3 logged twice keeps its last line; the cut-short last line is left out.
    assert_eq!(c.epochs, [1, 2, 3]);
    assert_eq!(c.losses.len(), 1);
    assert_eq!((c.losses[0].key.as_str(), &c.losses[0].values), ("train_loss", &vec![Some(2.1), Some(1.6), Some(1.2)]));
    let keys: Vec<&str> = c.validation.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["val_macro_map", "val_top1"]);
    assert_eq!(c.validation[0].values, [Some(0.31), None, Some(0.52)]);
    assert_eq!(c.validation.iter().map(Metric::label).collect::<Vec<_>>(), ["macro mAP", "top-1 accuracy"]);
    // Embedding runs log other metrics; a run without validation has none.
    let emb = training_curves_from_jsonl(
        "{\"epoch\":1,\"train_loss\":0.9,\"val_map_at_r\":0.2,\"val_recall@1\":0.5}\n\
         {\"epoch\":2,\"train_loss\":0.7,\"val_map_at_r\":0.3,\"val_recall@1\":0.6}\n",
    )
    .unwrap();
    assert_eq!(emb.validation.iter().map(Metric::label).collect::<Vec<_>>(), ["MAP@R", "recall@1"]);
    let plain = training_curves_from_jsonl("{\"epoch\":1,\"train_loss\":0.9}\n").unwrap();
    assert!(plain.validation.is_empty());
    // A broken line in the middle is an error naming it; so is a line without an epoch.
    let e = training_curves_from_jsonl("{\"epoch\":1,\"train_loss\":0.9}\n{oops\n{\"epoch\":2}\n").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    let e = training_curves_from_jsonl("{\"train_loss\":0.9}\n").unwrap_err();
    assert!(e.to_string().contains("line 1") && e.to_string().contains("'epoch'"), "{e}");
}

#[test]
fn training_curves_figure_has_both_panels() {
    let dir = scratch("curves");
    let c = training_curves_from_jsonl(CLASSIFIER_JSONL).unwrap();
    let paths = write_training_curves(&dir, &c).unwrap();
    assert_eq!(paths, [dir.join("curves.svg"), dir.join("curves.png")]);
    let svg = std::fs::read_to_string(&paths[0]).unwrap();
    let texts = svg_texts(&svg);
    // Each series in the legend with its last value.
    let legend = ["training loss 1.200", "macro mAP 0.520", "top-1 accuracy 0.660"];
    for want in ["Training curves", "3 epochs", "Loss", "Validation", "Epoch"].iter().chain(&legend) {
        assert!(texts.iter().any(|t| t == want), "no '{want}' in {texts:?}");
    }
    let two = svg_size(&svg);
    assert_png(&std::fs::read(&paths[1]).unwrap(), two, [31, 119, 180]);
    // Without validation metrics: the loss panel alone, narrower; one epoch still draws.
    let one = training_curves_from_jsonl("{\"epoch\":1,\"train_loss\":0.9}\n").unwrap();
    let svg = one.svg().unwrap();
    assert!(svg_size(&svg).0 < two.0);
    assert!(!svg_texts(&svg).iter().any(|t| t == "Validation"));
    assert_png(&one.png().unwrap(), svg_size(&svg), [31, 119, 180]);
    let none = training_curves_from_jsonl("").unwrap();
    assert!(write_training_curves(&dir, &none).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_are_written_atomically() {
    let dir = scratch("files");
    let ev = multi_eval();
    let paths = write_pr_figures(&dir, "pr", &pr_figures(&ev)).unwrap();
    assert_eq!(paths.len(), 6);
    ev.report.save_json(&dir.join("report.json")).unwrap();
    ev.report.save_markdown(&dir.join("report.md")).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        ["pr_majority.png", "pr_majority.svg", "pr_minority.png", "pr_minority.svg", "pr_rare.png", "pr_rare.svg"]
            .iter()
            .chain(&["report.json", "report.md"])
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    );
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    assert_eq!(EvalReport::from_json(&text).unwrap().labels.len(), 4);
    // Overwriting replaces the file; a failed write (missing directory) leaves nothing behind.
    write_atomic(&dir.join("report.md"), b"new").unwrap();
    assert_eq!(std::fs::read(dir.join("report.md")).unwrap(), b"new");
    assert!(write_atomic(&dir.join("missing/x.md"), b"x").is_err());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 8);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- Retrieval metrics (Musgrave et al. 2020) ----

use tailor::ops::knn::{self, Exclude, SearchOptions};

/// The embeddings, labels and expected metrics of the fixture's `metrics.*` (embedding_tiny).
fn retrieval_fixture() -> (Vec<f32>, usize, Vec<u32>, serde_json::Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    let sd = tailor::nn::checkpoint::StateDict::load(&dir.join("embedding_tiny.safetensors")).unwrap();
    let (shape, emb) = sd.tensors["metrics.embeddings"].clone();
    let labels: Vec<u32> = sd.tensors["metrics.labels"].1.iter().map(|&l| l as u32).collect();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("embedding_tiny.json")).unwrap()).unwrap();
    assert_eq!((shape[0], labels.len()), (40, 40));
    (emb, shape[1], labels, json["metrics"].clone())
}

fn assert_scores(got: &RetrievalScores, want: &serde_json::Value, tol: f64) {
    let v = serde_json::to_value(got).unwrap();
    for key in ["recall@1", "recall@2", "recall@4", "recall@8", "r_precision", "map_at_r"] {
        let (g, w) = (v[key].as_f64().unwrap(), want[key].as_f64().unwrap());
        assert!((g - w).abs() <= tol, "{key}: got {g}, want {w}");
    }
    assert_eq!(v["queries"], want["queries"]);
}

#[test]
fn retrieval_matches_the_fixture_on_the_cpu() {
    let (emb, dim, labels, want) = retrieval_fixture();
    let set = Retrieval::leave_one_out(&labels);
    let report = retrieval_cpu(&set, &emb, &emb, dim).unwrap();
    assert_scores(&report.overall, &want, 1e-12);
    assert!(report.per_group.is_empty());
    // The same from neighbour lists made by hand with the reference search.
    let opts = SearchOptions { exclude: Exclude::Offset(0), ..Default::default() };
    let n = knn::knn_ref(&emb, &emb, dim, 39, None, &opts).unwrap();
    assert_eq!(retrieval_metrics(&n, &set).unwrap(), report);
}

#[test]
fn retrieval_matches_the_fixture_on_the_gpu() {
    let (emb, dim, labels, want) = retrieval_fixture();
    let gpu = tailor::Gpu::new().expect("no GPU adapter: run scripts/install-lavapipe.sh");
    let report = retrieval_gpu(&gpu, &Retrieval::leave_one_out(&labels), &emb, &emb, dim).unwrap();
    // Ranks from f32 distances: the same ranking as float64 here, so the same metrics.
    assert_scores(&report.overall, &want, 1e-12);
}

/// 1-D items at integer positions (exact distances in f32 too). Query 0 has items 1 and 2 at
/// distance 1: item 1 (another label) ranks first by the lower index, so its recall@1 is 0.
/// Item 4's label is its own: left out.
#[test]
fn retrieval_ties_and_a_singleton_label_by_hand() {
    let x = [0.0f32, 1.0, -1.0, 3.0, 10.0];
    let labels = [0u32, 1, 0, 1, 2];
    let set = Retrieval::leave_one_out(&labels);
    let gpu = tailor::Gpu::new().unwrap();
    for r in [retrieval_cpu(&set, &x, &x, 1).unwrap(), retrieval_gpu(&gpu, &set, &x, &x, 1).unwrap()] {
        let m = &r.overall;
        assert_eq!(m.queries, 4);
        assert_eq!(m.recall(), [Some(0.5), Some(0.75), Some(1.0), Some(1.0)]);
        assert_eq!((m.r_precision, m.map_at_r), (Some(0.5), Some(0.5)));
    }
    assert_eq!(set.required_k().unwrap(), 4);
}

/// Queries against a separate gallery, R > 1: query 0 (label 0) ranks gallery labels
/// [0, 1, 1, 0, 0] with R = 3: R-precision 1/3 and MAP@R (1/3)(1/1); query 1 (label 1) ranks
/// [1, 0, 0, 1, 0] with R = 2: 1/2 and (1/2)(1/1). A query whose label the gallery lacks is left
/// out.
#[test]
fn retrieval_against_a_gallery_by_hand() {
    let gallery = [1.0f32, 2.0, 3.0, 10.0, -2.5];
    let g_labels = [0u32, 1, 0, 0, 1];
    let queries = [0.0f32, 2.2, 0.0];
    let q_labels = [0u32, 1, 7];
    let set = Retrieval::gallery(&q_labels, &g_labels);
    let gpu = tailor::Gpu::new().unwrap();
    for r in
        [retrieval_cpu(&set, &queries, &gallery, 1).unwrap(), retrieval_gpu(&gpu, &set, &queries, &gallery, 1).unwrap()]
    {
        let m = &r.overall;
        assert_eq!(m.queries, 2);
        assert_eq!(m.recall_at_1, Some(1.0));
        assert!((m.r_precision.unwrap() - 5.0 / 12.0).abs() < 1e-15, "{m:?}");
        assert!((m.map_at_r.unwrap() - 5.0 / 12.0).abs() < 1e-15, "{m:?}");
    }
}

/// Two verticals: each query searched among its group's items only. Unrestricted, item 0's
/// nearest would be item 3 (another vertical).
#[test]
fn retrieval_per_group_by_hand() {
    let x = [0.0f32, 1.0, 0.4, 0.1, 5.0, 5.5];
    let labels = [0u32, 0, 1, 1, 2, 2];
    let groups = [0u32, 0, 0, 1, 1, 1];
    let names = ["tops".to_string(), "shoes".to_string()];
    let set = Retrieval::leave_one_out(&labels).with_groups(RetrievalGroups {
        queries: &groups,
        gallery: &groups,
        names: &names,
    });
    let gpu = tailor::Gpu::new().unwrap();
    let cpu = retrieval_cpu(&set, &x, &x, 1).unwrap();
    assert_eq!(retrieval_gpu(&gpu, &set, &x, &x, 1).unwrap(), cpu);
    let (tops, shoes) = (&cpu.per_group["tops"], &cpu.per_group["shoes"]);
    assert_eq!(
        (tops.queries, tops.recall(), tops.map_at_r),
        (2, [Some(0.0), Some(1.0), Some(1.0), Some(1.0)], Some(0.0))
    );
    assert_eq!(
        (shoes.queries, shoes.recall_at_1, shoes.r_precision, shoes.map_at_r),
        (2, Some(1.0), Some(1.0), Some(1.0))
    );
    assert_eq!((cpu.overall.queries, cpu.overall.recall_at_1, cpu.overall.map_at_r), (4, Some(0.5), Some(0.5)));
    // JSON: the overall keys at the top, each group's under per_group; and back.
    let json: serde_json::Value = serde_json::from_str(&cpu.to_json().unwrap()).unwrap();
    assert_eq!(json["recall@2"], 1.0);
    assert_eq!(json["queries"], 4);
    assert_eq!(json["per_vertical"]["shoes"]["map_at_r"], 1.0);
    assert_eq!(RetrievalReport::from_json(&cpu.to_json().unwrap()).unwrap(), cpu);
    let md = cpu.to_markdown();
    assert!(md.contains("| all | 4 | 0.500 | 1.000 | 1.000 | 1.000 | 0.500 | 0.500 |"), "{md}");
    assert!(md.contains("| tops | 2 | 0.000 |"), "{md}");
    // Searched without the groups, the lists hold other verticals' items: refused.
    let opts = SearchOptions { exclude: Exclude::Offset(0), ..Default::default() };
    let unrestricted = knn::knn_ref(&x, &x, 1, 2, None, &opts).unwrap();
    assert!(matches!(retrieval_metrics(&unrestricted, &set), Err(tailor::Error::Shape { .. })));
}

#[test]
fn retrieval_bad_inputs_are_errors() {
    let x = [0.0f32, 1.0, 2.0, 3.0];
    let labels = [0u32, 0, 1, 1];
    let set = Retrieval::leave_one_out(&labels);
    let shape = |r: tailor::Result<RetrievalReport>| assert!(matches!(r, Err(tailor::Error::Shape { .. })), "{r:?}");
    // Searched without leaving the query out: its first neighbour is itself.
    shape(retrieval_metrics(&knn::knn_ref(&x, &x, 1, 3, None, &SearchOptions::default()).unwrap(), &set));
    // Too few neighbours for recall@8 / R of a query with 3 candidates.
    let opts = SearchOptions { exclude: Exclude::Offset(0), ..Default::default() };
    shape(retrieval_metrics(&knn::knn_ref(&x, &x, 1, 2, None, &opts).unwrap(), &set));
    shape(retrieval_metrics(&knn::knn_ref(&x[..3], &x, 1, 3, None, &opts).unwrap(), &set));
    shape(retrieval_cpu(&Retrieval::leave_one_out(&labels[..3]), &x, &x, 1));
    let names = ["a".to_string()];
    let groups = [0u32, 0, 1, 1];
    let bad = set.with_groups(RetrievalGroups { queries: &groups, gallery: &groups, names: &names });
    shape(retrieval_cpu(&bad, &x, &x, 1));
    // No query counts: every mean is undefined, and says so.
    let lonely = [0u32, 1, 2, 3];
    let r = retrieval_cpu(&Retrieval::leave_one_out(&lonely), &x, &x, 1).unwrap();
    assert_eq!((r.overall.queries, r.overall.map_at_r), (0, None));
    assert!(r.to_markdown().contains("| all | 0 | - |"));
}
