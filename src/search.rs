//! A search index: the embeddings of a catalogue's images, `[N, D]` f32, with each row's image
//! path, optionally its label, and the fingerprint of the model that made them (a string the
//! caller chooses; embeddings of another model are not comparable).
//!
//! Saved as safetensors: tensor `embeddings` `[N, D]` f32; metadata `format` (`tailor-index`),
//! `version` ([`INDEX_VERSION`]), `dim`, `model`, `files` (a JSON list of strings) and `labels`
//! (a JSON list, only when known). Written through a temporary file and a rename, so a failed
//! write leaves the previous index whole. [`Index::load`] checks everything it reads and says
//! what is wrong with which file ([`IndexError`]).
//!
//! [`Index::search`] finds each query's nearest rows on the GPU ([`crate::ops::knn`]: exact,
//! Euclidean, ties by lower row).

use std::path::{Path, PathBuf};

use crate::nn::checkpoint::{write_atomic, StateDict};
use crate::ops::knn::{GpuGallery, SearchOptions};
use crate::{Error, Gpu, Result};

/// The index file format this version reads and writes.
pub const INDEX_VERSION: u32 = 1;
const FORMAT: &str = "tailor-index";
const TENSOR: &str = "embeddings";

/// Why an index cannot be used, with what to do about it (the file, when there is one, is named
/// by [`Error::Index`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("not a tailor search index (its metadata has no '{0}'); build an index of the catalogue's embeddings")]
    NotAnIndex(&'static str),
    #[error("index format version {found}, but this tailor reads version {INDEX_VERSION}: rebuild the index with this version of tailor")]
    Version { found: String },
    #[error("{0}; the file is damaged or was not written by tailor: rebuild the index")]
    Inconsistent(String),
    #[error("the index holds no embeddings, so there is nothing to search: build it from at least one image")]
    Empty,
    #[error("the index holds embeddings of dimension {index} but the queries have dimension {query}: embed the queries with the model that made the index ('{model}')")]
    Dim { index: usize, query: usize, model: String },
    #[error("the index was made by model '{index}' but the current model is '{current}': rebuild the index with the current model, or search with the model that made it")]
    OtherModel { index: String, current: String },
}

/// One search result: the index row, its image path and label, and its distance to the query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit<'a> {
    pub index: usize,
    pub path: &'a str,
    pub label: Option<&'a str>,
    pub distance: f32,
}

/// Embeddings with their image paths, optional labels and the model's fingerprint.
#[derive(Clone, Debug, PartialEq)]
pub struct Index {
    embeddings: Vec<f32>,
    dim: usize,
    files: Vec<String>,
    labels: Option<Vec<String>>,
    model: String,
    /// The file it was loaded from or last saved to, for messages.
    path: Option<PathBuf>,
}

impl Index {
    /// An index of `embeddings` (`[files.len(), dim]`, row-major, finite), one row per file.
    pub fn new(
        embeddings: Vec<f32>,
        dim: usize,
        files: Vec<String>,
        labels: Option<Vec<String>>,
        model: impl Into<String>,
    ) -> Result<Self> {
        let index = Index { embeddings, dim, files, labels, model: model.into(), path: None };
        index.check().map_err(|p| index.error(p))?;
        Ok(index)
    }

    /// The rows' consistency: `[N, dim]` against N files and N labels, finite values.
    fn check(&self) -> std::result::Result<(), IndexError> {
        let bad = |m: String| Err(IndexError::Inconsistent(m));
        if self.dim == 0 {
            return bad("its embeddings have dimension 0".into());
        }
        if self.embeddings.len() % self.dim != 0 {
            return bad(format!("{} embedding values are not rows of dimension {}", self.embeddings.len(), self.dim));
        }
        let n = self.embeddings.len() / self.dim;
        if self.files.len() != n {
            return bad(format!("it holds {n} embeddings but {} file names", self.files.len()));
        }
        if let Some(l) = &self.labels {
            if l.len() != n {
                return bad(format!("it holds {n} embeddings but {} labels", l.len()));
            }
        }
        if let Some(i) = self.embeddings.iter().position(|v| !v.is_finite()) {
            return bad(format!("embedding {} ({}) holds a non-finite value", i / self.dim, self.files[i / self.dim]));
        }
        Ok(())
    }

