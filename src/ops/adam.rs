//! Adam and AdamW, step for step like `torch.optim.Adam` / `torch.optim.AdamW`.
//!
//! The dispatches are built once; what changes every step (the step number, the learning rate and
//! the bias corrections computed from them in f64) lives in a small storage buffer holding an
//! [`AdamHyper`] that the host rewrites with [`write_hyper`] before each submission. One dispatch
//! updates a contiguous range of flat parameter, gradient and moment buffers, so a parameter
//! group stored back to back is one launch.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{ceil_div, grid, AdamEntry, BufRange, Dispatch, Gpu, Launch};

const WG: u32 = 256;

/// The fixed hyperparameters of an optimiser.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW: decay the weights directly instead of adding `wd·p` to the gradient.
    pub decoupled: bool,
}

impl AdamConfig {
    /// `torch.optim.Adam` defaults: β = (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn adam() -> Self {
        AdamConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }

    /// `torch.optim.AdamW` defaults: β = (0.9, 0.999), eps 1e-8, weight decay 1e-2.
    pub fn adamw() -> Self {
        AdamConfig { weight_decay: 1e-2, decoupled: true, ..Self::adam() }
    }

    pub fn validate(&self) -> Result<()> {
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::Invalid(format!("Adam {name} must be in [0, 1), got {b}")));
            }
        }
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            return Err(Error::Invalid(format!("Adam eps must be finite and ≥ 0, got {}", self.eps)));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(Error::Invalid(format!("weight decay must be finite and ≥ 0, got {}", self.weight_decay)));
        }
        Ok(())
    }
}

/// What the kernel reads every step; mirrored by `AdamHyper` in `shaders/adam.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct AdamHyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: u32,
    /// `lr / (1 − β1^t)`.
    pub step_size: f32,
    /// `sqrt(1 − β2^t)`.
    pub bc2_sqrt: f32,
    /// `1 − lr·wd` for AdamW, 1 for Adam.
    pub decay: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    /// The step number `t` (1 for the first step), for reports.
    pub step: u32,
}

/// The hyperparameters of step `t` (1-based, as torch counts) at learning rate `lr`, with the
/// bias corrections computed in f64.
pub fn hyper_for_step(t: u32, lr: f64, cfg: &AdamConfig) -> Result<AdamHyper> {
    cfg.validate()?;
    if t == 0 {
        return Err(Error::Invalid("Adam steps count from 1".into()));
    }
    if !(lr >= 0.0 && lr.is_finite()) {
        return Err(Error::Invalid(format!("the learning rate must be finite and ≥ 0, got {lr}")));
    }
    let bc1 = 1.0 - cfg.beta1.powi(t as i32);
    let bc2 = 1.0 - cfg.beta2.powi(t as i32);
    Ok(AdamHyper {
        lr: lr as f32,
        beta1: cfg.beta1 as f32,
        beta2: cfg.beta2 as f32,
        eps: cfg.eps as f32,
        weight_decay: cfg.weight_decay as f32,
        decoupled: cfg.decoupled as u32,
        step_size: (lr / bc1) as f32,
        bc2_sqrt: bc2.sqrt() as f32,
        decay: if cfg.decoupled { (1.0 - lr * cfg.weight_decay) as f32 } else { 1.0 },
        one_minus_beta1: (1.0 - cfg.beta1) as f32,
        one_minus_beta2: (1.0 - cfg.beta2) as f32,
        step: t,
    })
}

/// A storage buffer for one [`AdamHyper`], shared by every dispatch of an optimiser.
pub fn hyper_buffer(gpu: &Gpu) -> Result<wgpu::Buffer> {
    gpu.upload("adam hyper", &[AdamHyper::default()])
}

/// Queues the hyperparameters of the next step (takes effect at the next submission).
pub fn write_hyper(gpu: &Gpu, buf: &wgpu::Buffer, h: &AdamHyper) {
    gpu.write(buf, std::slice::from_ref(h));
}

/// Elements `offset..offset + len` of the flat parameter, gradient and moment buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdamRange {
    pub offset: usize,
    pub len: usize,
}

