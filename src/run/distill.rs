//! A unified embedding model distilled from specialists (Song et al. 2017): each teacher is an
//! embedding run trained on one vertical; the student learns, for every training image of that
//! vertical, the teacher's embedding of it, with an L2 loss. The teachers' embeddings are
//! computed once, in eval mode and without augmentation, and kept in the student's folder
//! (`teachers.safetensors`), reused when the run resumes and computed again when a teacher's
//! weights have changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::{RunConfig, RunSettings, Task, TeacherRecord};
use super::data::{data_fingerprint, Prepared};
use super::folder::{model_file, model_fingerprint, Weights};
use super::Event;
use crate::data::ImageSpec;
use crate::error::{Error, Result};
use crate::nn::checkpoint::{write_atomic, StateDict};
use crate::nn::embedder::Embedder;
use crate::setting::Setting;
use crate::Gpu;

/// The cache of the teachers' embeddings in a student's run folder.
pub const TEACHERS_FILE: &str = "teachers.safetensors";

/// A teacher: its run folder, configuration and the vertical it teaches.
pub struct Teacher {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub vertical: String,
}

/// Reads and checks the teachers `settings` names, before any image is loaded: each is an
/// embedding run trained on exactly one vertical, no two teach the same vertical, and all give
/// embeddings of one dimension from images of one size. Returns them with the student's settings
/// completed from them: the embedding's dimension and normalisation, the verticals to keep, and
/// the input size.
pub fn check_teachers(settings: &RunSettings) -> Result<(Vec<Teacher>, RunSettings)> {
    let mut s = settings.clone();
    if s.teachers.is_empty() {
        return Ok((Vec::new(), s));
    }
    let Some(column) = &s.data.vertical_column else {
        return Err(Error::Invalid(format!(
            "distillation gives each image its vertical's teacher: name the column of verticals with {}",
            Setting::VerticalColumn
        )));
    };
    let mut teachers: Vec<Teacher> = Vec::new();
    for dir in &s.teachers {
        let config = RunConfig::load(dir)?;
        let specialist =
            match (&config.task, &config.embedding) {
                (Task::Embedding, Some(e)) => e.specialist_of().map(str::to_string).ok_or_else(|| {
                    Error::file(
                        dir,
                        format!(
                        "was trained on {}, not one vertical: a teacher is a specialist, trained with {} {} and {} \
                         VALUE",
                        if e.verticals.is_empty() { "every vertical".to_string() } else { e.verticals.join(", ") },
                        Setting::VerticalColumn,
                        column,
                        Setting::Verticals
                    ),
                    )
                })?,
                _ => return Err(Error::file(
                    dir,
                    "is a classifier run; a teacher is an embedding specialist (trained with --task embedding on one \
                     vertical)",
                )),
            };
        if let Some(other) = teachers.iter().find(|t| t.vertical == specialist) {
            return Err(Error::Invalid(format!(
                "two teachers for vertical '{specialist}': {} and {}; give one per vertical",
                other.dir.display(),
                dir.display()
            )));
        }
        teachers.push(Teacher { dir: dir.clone(), config, vertical: specialist });
    }
    let first = &teachers[0];
    let dim = first.config.model.num_classes;
    let normalize = first.config.model.l2_normalize;
    let image = first.config.preprocess.image_spec()?;
    for t in &teachers[1..] {
        let tdim = t.config.model.num_classes;
        if tdim != dim {
            return Err(Error::Invalid(format!(
                "the teachers' embeddings differ in dimension: {} gives {dim}, {} gives {tdim}; one student learns \
                 one dimension, so give teachers of one",
                first.dir.display(),
                t.dir.display()
            )));
        }
        if t.config.model.l2_normalize != normalize {
            return Err(Error::Invalid(format!(
                "{} gives L2-normalised embeddings and {} raw ones; give teachers of one kind",
                if normalize { first.dir.display() } else { t.dir.display() },
                if normalize { t.dir.display() } else { first.dir.display() }
            )));
        }
        if t.config.preprocess.image_spec()? != image {
            return Err(Error::Invalid(format!(
                "the teachers take images of different sizes ({} and {}); the student sees each image as its \
                 teacher did, so give teachers of one input size",
                first.dir.display(),
                t.dir.display()
            )));
        }
    }
    if let Some(size) = &s.data.image_size {
        let (w, h) = ImageSpec::parse_size(size)?;
        if (w, h) != (image.width, image.height) {
            return Err(Error::setting(
                Setting::ImageSize,
                size,
                format!(
                    "the teachers take {}x{} images, and the student learns from the same; drop it",
                    image.width, image.height
                ),
            ));
        }
    }
    s.data.image_size = Some(format!("{}x{}", image.width, image.height));
    (s.data.grayscale, s.data.rgb) = (image.channels == 1, image.channels == 3);
    let verticals: Vec<String> = teachers.iter().map(|t| t.vertical.clone()).collect();
    // A resumed student's settings hold its teachers' verticals already; others are refused.
    if !s.data.verticals.is_empty() && s.data.verticals != verticals {
        return Err(Error::Invalid(format!(
            "the teachers' verticals ({}) are the ones a student trains on; drop {} {}",
            verticals.join(", "),
            Setting::Verticals,
            s.data.verticals.join(",")
        )));
    }
    s.data.verticals = verticals;
    s.embedding.dim = dim;
    s.embedding.normalize = normalize;
    Ok((teachers, s))
}

