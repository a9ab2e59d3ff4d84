//! The paper's Table I: AP per label under each weighting scheme, the best of each row marked.

use super::report::{fmt3, EvalReport};
use crate::{Error, Result};

/// No weighting, inverse frequency weighting, inverse effective number weighting.
pub const PAPER_SCHEMES: [&str; 3] = ["NW", "IFW", "IEW"];

#[derive(Clone, Debug, PartialEq)]
pub struct SchemeComparison {
    pub schemes: Vec<String>,
    pub labels: Vec<String>,
    /// `[label][scheme]`.
    pub ap: Vec<Vec<Option<f64>>>,
}

impl SchemeComparison {
    /// One report per scheme, all over the same labels in the same order.
    pub fn from_reports(reports: &[(&str, &EvalReport)]) -> Result<Self> {
        let Some((_, first)) = reports.first() else {
            return Err(Error::Invalid("no reports to compare".into()));
        };
        let labels: Vec<String> = first.labels.iter().map(|l| l.name.clone()).collect();
        for (scheme, r) in reports {
            if !r.labels.iter().map(|l| &l.name).eq(labels.iter()) {
                return Err(Error::Invalid(format!("the report of {scheme} has different labels")));
            }
        }
        let ap = (0..labels.len()).map(|j| reports.iter().map(|(_, r)| r.labels[j].ap).collect()).collect();
        Ok(SchemeComparison { schemes: reports.iter().map(|(s, _)| s.to_string()).collect(), labels, ap })
    }

    /// The schemes with the highest AP in a row (all of them on a tie); empty if none has one.
    pub fn best(row: &[Option<f64>]) -> Vec<usize> {
        let Some(max) = row.iter().flatten().copied().reduce(f64::max) else { return vec![] };
        (0..row.len()).filter(|&k| row[k] == Some(max)).collect()
    }

    /// Mean AP of each scheme over the labels that have an AP under every scheme, so that all
    /// columns average the same labels.
    pub fn means(&self) -> Vec<Option<f64>> {
        let full: Vec<&Vec<Option<f64>>> = self.ap.iter().filter(|r| r.iter().all(Option::is_some)).collect();
        (0..self.schemes.len())
            .map(|k| (!full.is_empty()).then(|| full.iter().map(|r| r[k].unwrap()).sum::<f64>() / full.len() as f64))
            .collect()
    }

    /// The label rows followed by the mean row.
    fn rows(&self) -> Vec<(&str, Vec<Option<f64>>)> {
        let labels = self.labels.iter().map(String::as_str).zip(self.ap.iter().cloned());
        labels.chain(std::iter::once(("mAP", self.means()))).collect()
    }

    /// Markdown with the best AP of each row in bold.
    pub fn to_markdown(&self) -> String {
        let mut s = format!("| Label | {} |\n|---|{}\n", self.schemes.join(" | "), "---:|".repeat(self.schemes.len()));
        for (name, row) in self.rows() {
            let cells = marked(&row, |v| format!("**{v}**"));
            s += &format!("| {} | {} |\n", name.replace('|', "\\|"), cells.join(" | "));
        }
        s
    }

    /// Plain text in aligned columns with `*` after the best AP of each row.
    pub fn to_text(&self) -> String {
        let width = self.labels.iter().map(|l| l.chars().count()).max().unwrap_or(0).max(5);
        let mut s = format!("{:width$}", "Label");
        for scheme in &self.schemes {
            s += &format!(" {scheme:>7}");
        }
        s += "\n";
        for (name, row) in self.rows() {
            s += &format!("{name:width$}");
            for cell in marked(&row, |v| format!("{v}*")) {
                s += &format!(" {cell:>7}");
            }
            s += "\n";
        }
        s
    }
}

fn marked(row: &[Option<f64>], mark: impl Fn(String) -> String) -> Vec<String> {
    let best = SchemeComparison::best(row);
    (0..row.len()).map(|k| if best.contains(&k) { mark(fmt3(row[k])) } else { fmt3(row[k]) }).collect()
}

/// Runs side by side by label group: each run's macro mAP overall and over each group's labels
/// (many / medium / few shot, majority / minority / rare), the best of each row marked. What
/// `compare` reports for a grid of β and γ (Cui et al. chose them per data set this way).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupComparison {
    pub runs: Vec<String>,
    /// "all", then the groups.
    pub groups: Vec<String>,
    /// `[group][run]`.
    pub map: Vec<Vec<Option<f64>>>,
}

impl GroupComparison {
    pub fn from_reports(reports: &[(String, &EvalReport)]) -> Result<Self> {
        let Some((_, first)) = reports.first() else {
            return Err(Error::Invalid("no reports to compare".into()));
        };
        let mut groups = vec!["all".to_string()];
        groups.extend(first.groups.iter().map(|g| g.group.clone()));
        let map = groups
            .iter()
            .map(|g| {
                reports
                    .iter()
                    .map(|(_, r)| if g == "all" { r.macro_ap } else { r.group(g).and_then(|s| s.macro_ap) })
                    .collect()
            })
            .collect();
        Ok(GroupComparison { runs: reports.iter().map(|(n, _)| n.clone()).collect(), groups, map })
    }

    /// Per group, the runs with its best macro mAP (empty where no run has one).
    pub fn winners(&self) -> Vec<(&str, Vec<&str>)> {
        self.groups
            .iter()
            .zip(&self.map)
            .map(|(g, row)| {
                (g.as_str(), SchemeComparison::best(row).into_iter().map(|k| self.runs[k].as_str()).collect())
            })
            .collect()
    }

    /// Markdown: a row per group, a column per run, the best in bold; then the winners.
    pub fn to_markdown(&self) -> String {
        let mut s = format!("| Group | {} |\n|---|{}\n", self.runs.join(" | "), "---:|".repeat(self.runs.len()));
        for (g, row) in self.groups.iter().zip(&self.map) {
            s += &format!("| {g} | {} |\n", marked(row, |v| format!("**{v}**")).join(" | "));
        }
        s += "\n";
        for (g, w) in self.winners() {
            let w = if w.is_empty() { "none (no AP in this group)".to_string() } else { w.join(", ") };
            s += &format!("- best for {g}: {w}\n");
        }
        s
    }

    /// Plain text for a terminal, the best of each row starred; then the winners.
    pub fn to_text(&self) -> String {
        let width = self.runs.iter().map(|r| r.chars().count()).max().unwrap_or(0).max(7);
        let mut s = format!("{:9}", "Group");
        for r in &self.runs {
            s += &format!(" {r:>width$}");
        }
        s += "\n";
        for (g, row) in self.groups.iter().zip(&self.map) {
            s += &format!("{g:9}");
            for cell in marked(row, |v| format!("{v}*")) {
                s += &format!(" {cell:>width$}");
            }
            s += "\n";
        }
        for (g, w) in self.winners() {
            s += &format!("best for {g}: {}\n", if w.is_empty() { "none".to_string() } else { w.join(", ") });
        }
        s
    }
}
