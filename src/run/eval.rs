//! Evaluating a run: score its validation split (rebuilt from its settings and seed) or other
//! data with its weights; write eval.json, eval.md, PR curves and the thresholds predict uses.

use std::path::PathBuf;
use std::sync::Arc;

use super::config::{RunConfig, Task};
use super::data::{self, prepare, Prepared};
use super::folder::{self, Weights};
use super::Event;
use crate::data::source::{DataSpec, Groups, Labels, Source};
use crate::data::{Dataset, LabelKind, Normalize, Targets};
use crate::error::{Error, Result};
use crate::metrics::{
    self, retrieval_gpu, EvalOptions, EvalReport, Predictions, Retrieval, RetrievalGroups, RetrievalReport, Truth,
};
use crate::nn::embedder::Embedder;
use crate::nn::predict::{sigmoid, softmax_rows, Predictor};
use crate::setting::Setting;
use crate::Gpu;

/// What to evaluate and where to write the results.
#[derive(Clone, Debug)]
pub struct EvalSettings {
    /// A run folder.
    pub model: PathBuf,
    /// Evaluate on this dataset (all of it) instead of the run's validation split; label
    /// settings left empty are the run's.
    pub data: Option<DataSpec>,
    /// The precision floor of the per-label thresholds.
    pub min_precision: f64,
    pub batch_size: usize,
    /// Where to write the reports and thresholds (`None`: the run folder, whose thresholds.json
    /// predict uses).
    pub out: Option<PathBuf>,
    /// The best epoch's weights (the default) or the last epoch's.
    pub weights: Weights,
    /// Embedding runs: search this gallery with the queries (instead of each query against the
    /// other queries, leaving itself out).
    pub gallery: Option<DataSpec>,
    /// Embedding runs with verticals: search the whole gallery, not only the query's vertical.
    pub across_verticals: bool,
}

impl EvalSettings {
    /// Evaluation of the run in `model` on its validation split, written into it.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        EvalSettings {
            model: model.into(),
            data: None,
            min_precision: 0.6,
            batch_size: 64,
            out: None,
            weights: Weights::Best,
            gallery: None,
            across_verticals: false,
        }
    }

    /// The checks that need neither the data nor the model.
    pub fn check(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::setting(Setting::BatchSize, 0, "give a positive batch size"));
        }
        if !(self.min_precision > 0.0 && self.min_precision <= 1.0) {
            return Err(Error::setting(
                Setting::MinPrecision,
                self.min_precision,
                "give a precision in (0, 1], e.g. 0.6",
            ));
        }
        Ok(())
    }
}

/// Evaluates and writes every file; returns the report.
pub fn evaluate(gpu: &Arc<Gpu>, s: &EvalSettings, on: &mut dyn FnMut(Event)) -> Result<EvalReport> {
    evaluate_on(gpu, s, None, on)
}

/// [`evaluate`] on the run's validation split, taken from `data` when given (loaded by
/// [`prepare`] with the run's settings, as [`super::compare`] does once for its three runs).
pub fn evaluate_on(
    gpu: &Arc<Gpu>,
    s: &EvalSettings,
    data: Option<&Prepared>,
    on: &mut dyn FnMut(Event),
) -> Result<EvalReport> {
    s.check()?;
    let cfg = RunConfig::load(&s.model)?;
    if cfg.task == Task::Embedding {
        return Err(Error::file(
            &s.model,
            "is an embedding run: it is evaluated by retrieval (run::evaluate_retrieval), not per-label AP",
        ));
    }
    let image = cfg.preprocess.image_spec()?;
    // The weights are read (and checked against the configuration) before the images are.
    let (model, _, epoch) = folder::load_model(gpu.clone(), &s.model, &cfg, s.weights)?;
    let (ds, indices) = match &s.data {
        None => {
            let loaded;
            let p = match data {
                Some(p) => p,
                None => {
                    // What loading notes (images resized, the split's fraction) is about the whole
                    // file, and was said when the run was trained: only its warnings here.
                    let mut warnings = |e: Event| {
                        if !matches!(e, Event::Note(_)) {
                            on(e)
                        }
                    };
                    loaded = prepare(&cfg.settings.data, &cfg.settings.split_spec(), Some(image), &mut warnings)?;
                    &loaded
                }
            };
            if p.split.val.is_empty() {
                return Err(Error::Invalid(format!(
                    "the run in {} has no validation split ({} 0); give a dataset with {}",
                    s.model.display(),
                    Setting::ValFraction,
                    Setting::Data
                )));
            }
            if p.ds.label_names != cfg.label_names {
                return Err(Error::Invalid(format!(
                    "the run's data now has other labels; give {} explicitly",
                    Setting::Data
                )));
            }
            (p.ds.clone(), p.split.val.clone())
        }
        Some(spec) => {
            let ds = external(spec, &cfg, s, on)?;
            let all = (0..ds.len()).collect();
            (Arc::new(ds), all)
        }
    };
    on(Event::Evaluating { model: &s.model, samples: indices.len(), best_epoch: epoch });
    let batch = s.batch_size.clamp(1, indices.len().max(1));
    let pred = Predictor::new(&model, batch, image.height, image.width).map_err(Error::fit_hint)?;
    let scores = score(&pred, &ds, &indices, &cfg.preprocess.normalize(), cfg.multi())?;
    let opts = EvalOptions { precision_floor: s.min_precision, ..EvalOptions::default() };
    let ev = evaluate_split(&scores, &ds, &indices, &cfg, &opts)?;
    let out = s.out.clone().unwrap_or_else(|| s.model.clone());
    folder::make_dir(&out)?;
    folder::write_reports(&out, &ev)?;
    // The thresholds go with the reports: into the run folder (where predict reads them) only
    // when the reports go there too, so another `out` leaves the run as it was.
    folder::save_thresholds(&out, &ev.report)?;
    Ok(ev.report)
}

