//! Optimiser settings and learning-rate schedules (host side; the update runs in WGSL).

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam; weight decay, if any, is L2 added to the gradient (torch.optim.Adam).
    Adam,
    /// AdamW: decoupled weight decay (torch.optim.AdamW).
    AdamW,
}

/// Learning rate as a function of the step.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// lr·gamma^(step / every)
    Step {
        every: u64,
        gamma: f64,
    },
    /// Cosine from lr to `min_lr` over `total` steps.
    Cosine {
        total: u64,
        min_lr: f64,
    },
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Put batch-norm scales/biases and all biases in a group without weight decay.
    pub no_decay_bn_bias: bool,
    pub schedule: Schedule,
    /// Linear warm-up from 0 over this many steps.
    pub warmup: u64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Adam,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            no_decay_bn_bias: false,
            schedule: Schedule::Constant,
            warmup: 0,
        }
    }
}

impl OptimizerConfig {
    pub fn validate(&self) -> Result<()> {
        let ok = self.lr.is_finite()
            && self.lr >= 0.0
            && (0.0..1.0).contains(&self.beta1)
            && (0.0..1.0).contains(&self.beta2)
            && self.eps > 0.0
            && self.weight_decay >= 0.0;
        if !ok {
            return Err(Error::Invalid(format!(
                "optimiser settings out of range: lr {} (≥ 0), betas {} {} (in [0, 1)), eps {} (> 0), weight decay {} (≥ 0)",
                self.lr, self.beta1, self.beta2, self.eps, self.weight_decay
            )));
        }
        Ok(())
    }

    /// The learning rate at 1-based step `t`.
    pub fn lr_at(&self, t: u64) -> f64 {
        let base = match &self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Step { every, gamma } => self.lr * gamma.powi(((t - 1) / (*every).max(1)) as i32),
            Schedule::Cosine { total, min_lr } => {
                let p = ((t - 1) as f64 / (*total).max(1) as f64).min(1.0);
                min_lr + (self.lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        };
        if self.warmup > 0 && t <= self.warmup {
            base * t as f64 / self.warmup as f64
        } else {
            base
        }
    }
}