    fn error(&self, problem: IndexError) -> Error {
        Error::Index { path: self.path.clone(), problem }
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// `[len, dim]`, row-major.
    pub fn embeddings(&self) -> &[f32] {
        &self.embeddings
    }
    pub fn files(&self) -> &[String] {
        &self.files
    }
    pub fn labels(&self) -> Option<&[String]> {
        self.labels.as_deref()
    }
    /// The fingerprint of the model that made the embeddings.
    pub fn model(&self) -> &str {
        &self.model
    }
    /// The file it was loaded from or saved to.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// [`IndexError::OtherModel`] unless the index was made by the model with fingerprint
    /// `current`.
    pub fn check_model(&self, current: &str) -> Result<()> {
        if self.model != current {
            return Err(self.error(IndexError::OtherModel { index: self.model.clone(), current: current.into() }));
        }
        Ok(())
    }

    fn to_state_dict(&self) -> Result<StateDict> {
        let mut sd = StateDict::default();
        sd.tensors.insert(TENSOR.into(), (vec![self.len(), self.dim], self.embeddings.clone()));
        let meta = &mut sd.metadata;
        meta.insert("format".into(), FORMAT.into());
        meta.insert("version".into(), INDEX_VERSION.to_string());
        meta.insert("dim".into(), self.dim.to_string());
        meta.insert("model".into(), self.model.clone());
        meta.insert("files".into(), json_list(&self.files)?);
        if let Some(l) = &self.labels {
            meta.insert("labels".into(), json_list(l)?);
        }
        Ok(sd)
    }

    /// Writes the index to `path` (atomically: a temporary file, then a rename).
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.check().map_err(|p| self.error(p))?;
        write_atomic(path, &self.to_state_dict()?.to_bytes()?)?;
        self.path = Some(path.to_path_buf());
        Ok(())
    }

    /// Reads and checks an index file.
    pub fn load(path: &Path) -> Result<Self> {
        let sd = StateDict::load(path)?;
        let err = |problem| Error::Index { path: Some(path.to_path_buf()), problem };
        let bad = |m: String| err(IndexError::Inconsistent(m));
        let meta = |key: &'static str| sd.metadata.get(key).ok_or(err(IndexError::NotAnIndex(key)));
        if meta("format")? != FORMAT {
            return Err(err(IndexError::NotAnIndex("format")));
        }
        let version = meta("version")?;
        if version.parse::<u32>().ok() != Some(INDEX_VERSION) {
            return Err(err(IndexError::Version { found: version.clone() }));
        }
        let dim: usize =
            meta("dim")?.parse().map_err(|_| bad(format!("its 'dim' is '{}', not a number", sd.metadata["dim"])))?;
        let model = meta("model")?.clone();
        let list = |key: &'static str, text: &String| {
            serde_json::from_str::<Vec<String>>(text)
                .map_err(|e| bad(format!("its '{key}' metadata is not a JSON list of strings ({e})")))
        };
        let files = list("files", meta("files")?)?;
        let labels = sd.metadata.get("labels").map(|t| list("labels", t)).transpose()?;
        let (shape, embeddings) = sd.tensors.get(TENSOR).ok_or(err(IndexError::NotAnIndex(TENSOR)))?.clone();
        if shape.len() != 2 || shape[1] != dim {
            return Err(bad(format!("its embeddings have shape {shape:?}, not [N, {dim}] (its 'dim')")));
        }
        let index = Index { embeddings, dim, files, labels, model, path: Some(path.to_path_buf()) };
        index.check().map_err(|p| index.error(p))?;
        Ok(index)
    }

    /// The index's embeddings uploaded for searching, for callers that search many times.
    pub fn upload(&self, gpu: &Gpu) -> Result<GpuGallery> {
        if self.is_empty() {
            return Err(self.error(IndexError::Empty));
        }
        GpuGallery::new(gpu, &self.embeddings, self.dim, None)
    }

    /// The `k` nearest rows (fewer when the index has fewer) of each query row of `queries`
    /// (`[Q, query_dim]`), nearest first.
    pub fn search(&self, gpu: &Gpu, queries: &[f32], query_dim: usize, k: usize) -> Result<Vec<Vec<Hit<'_>>>> {
        self.check_queries(queries, query_dim)?;
        self.search_in(gpu, &self.upload(gpu)?, queries, query_dim, k)
    }

    /// [`Index::search`] on embeddings already uploaded with [`Index::upload`].
    pub fn search_in(
        &self,
        gpu: &Gpu,
        gallery: &GpuGallery,
        queries: &[f32],
        query_dim: usize,
        k: usize,
    ) -> Result<Vec<Vec<Hit<'_>>>> {
        self.check_queries(queries, query_dim)?;
        if gallery.len() != self.len() || gallery.dim() != self.dim {
            return Err(Error::shape("index search", "the uploaded gallery is not this index's (Index::upload)"));
        }
        let n = gallery.search(gpu, queries, k.min(self.len()), &SearchOptions::default())?;
        Ok((0..n.queries)
            .map(|q| {
                n.row(q)
                    .map(|(i, distance)| Hit {
                        index: i,
                        path: &self.files[i],
                        label: self.labels.as_ref().map(|l| l[i].as_str()),
                        distance,
                    })
                    .collect()
            })
            .collect())
    }

    fn check_queries(&self, queries: &[f32], query_dim: usize) -> Result<()> {
        if self.is_empty() {
            return Err(self.error(IndexError::Empty));
        }
        if query_dim != self.dim {
            return Err(self.error(IndexError::Dim { index: self.dim, query: query_dim, model: self.model.clone() }));
        }
        if queries.len() % query_dim != 0 {
            let msg = format!("{} query values are not rows of dimension {query_dim}", queries.len());
            return Err(Error::shape("index search", msg));
        }
        Ok(())
    }
}