/// Evaluates an embedding run by retrieval (Musgrave et al. 2020): Recall@1/2/4/8, R-precision
/// and MAP@R, overall and per vertical. The queries are the run's validation split, or all of
/// `data`; each searches the other queries (leaving itself out) or, with `gallery`, the gallery;
/// within its own vertical when the run (or the data) names a vertical column, unless
/// `across_verticals`. Writes eval.json and eval.md (into `out`, else the run folder).
pub fn evaluate_retrieval(gpu: &Arc<Gpu>, s: &EvalSettings, on: &mut dyn FnMut(Event)) -> Result<RetrievalReport> {
    s.check()?;
    let cfg = RunConfig::load(&s.model)?;
    if cfg.task != Task::Embedding {
        return Err(Error::file(&s.model, "is a classifier run: it is evaluated per label (run::evaluate)"));
    }
    let embedder = Embedder::load_weights(gpu.clone(), &s.model, s.batch_size, s.weights)?;
    let (_, best_epoch) = folder::model_file(&s.model, &cfg, s.weights);
    let image = cfg.preprocess.image_spec()?;
    let run_column = cfg.embedding.as_ref().and_then(|e| e.vertical_column.clone());
    // The queries: the run's validation split, or every image of `data`.
    let queries: Labelled = match &s.data {
        None => {
            let mut warnings = |e: Event| {
                if !matches!(e, Event::Note(_)) {
                    on(e)
                }
            };
            let p = prepare(&cfg.settings.data, &cfg.settings.split_spec(), Some(image), &mut warnings)?;
            if p.split.val.is_empty() {
                return Err(Error::Invalid(format!(
                    "the run in {} has no validation split ({} 0); give a dataset with {}",
                    s.model.display(),
                    Setting::ValFraction,
                    Setting::Data
                )));
            }
            Labelled::of(&p.ds, &p.split.val, p.verticals.as_ref())
        }
        Some(spec) => load_labelled(spec, &cfg, run_column.as_deref(), image, on)?,
    };
    let gallery = match &s.gallery {
        Some(spec) => Some(load_labelled(spec, &cfg, run_column.as_deref(), image, on)?),
        None => None,
    };
    if gallery.as_ref().is_some_and(|g| g.indices.is_empty()) {
        return Err(Error::Invalid("the gallery holds no images; give a CSV with rows".into()));
    }
    on(Event::Evaluating { model: &s.model, samples: queries.indices.len(), best_epoch });
    let q = embedder.embed_samples(&queries.ds, &queries.indices)?;
    let g = match &gallery {
        Some(gal) => embedder.embed_samples(&gal.ds, &gal.indices)?,
        None => q.clone(),
    };
    // Labels and verticals of queries and gallery in one numbering, by name.
    let mut labels = Names::default();
    let mut verticals = Names::default();
    let q_labels = labels.ids(&queries.labels);
    let g_labels = gallery.as_ref().map(|gal| labels.ids(&gal.labels));
    let with_groups = !s.across_verticals && queries.verticals.is_some();
    let q_groups = queries.verticals.as_ref().filter(|_| with_groups).map(|v| verticals.ids(v));
    let g_groups = match (&gallery, with_groups) {
        (Some(gal), true) => Some(verticals.ids(gal.verticals.as_deref().ok_or_else(|| {
            Error::Invalid(format!(
                "the queries have verticals but the gallery has no column '{}'; give it one, or search across verticals",
                queries.column.clone().unwrap_or_default()
            ))
        })?)),
        _ => None,
    };
    let mut set = match &g_labels {
        Some(gl) => Retrieval::gallery(&q_labels, gl),
        None => Retrieval::leave_one_out(&q_labels),
    };
    if let Some(qg) = &q_groups {
        let gg = g_groups.as_deref().unwrap_or(qg);
        set = set.with_groups(RetrievalGroups { queries: qg, gallery: gg, names: &verticals.names });
    }
    let report = retrieval_gpu(gpu, &set, &q, &g, embedder.dim)?;
    let out = s.out.clone().unwrap_or_else(|| s.model.clone());
    folder::make_dir(&out)?;
    report.save_json(&out.join("eval.json"))?;
    report.save_markdown(&out.join("eval.md"))?;
    Ok(report)
}

