//! Retrieval metrics of an embedding model (Musgrave et al. 2020, "A Metric Learning Reality
//! Check"), from ranked neighbour lists and labels:
//! - `recall@k` (k = 1, 2, 4, 8): the share of queries with at least one item of their label
//!   among their k nearest;
//! - `r_precision`: with R the number of candidate items of the query's label, the share of
//!   that label among the R nearest;
//! - `map_at_r`: `(1/R) Σ_{i ≤ R} P(i)·rel(i)`, P(i) the precision at rank i.
//!
//! Two forms ([`Retrieval`]): leave-one-out (every item a query against all the others) and
//! queries against a separate gallery. A query with no candidate of its label (R = 0: a label no
//! other item has) is left out of every mean, and `queries` counts the rest.
//!
//! With groups (verticals), a query's candidates are the items of its group only (the search
//! must have been restricted the same way, see [`SearchOptions::query_groups`]); the report then
//! has the same metrics per group, and its overall figures pool every group's queries.
//!
//! Neighbour lists come from [`knn`](crate::ops::knn) (ranked by distance, ties by lower index);
//! [`retrieval_gpu`] runs the search on the GPU, [`retrieval_cpu`] with the CPU reference.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::report::fmt3;
use crate::ops::knn::{self, Exclude, Neighbours, SearchOptions, NO_NEIGHBOUR};
use crate::{Error, Gpu, Result};

const OP: &str = "retrieval metrics";

/// The k of `recall@k`.
pub const RECALL_AT: [usize; 4] = [1, 2, 4, 8];

/// Group ids of queries and gallery items, and each id's name (`names[id]`).
#[derive(Clone, Copy, Debug)]
pub struct RetrievalGroups<'a> {
    pub queries: &'a [u32],
    pub gallery: &'a [u32],
    pub names: &'a [String],
}

/// What was searched and the labels that say which results are right.
#[derive(Clone, Copy, Debug)]
pub struct Retrieval<'a> {
    pub query_labels: &'a [u32],
    pub gallery_labels: &'a [u32],
    /// Query i is gallery item i and is not its own candidate.
    pub leave_one_out: bool,
    pub groups: Option<RetrievalGroups<'a>>,
}

impl<'a> Retrieval<'a> {
    /// Every item a query against all the others.
    pub fn leave_one_out(labels: &'a [u32]) -> Self {
        Retrieval { query_labels: labels, gallery_labels: labels, leave_one_out: true, groups: None }
    }
    /// Queries against a separate gallery.
    pub fn gallery(query_labels: &'a [u32], gallery_labels: &'a [u32]) -> Self {
        Retrieval { query_labels, gallery_labels, leave_one_out: false, groups: None }
    }
    /// Per-group search and results: `queries` and `gallery` are group ids, `names` their names.
    /// (Leave-one-out: both are the items' groups.)
    pub fn with_groups(self, groups: RetrievalGroups<'a>) -> Self {
        Retrieval { groups: Some(groups), ..self }
    }

    fn check(&self) -> Result<()> {
        let (nq, ng) = (self.query_labels.len(), self.gallery_labels.len());
        if self.leave_one_out && nq != ng {
            return Err(Error::shape(OP, format!("leave-one-out with {nq} query labels but {ng} gallery labels")));
        }
        if let Some(g) = &self.groups {
            if g.queries.len() != nq || g.gallery.len() != ng {
                return Err(Error::shape(
                    OP,
                    format!(
                        "{} query groups for {nq} queries and {} gallery groups for {ng} gallery items",
                        g.queries.len(),
                        g.gallery.len()
                    ),
                ));
            }
            if self.leave_one_out && g.queries != g.gallery {
                return Err(Error::shape(OP, "leave-one-out: the queries' groups must be the gallery's"));
            }
            if let Some(&id) = g.queries.iter().chain(g.gallery).find(|&&id| id as usize >= g.names.len()) {
                return Err(Error::shape(OP, format!("group id {id} has no name ({} names given)", g.names.len())));
            }
        }
        Ok(())
    }

    fn group_of_query(&self, q: usize) -> u32 {
        self.groups.map_or(0, |g| g.queries[q])
    }