/// A list of strings as JSON text (safetensors metadata holds strings only).
fn json_list(v: &[String]) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Invalid(format!("could not write a list as JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tailor-index-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample(labels: bool) -> Index {
        let emb: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
        let files = ["a.jpg", "dir/b é.png", "c.jpg"].map(String::from).to_vec();
        let labels = labels.then(|| ["dress", "shoe", "dress"].map(String::from).to_vec());
        Index::new(emb, 4, files, labels, "densenet-bc sha256:0123").unwrap()
    }

    fn problem(e: Error) -> (Option<PathBuf>, IndexError) {
        match e {
            Error::Index { path, problem } => (path, problem),
            other => panic!("not an index error: {other:?}"),
        }
    }

    #[test]
    fn index_round_trip() {
        let dir = scratch("round-trip");
        for labels in [true, false] {
            let path = dir.join(format!("index-{labels}.safetensors"));
            let mut index = sample(labels);
            index.save(&path).unwrap();
            assert_eq!(index.path(), Some(path.as_path()));
            let back = Index::load(&path).unwrap();
            assert_eq!(back, index);
            assert_eq!(back.labels().map(|l| l[1].as_str()), labels.then_some("shoe"));
            // The file as the format says: a plain safetensors file.
            let sd = StateDict::load(&path).unwrap();
            assert_eq!(sd.tensors["embeddings"].0, [3, 4]);
            assert_eq!(sd.metadata["files"], r#"["a.jpg","dir/b é.png","c.jpg"]"#);
            assert_eq!((sd.metadata["dim"].as_str(), sd.metadata["version"].as_str()), ("4", "1"));
            assert_eq!(sd.metadata.contains_key("labels"), labels);
            // The same index is the same file.
            let again = dir.join("again.safetensors");
            back.clone().save(&again).unwrap();
            assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&path).unwrap());
        }
        // An empty index saves and loads (searching it is the error).
        let path = dir.join("empty.safetensors");
        let mut empty = Index::new(vec![], 16, vec![], None, "m").unwrap();
        empty.save(&path).unwrap();
        let back = Index::load(&path).unwrap();
        assert!(back.is_empty() && back.dim() == 16);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn index_of_another_model() {
        let index = sample(true);
        index.check_model("densenet-bc sha256:0123").unwrap();
        let (path, p) = problem(index.check_model("densenet121 sha256:ffff").unwrap_err());
        assert_eq!(path, None);
        assert_eq!(
            p,
            IndexError::OtherModel {
                index: "densenet-bc sha256:0123".into(),
                current: "densenet121 sha256:ffff".into()
            }
        );
    }

    #[test]
    fn inconsistent_indexes_are_refused() {
        let e = |r: Result<Index>| match problem(r.unwrap_err()).1 {
            IndexError::Inconsistent(m) => m,
            other => panic!("{other:?}"),
        };
        let files = || vec!["a".to_string(), "b".to_string()];
        assert!(e(Index::new(vec![0.0; 8], 4, vec!["a".into()], None, "m")).contains("2 embeddings but 1 file"));
        assert!(e(Index::new(vec![0.0; 8], 4, files(), Some(vec![]), "m")).contains("0 labels"));
        assert!(e(Index::new(vec![0.0; 7], 4, files(), None, "m")).contains("not rows"));
        assert!(e(Index::new(vec![], 0, vec![], None, "m")).contains("dimension 0"));
        let mut nan = vec![0.0; 8];
        nan[5] = f32::NAN;
        assert!(e(Index::new(nan, 4, files(), None, "m")).contains("embedding 1 (b)"));
    }

    #[test]
    fn bad_index_files_name_the_file_and_the_problem() {
        let dir = scratch("bad");
        let good = sample(true).to_state_dict().unwrap();
        let write = |name: &str, f: &dyn Fn(&mut StateDict)| {
            let mut sd = good.clone();
            f(&mut sd);
            let path = dir.join(name);
            sd.save(&path).unwrap();
            let (at, p) = problem(Index::load(&path).unwrap_err());
            assert_eq!(at.as_deref(), Some(path.as_path()));
            p
        };
        let p = write("v2.safetensors", &|sd| {
            sd.metadata.insert("version".into(), "2".into());
        });
        assert_eq!(p, IndexError::Version { found: "2".into() });
        assert!(Error::Index { path: Some(dir.join("v2.safetensors")), problem: p }
            .to_string()
            .contains("v2.safetensors: index format version 2, but this tailor reads version 1"));
        let p = write("weights.safetensors", &|sd| sd.metadata.clear());
        assert_eq!(p, IndexError::NotAnIndex("format"));
        let p = write("nofiles.safetensors", &|sd| {
            sd.metadata.remove("files");
        });
        assert_eq!(p, IndexError::NotAnIndex("files"));
        let p = write("notensor.safetensors", &|sd| sd.tensors.clear());
        assert_eq!(p, IndexError::NotAnIndex("embeddings"));
        type Edit<'a> = &'a dyn Fn(&mut StateDict);
        let inconsistent: [(&str, Edit, &str); 4] = [
            (
                "files.safetensors",
                &|sd| {
                    sd.metadata.insert("files".into(), r#"["a","b"]"#.into());
                },
                "3 embeddings but 2 file names",
            ),
            (
                "labels.safetensors",
                &|sd| {
                    sd.metadata.insert("labels".into(), "dress".into());
                },
                "'labels' metadata is not a JSON list",
            ),
            (
                "dim.safetensors",
                &|sd| {
                    sd.metadata.insert("dim".into(), "3".into());
                },
                "shape [3, 4], not [N, 3]",
            ),
            (
                "rank.safetensors",
                &|sd| {
                    sd.tensors.get_mut("embeddings").unwrap().0 = vec![12];
                },
                "shape [12]",
            ),
        ];
        for (name, f, want) in inconsistent {
            match write(name, f) {
                IndexError::Inconsistent(m) => assert!(m.contains(want), "{name}: {m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        // Not a safetensors file at all, or no file: the loader's file errors.
        std::fs::write(dir.join("junk.safetensors"), b"junk").unwrap();
        assert!(matches!(Index::load(&dir.join("junk.safetensors")), Err(Error::File { .. })));
        assert!(matches!(Index::load(&dir.join("missing.safetensors")), Err(Error::File { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