/// Images with their labels and verticals by name.
struct Labelled {
    ds: Arc<Dataset>,
    indices: Vec<usize>,
    labels: Vec<String>,
    column: Option<String>,
    verticals: Option<Vec<String>>,
}

impl Labelled {
    fn of(ds: &Arc<Dataset>, indices: &[usize], groups: Option<&Groups>) -> Labelled {
        let labels = indices.iter().map(|&i| ds.label_names[ds.targets.labels(i)[0] as usize].clone()).collect();
        let verticals = groups.map(|g| indices.iter().map(|&i| g.names[g.of[i] as usize].clone()).collect());
        Labelled {
            ds: ds.clone(),
            indices: indices.to_vec(),
            labels,
            column: groups.map(|g| g.column.clone()),
            verticals,
        }
    }
}

/// Names numbered in the order first seen.
#[derive(Default)]
struct Names {
    names: Vec<String>,
}

impl Names {
    fn ids(&mut self, of: &[String]) -> Vec<u32> {
        of.iter()
            .map(|n| match self.names.iter().position(|m| m == n) {
                Some(i) => i as u32,
                None => {
                    self.names.push(n.clone());
                    (self.names.len() - 1) as u32
                }
            })
            .collect()
    }
}

/// Every row of `spec`'s data at the run's input size: label settings left empty are the run's,
/// and the vertical column is the data's or else the run's (when the data has it).
fn load_labelled(
    spec: &DataSpec,
    cfg: &RunConfig,
    run_column: Option<&str>,
    image: crate::data::ImageSpec,
    on: &mut dyn FnMut(Event),
) -> Result<Labelled> {
    let mut spec = spec.clone();
    if !spec.names_labels() {
        let saved = &cfg.settings.data;
        spec.label_column = saved.label_column.clone();
    }
    let source = spec.source()?;
    let mut ds = data::load(&source, &image, on)?;
    if ds.kind() != LabelKind::Single {
        return Err(Error::Invalid(format!(
            "{}: retrieval needs one label per image (the same label: a right answer); give {}",
            source.path.display(),
            Setting::LabelColumn
        )));
    }
    let column = spec.vertical_column.clone().or_else(|| {
        let has = |c: &str| ds.table.as_ref().is_some_and(|t| t.column(c).is_ok());
        run_column.filter(|c| has(c)).map(str::to_string)
    });
    if let (Some(c), false) = (&column, spec.verticals.is_empty()) {
        crate::data::source::keep_groups(&mut ds, c, &spec.verticals)?;
    }
    let groups = column.as_deref().map(|c| Groups::of_column(&ds, c)).transpose()?;
    let all: Vec<usize> = (0..ds.len()).collect();
    Ok(Labelled::of(&Arc::new(ds), &all, groups.as_ref()))
}

/// Scores (softmax or sigmoid probabilities) `[n, C]` of the samples `indices` of `ds`.
pub fn score(
    pred: &Predictor,
    ds: &Arc<Dataset>,
    indices: &[usize],
    norm: &Normalize,
    multi: bool,
) -> Result<Vec<f32>> {
    let mut out = pred.samples(ds, indices, norm)?;
    if multi {
        sigmoid(&mut out);
    } else {
        softmax_rows(&mut out, pred.classes);
    }
    Ok(out)
}