/// The buffers of one parameter group: parameters, gradients, first and second moments (all
/// f32, the moments zeroed before the first step) and the [`hyper_buffer`].
#[derive(Clone, Copy)]
pub struct AdamBuffers<'a> {
    pub hyper: &'a wgpu::Buffer,
    pub param: &'a wgpu::Buffer,
    pub grad: &'a wgpu::Buffer,
    pub m: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) offset: u32,
    pub(crate) len: u32,
    pub(crate) _pad: [u32; 2],
}

fn check(r: AdamRange, b: &AdamBuffers) -> Result<()> {
    let end = r.offset.checked_add(r.len).filter(|&e| e <= u32::MAX as usize);
    let Some(end) = end else {
        return Err(Error::shape("adam", format!("range {}+{} passes 2^32 elements", r.offset, r.len)));
    };
    if b.hyper.size() < std::mem::size_of::<AdamHyper>() as u64 {
        return Err(Error::shape("adam", "the hyperparameter buffer is smaller than AdamHyper"));
    }
    for (name, buf) in [("param", b.param), ("grad", b.grad), ("m", b.m), ("v", b.v)] {
        if buf.size() < 4 * end as u64 {
            return Err(Error::shape(
                "adam",
                format!("{name} buffer has {} elements, range {}..{end} does not fit", buf.size() / 4, r.offset),
            ));
        }
    }
    Ok(())
}

/// One Adam/AdamW step over `r` (Adam or AdamW by what the hyper buffer says): one dispatch,
/// or one per piece when the buffers are larger than the device can bind at once.
pub fn adam_step(gpu: &Gpu, r: AdamRange, b: AdamBuffers) -> Result<Vec<Dispatch>> {
    check(r, &b)?;
    if r.len == 0 {
        return Ok(Vec::new());
    }
    let whole = [b.param, b.grad, b.m, b.v].iter().all(|buf| buf.size() <= gpu.max_binding());
    if whole {
        return Ok(vec![launch(gpu, b, 0, r.offset, r.len, [b.param, b.grad, b.m, b.v].map(BufRange::from))?]);
    }
    // Pieces of at most one binding, each bound from an aligned element at or before its start.
    let align = (gpu.binding_alignment() / 4).max(1) as usize;
    let most = (gpu.max_binding() / 4) as usize / align * align;
    if most <= align {
        return Err(Error::shape("adam", format!("bindings of {} bytes are too small", gpu.max_binding())));
    }
    let mut out = Vec::new();
    let (mut start, end) = (r.offset, r.offset + r.len);
    while start < end {
        let base = start / align * align;
        let len = (end - start).min(base + most - start);
        let ranges = [b.param, b.grad, b.m, b.v].map(|buf| BufRange {
            buf,
            offset: base as u64 * 4,
            size: ((start + len - base) as u64 * 4).min(buf.size() - base as u64 * 4),
        });
        out.push(launch(gpu, b, base, start, len, ranges)?);
        start += len;
    }
    Ok(out)
}

/// The dispatch for elements `start..start + len`, the four buffers bound from element `base`.
fn launch(gpu: &Gpu, b: AdamBuffers, base: usize, start: usize, len: usize, bound: [BufRange; 4]) -> Result<Dispatch> {
    let p = Params { offset: (start - base) as u32, len: len as u32, _pad: [0; 2] };
    let [param, grad, m, v] = bound;
    gpu.dispatch(Launch {
        entry: AdamEntry::AdamStep.into(),
        constants: &[("WG", WG as f64)],
        params: bytemuck::bytes_of(&p),
        buffers: &[b.hyper.into(), param, grad, m, v],
        workgroups: grid(ceil_div(len, WG as usize)),
    })
}

/// One step `t` (from 1) of torch's Adam/AdamW on f64 slices, in place.
pub fn adam_step_ref(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], t: u32, lr: f64, cfg: &AdamConfig) {
    let bc1 = 1.0 - cfg.beta1.powi(t as i32);
    let bc2 = 1.0 - cfg.beta2.powi(t as i32);
    for i in 0..p.len() {
        let mut grad = g[i];
        if cfg.decoupled {
            p[i] *= 1.0 - lr * cfg.weight_decay;
        } else {
            grad += cfg.weight_decay * p[i];
        }
        m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * grad;
        v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * grad * grad;
        let denom = v[i].sqrt() / bc2.sqrt() + cfg.eps;
        p[i] -= lr / bc1 * m[i] / denom;
    }
}