    /// Per query: R (candidates of its label) and the number of candidates.
    fn counts(&self) -> Vec<(usize, usize)> {
        let mut by_label: HashMap<(u32, u32), usize> = HashMap::new();
        let mut by_group: HashMap<u32, usize> = HashMap::new();
        for (j, &label) in self.gallery_labels.iter().enumerate() {
            let group = self.groups.map_or(0, |g| g.gallery[j]);
            *by_label.entry((group, label)).or_default() += 1;
            *by_group.entry(group).or_default() += 1;
        }
        let own = self.leave_one_out as usize;
        (0..self.query_labels.len())
            .map(|q| {
                let group = self.group_of_query(q);
                let r = by_label.get(&(group, self.query_labels[q])).copied().unwrap_or(0);
                let c = by_group.get(&group).copied().unwrap_or(0);
                (r.saturating_sub(own), c.saturating_sub(own))
            })
            .collect()
    }

    /// The neighbours per query a search must return for every metric: R for MAP@R and
    /// R-precision, 8 for recall@8, and never more than a query has candidates (at least 1).
    pub fn required_k(&self) -> Result<usize> {
        self.check()?;
        let k = self.counts().iter().filter(|(r, _)| *r > 0).map(|&(r, c)| r.max(8).min(c)).max().unwrap_or(1);
        Ok(k.max(1))
    }
}

/// The metrics over one set of queries; `None` where no query counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrievalScores {
    #[serde(rename = "recall@1")]
    pub recall_at_1: Option<f64>,
    #[serde(rename = "recall@2")]
    pub recall_at_2: Option<f64>,
    #[serde(rename = "recall@4")]
    pub recall_at_4: Option<f64>,
    #[serde(rename = "recall@8")]
    pub recall_at_8: Option<f64>,
    pub r_precision: Option<f64>,
    pub map_at_r: Option<f64>,
    /// Queries with at least one candidate of their label.
    pub queries: usize,
}

impl RetrievalScores {
    /// `recall@k` for k in [`RECALL_AT`].
    pub fn recall(&self) -> [Option<f64>; 4] {
        [self.recall_at_1, self.recall_at_2, self.recall_at_4, self.recall_at_8]
    }
}

/// Sums over the counted queries of a set.
#[derive(Clone, Copy, Default)]
struct Sums {
    recall: [f64; 4],
    r_precision: f64,
    map_at_r: f64,
    queries: usize,
}

impl Sums {
    fn add(&mut self, other: &Sums) {
        for (a, b) in self.recall.iter_mut().zip(other.recall) {
            *a += b;
        }
        self.r_precision += other.r_precision;
        self.map_at_r += other.map_at_r;
        self.queries += other.queries;
    }

    fn scores(&self) -> RetrievalScores {
        let mean = |s: f64| (self.queries > 0).then(|| s / self.queries as f64);
        RetrievalScores {
            recall_at_1: mean(self.recall[0]),
            recall_at_2: mean(self.recall[1]),
            recall_at_4: mean(self.recall[2]),
            recall_at_8: mean(self.recall[3]),
            r_precision: mean(self.r_precision),
            map_at_r: mean(self.map_at_r),
            queries: self.queries,
        }
    }
}

/// The report: overall figures at the top level (keys `recall@1` … `queries`), and with groups
/// the same per group name under `per_vertical` (the groups tailor searches within are an
/// apparel catalogue's verticals).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrievalReport {
    #[serde(flatten)]
    pub overall: RetrievalScores,
    #[serde(rename = "per_vertical", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_group: BTreeMap<String, RetrievalScores>,
}