/// The teachers' embeddings of the training images: a row per sample of the dataset.
pub struct Targets {
    pub dim: usize,
    /// Per dataset sample, its row in `embeddings` (training samples only).
    rows: Vec<Option<usize>>,
    embeddings: Vec<f32>,
    pub records: Vec<TeacherRecord>,
}

impl Targets {
    /// The targets of the samples `indices`, one row after another.
    pub fn gather(&self, indices: &[usize]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            let r = self.rows.get(i).copied().flatten().ok_or_else(|| {
                Error::Invalid(format!(
                    "sample {i} has no teacher embedding (it is not a training image of a teacher's vertical)"
                ))
            })?;
            out.extend_from_slice(&self.embeddings[r * self.dim..(r + 1) * self.dim]);
        }
        Ok(out)
    }
}

/// The teachers' embeddings of `p`'s training samples: read from the run folder's cache when it
/// was made by the same teachers' weights from the same data, else computed (and cached).
pub fn targets(
    gpu: &Arc<Gpu>,
    teachers: &[Teacher],
    p: &Prepared,
    batch: usize,
    dir: &Path,
    on: &mut dyn FnMut(Event),
) -> Result<Targets> {
    let groups =
        p.verticals.as_ref().ok_or_else(|| Error::Invalid("distillation needs the data's verticals".into()))?;
    let mut records = Vec::new();
    for t in teachers {
        let (weights, _) = model_file(&t.dir, &t.config, Weights::Best);
        records.push(TeacherRecord {
            dir: absolute(&t.dir),
            vertical: t.vertical.clone(),
            model: model_fingerprint(&weights)?,
        });
    }
    let dim = teachers[0].config.model.num_classes;
    let train = &p.split.train;
    let mut rows = vec![None; p.ds.len()];
    for (r, &i) in train.iter().enumerate() {
        rows[i] = Some(r);
    }
    let fingerprint = data_fingerprint(p);
    let key = serde_json::to_string(&records).map_err(|e| Error::Invalid(e.to_string()))?;
    let path = dir.join(TEACHERS_FILE);
    if path.is_file() {
        let cached = StateDict::load(&path)?;
        let same = cached.metadata.get("teachers") == Some(&key) && cached.metadata.get("data") == Some(&fingerprint);
        match cached.tensors.get("embeddings") {
            Some((shape, v)) if same && *shape == [train.len(), dim] => {
                return Ok(Targets { dim, rows, embeddings: v.clone(), records });
            }
            _ => on(Event::Note(format!(
                "{} was made by other teachers' weights or from other data: computing the teachers' embeddings again",
                path.display()
            ))),
        }
    }
    let mut embeddings = vec![0f32; train.len() * dim];
    for t in teachers {
        let id = groups.names.iter().position(|n| *n == t.vertical);
        let mine: Vec<usize> = train.iter().copied().filter(|&i| Some(groups.of[i] as usize) == id).collect();
        if mine.is_empty() {
            return Err(Error::Invalid(format!(
                "the teacher {} teaches vertical '{}', but no training image has it in column '{}'",
                t.dir.display(),
                t.vertical,
                groups.column
            )));
        }
        let e = Embedder::load(gpu.clone(), &t.dir, batch.min(mine.len()))?;
        let out = e.embed_samples(&p.ds, &mine)?;
        for (k, &i) in mine.iter().enumerate() {
            let r = rows[i].expect("a training sample");
            embeddings[r * dim..(r + 1) * dim].copy_from_slice(&out[k * dim..(k + 1) * dim]);
        }
    }
    on(Event::Note(format!(
        "computed {} teachers' embeddings of {} training images, kept in {} for later epochs and resumes",
        teachers.len(),
        train.len(),
        path.display()
    )));
    let mut sd = StateDict::default();
    sd.tensors.insert("embeddings".into(), (vec![train.len(), dim], embeddings.clone()));
    sd.metadata.insert("teachers".into(), key);
    sd.metadata.insert("data".into(), fingerprint);
    write_atomic(&path, &sd.to_bytes()?)?;
    Ok(Targets { dim, rows, embeddings, records })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
