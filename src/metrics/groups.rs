//! Label groups by training frequency: many / medium / few shot as in the long-tail literature,
//! and majority / minority / rare for the per-group precision-recall figures.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shot {
    Many,
    Medium,
    Few,
}

/// Many-shot: more than `many_above` training samples; few-shot: fewer than `few_below`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShotSplit {
    pub many_above: usize,
    pub few_below: usize,
}

impl Default for ShotSplit {
    fn default() -> Self {
        ShotSplit { many_above: 100, few_below: 20 }
    }
}

impl ShotSplit {
    pub fn new(many_above: usize, few_below: usize) -> Result<Self> {
        if few_below > many_above + 1 {
            return Err(Error::Invalid(format!(
                "few-shot bound {few_below} overlaps the many-shot bound {many_above}"
            )));
        }
        Ok(ShotSplit { many_above, few_below })
    }

    pub fn group(&self, train_count: usize) -> Shot {
        if train_count > self.many_above {
            Shot::Many
        } else if train_count < self.few_below {
            Shot::Few
        } else {
            Shot::Medium
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rarity {
    Majority,
    Minority,
    Rare,
}

impl Rarity {
    pub const ALL: [Rarity; 3] = [Rarity::Majority, Rarity::Minority, Rarity::Rare];

    pub fn name(self) -> &'static str {
        match self {
            Rarity::Majority => "majority",
            Rarity::Minority => "minority",
            Rarity::Rare => "rare",
        }
    }
}

impl Shot {
    pub fn name(self) -> &'static str {
        match self {
            Shot::Many => "many",
            Shot::Medium => "medium",
            Shot::Few => "few",
        }
    }
}

/// By the share of training samples carrying the label, so that the split does not depend on the
/// size of the data set: majority at least `majority_at_least`, rare below `rare_below`.
/// The defaults (10 % and 1 %) put the paper's "six puff sleeves in 1000 products" in rare.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RaritySplit {
    pub majority_at_least: f64,
    pub rare_below: f64,
}

impl Default for RaritySplit {
    fn default() -> Self {
        RaritySplit { majority_at_least: 0.10, rare_below: 0.01 }
    }
}

impl RaritySplit {
    pub fn new(majority_at_least: f64, rare_below: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&rare_below) || !(rare_below..=1.0).contains(&majority_at_least) {
            return Err(Error::Invalid(format!(
                "rarity bounds need 0 <= rare ({rare_below}) <= majority ({majority_at_least}) <= 1"
            )));
        }
        Ok(RaritySplit { majority_at_least, rare_below })
    }

    pub fn group(&self, train_count: usize, train_samples: usize) -> Rarity {
        let share = train_count as f64 / train_samples.max(1) as f64;
        if share >= self.majority_at_least {
            Rarity::Majority
        } else if share < self.rare_below {
            Rarity::Rare
        } else {
            Rarity::Minority
        }
    }
}