/// The metrics of `neighbours` (one row per query, ranked; from a search with at least
/// [`Retrieval::required_k`] neighbours, leave-one-out and groups as `set` says).
pub fn retrieval_metrics<D: Copy>(neighbours: &Neighbours<D>, set: &Retrieval) -> Result<RetrievalReport> {
    set.check()?;
    let nq = set.query_labels.len();
    if neighbours.queries != nq {
        return Err(Error::shape(OP, format!("{} neighbour lists for {nq} queries", neighbours.queries)));
    }
    let ng = set.gallery_labels.len();
    let mut per_group: BTreeMap<u32, Sums> = BTreeMap::new();
    for (q, &(r, candidates)) in set.counts().iter().enumerate() {
        let group = set.group_of_query(q);
        let sums = per_group.entry(group).or_default();
        if r == 0 {
            continue;
        }
        let row = neighbours.indices_of(q);
        let need = r.max(8).min(candidates);
        if row.len() < need {
            return Err(Error::shape(
                OP,
                format!(
                    "neighbour lists of {} are too short: query {q} needs {need} (R = {r}); search with k = {} (Retrieval::required_k)",
                    row.len(),
                    set.required_k()?
                ),
            ));
        }
        let mut hits = 0usize;
        let mut precision_sum = 0.0;
        let mut first_hit = None;
        for (i, &j) in row[..need].iter().enumerate() {
            let bad = |why: &str| Error::shape(OP, format!("query {q}'s neighbour {i} is gallery item {j}, {why}"));
            if j == NO_NEIGHBOUR {
                return Err(bad("an empty slot where the query has more candidates"));
            }
            let j = j as usize;
            if j >= ng {
                return Err(bad(&format!("outside the gallery's {ng} items")));
            }
            if set.leave_one_out && j == q {
                return Err(bad("the query itself: search with leave-one-out (Exclude::Offset(0))"));
            }
            if let Some(g) = &set.groups {
                if g.gallery[j] != group {
                    return Err(bad("of another group: search with the groups (SearchOptions::query_groups)"));
                }
            }
            if set.gallery_labels[j] == set.query_labels[q] {
                hits += 1;
                first_hit.get_or_insert(i);
                if i < r {
                    precision_sum += hits as f64 / (i + 1) as f64;
                }
            }
            if i + 1 == r {
                sums.r_precision += hits as f64 / r as f64;
            }
        }
        sums.map_at_r += precision_sum / r as f64;
        for (s, k) in sums.recall.iter_mut().zip(RECALL_AT) {
            *s += first_hit.is_some_and(|i| i < k) as u8 as f64;
        }
        sums.queries += 1;
    }
    let mut all = Sums::default();
    for s in per_group.values() {
        all.add(s);
    }
    let per_group = match &set.groups {
        Some(g) => per_group.iter().map(|(&id, s)| (g.names[id as usize].clone(), s.scores())).collect(),
        None => BTreeMap::new(),
    };
    Ok(RetrievalReport { overall: all.scores(), per_group })
}

fn search_options<'a>(set: &Retrieval<'a>) -> SearchOptions<'a> {
    SearchOptions {
        exclude: if set.leave_one_out { Exclude::Offset(0) } else { Exclude::Nothing },
        query_groups: set.groups.map(|g| g.queries),
        ..Default::default()
    }
}

/// Searches `gallery` with `queries` (`[N, dim]` each; for leave-one-out the same embeddings) on
/// the GPU with k = [`Retrieval::required_k`], then computes the metrics.
pub fn retrieval_gpu(
    gpu: &Gpu,
    set: &Retrieval,
    queries: &[f32],
    gallery: &[f32],
    dim: usize,
) -> Result<RetrievalReport> {
    let k = set.required_k()?;
    let groups = set.groups.map(|g| g.gallery);
    let n = knn::knn(gpu, queries, gallery, dim, k.min(set.gallery_labels.len().max(1)), groups, &search_options(set))?;
    retrieval_metrics(&n, set)
}

/// [`retrieval_gpu`] with the CPU reference search ([`knn::knn_ref`]): f64 distances, for small
/// sets and tests.
pub fn retrieval_cpu(set: &Retrieval, queries: &[f32], gallery: &[f32], dim: usize) -> Result<RetrievalReport> {
    let k = set.required_k()?;
    let groups = set.groups.map(|g| g.gallery);
    let n = knn::knn_ref(queries, gallery, dim, k.min(set.gallery_labels.len().max(1)), groups, &search_options(set))?;
    retrieval_metrics(&n, set)
}

impl RetrievalReport {
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Invalid(format!("could not serialise the report: {e}")))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Invalid(format!("not a retrieval report: {e}")))
    }

    pub fn save_json(&self, path: &Path) -> Result<()> {
        super::write_atomic(path, self.to_json()?.as_bytes())
    }

    pub fn save_markdown(&self, path: &Path) -> Result<()> {
        super::write_atomic(path, self.to_markdown().as_bytes())
    }

    /// One row for all queries, then one per group.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("# Retrieval\n\n");
        s += "| Queries of | Queries | Recall@1 | Recall@2 | Recall@4 | Recall@8 | R-precision | MAP@R |\n";
        s += "|---|---:|---:|---:|---:|---:|---:|---:|\n";
        let row = |name: &str, m: &RetrievalScores| {
            let r = m.recall().map(fmt3);
            format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                name.replace('|', "\\|"),
                m.queries,
                r[0],
                r[1],
                r[2],
                r[3],
                fmt3(m.r_precision),
                fmt3(m.map_at_r)
            )
        };
        s += &row("all", &self.overall);
        for (name, m) in &self.per_group {
            s += &row(name, m);
        }
        s += "\nQueries without another item of their label are left out; with groups, each query is searched \
              among its group's items only.\n";
        s
    }
}