/// Evaluates scores of the samples `indices` of `ds`, whose labels are the run's labels.
pub fn evaluate_split(
    scores: &[f32],
    ds: &Dataset,
    indices: &[usize],
    cfg: &RunConfig,
    opts: &EvalOptions,
) -> Result<metrics::Evaluation> {
    let c = cfg.label_names.len();
    let (single, multi);
    let truth = match &ds.targets {
        Targets::Single(t) => {
            single = indices.iter().map(|&i| t[i]).collect::<Vec<_>>();
            Truth::Single(&single)
        }
        Targets::Multi(t) => {
            let sets: Vec<Vec<u32>> = indices.iter().map(|&i| t[i].clone()).collect();
            multi = metrics::multi_hot(&sets, c)?;
            Truth::Multi(&multi)
        }
    };
    let pred = Predictions { scores, num_labels: c, truth };
    metrics::evaluate(&pred, &cfg.label_names, &cfg.train_counts, cfg.train_samples, opts)
}

/// With label columns, every `column=value` label of the model must come from a column that is
/// given: a missing column would count all its labels as absent from every image.
fn check_columns_cover(source: &Source, cfg: &RunConfig) -> Result<()> {
    let Some(Labels::Columns { columns }) = &source.labels else { return Ok(()) };
    let mut missing: Vec<&str> = Vec::new();
    for name in &cfg.label_names {
        if let Some((col, _)) = name.split_once('=') {
            if !columns.iter().any(|c| c == col) && !missing.contains(&col) {
                missing.push(col);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut all: Vec<&str> = columns.iter().map(String::as_str).collect();
    all.extend(&missing);
    Err(Error::Invalid(format!(
        "the model also predicts labels of column(s) {}, which {} does not give, so every image would count as \
         negative for them; use {} {}",
        missing.join(", "),
        Setting::LabelColumns,
        Setting::LabelColumns,
        all.join(",")
    )))
}

/// A dataset given for evaluation, its labels renumbered to the run's.
fn external(spec: &DataSpec, cfg: &RunConfig, s: &EvalSettings, on: &mut dyn FnMut(Event)) -> Result<Dataset> {
    let mut spec = spec.clone();
    if !spec.names_labels() {
        let saved = &cfg.settings.data;
        spec.label_column = saved.label_column.clone();
        spec.label_columns = saved.label_columns.clone();
        spec.tags_column = saved.tags_column.clone();
        spec.tag_sep = saved.tag_sep.clone();
    }
    let source = spec.source()?;
    check_columns_cover(&source, cfg)?;
    let mut ds = data::load(&source, &cfg.preprocess.image_spec()?, on)?;
    let map: Vec<Option<u32>> =
        ds.label_names.iter().map(|n| cfg.label_names.iter().position(|m| m == n).map(|p| p as u32)).collect();
    let unknown: Vec<&str> =
        ds.label_names.iter().zip(&map).filter(|(_, m)| m.is_none()).map(|(n, _)| n.as_str()).collect();
    if let Targets::Single(t) = &ds.targets {
        if let Some(i) = t.iter().position(|&l| map[l as usize].is_none()) {
            return Err(Error::Invalid(format!(
                "{} has label '{}', which the model does not know (its labels are in {}/labels.txt)",
                ds.describe(i),
                ds.label_names[t[i] as usize],
                s.model.display()
            )));
        }
    }
    let unknown = unknown.join(", ");
    match &mut ds.targets {
        Targets::Single(t) => {
            t.iter_mut().for_each(|l| *l = map[*l as usize].expect("every label was checked to be known"));
        }
        Targets::Multi(t) => {
            if !unknown.is_empty() {
                on(Event::Warning(format!("ignoring labels the model does not know: {unknown}")));
            }
            for set in t.iter_mut() {
                *set = set.iter().filter_map(|&l| map[l as usize]).collect();
                set.sort_unstable();
            }
        }
    }
    if ds.kind() != cfg.kind() {
        let word = |k: LabelKind| if k == LabelKind::Single { "single" } else { "multi" };
        return Err(Error::Invalid(format!(
            "the model was trained on {}-label data but {} gives {}-label data; use the same label settings",
            word(cfg.kind()),
            Setting::Data,
            word(ds.kind())
        )));
    }
    ds.label_names = cfg.label_names.clone();
    Ok(ds)
}
