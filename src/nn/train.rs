//! One training step on the device: upload the batch, forward, loss, backward and the optimiser
//! update, recorded into one submission. The loss is copied into a small ring of mappable
//! buffers and read when it is ready, so the next step never waits for it.

use std::sync::{Arc, Mutex};

use super::model::Model;
use super::optim::{OptimizerConfig, OptimizerKind};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::exec::{Executable, MemoryReport};
use crate::graph::{autodiff::autodiff, Graph, LossKind, Role, TensorId};
use crate::ops::adam;

/// What a training step needs besides the model.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    /// The class-balanced losses train classifiers; the embedding losses (triplets,
    /// distillation) train the model's output as an embedding, usually of a model with
    /// `l2_normalize` (see [`crate::nn::densenet::DenseNetConfig`]).
    pub loss: LossKind,
    /// One weight per class (see [`crate::nn::weights`]) for the softmax and sigmoid losses;
    /// empty for the embedding losses, which weigh no classes.
    pub class_weights: Vec<f32>,
    pub optimizer: OptimizerConfig,
    /// Micro-batches per optimiser step (gradient accumulation; 1: none). `batch` images are
    /// cut into this many micro-batches of `batch / accumulate` images, each with its own
    /// batch-norm statistics and its loss divided by `accumulate`; their gradients are summed on
    /// the device and one optimiser step follows, as in PyTorch.
    pub accumulate: usize,
}

impl TrainConfig {
    /// Images per micro-batch: what the step's graph is built for.
    pub fn micro_batch(&self) -> Result<usize> {
        if self.accumulate == 0 || self.batch % self.accumulate != 0 {
            return Err(Error::shape(
                "gradient accumulation",
                format!(
                    "a batch of {} cannot be cut into {} micro-batches of equal size: give a batch size that is a \
                     multiple of the accumulation steps",
                    self.batch, self.accumulate
                ),
            ));
        }
        Ok(self.batch / self.accumulate)
    }
}

/// Targets of a batch, by loss: class ids (softmax) or labels (the triplet losses: any u32,
/// only equality matters), a [batch × classes] 0/1 matrix (sigmoid), or the teacher's
/// embeddings [batch × dim] (L2 distillation).
#[derive(Clone, Copy)]
pub enum Targets<'a> {
    Classes(&'a [u32]),
    Multi(&'a [f32]),
    Embeddings(&'a [f32]),
}

impl Targets<'_> {
    fn describe(&self) -> &'static str {
        match self {
            Targets::Classes(_) => "class ids or labels",
            Targets::Multi(_) => "a 0/1 label matrix",
            Targets::Embeddings(_) => "teacher embeddings",
        }
    }
}

/// The targets `loss` trains on, for messages.
fn expected_targets(loss: LossKind) -> &'static str {
    match loss {
        LossKind::Softmax { .. } => "class ids (Targets::Classes)",
        LossKind::Sigmoid { .. } => "a 0/1 label matrix (Targets::Multi)",
        LossKind::TripletBatchHard { .. } | LossKind::TripletBatchAll { .. } => "labels (Targets::Classes)",
        LossKind::DistillL2 => "teacher embeddings (Targets::Embeddings)",
    }
}

struct Group {
    hyper: wgpu::Buffer,
    weight_decay: f64,
}

const RING: usize = 4;

mod collective;
mod parallel;
pub use collective::{Alone, Collective};
pub use parallel::{measure_speeds, shares_from_speeds};

/// Adam's moments, laid out like the parameter arena (padding stays zero).
struct ArenaMoments {
    m: wgpu::Buffer,
    v: wgpu::Buffer,
    /// f32 elements of each buffer.
    len: usize,
    /// (parameter name, first element, elements), from the arena.
    members: Vec<(String, usize, usize)>,
}

/// Gradient accumulation over micro-batches, all in one submission: each micro-batch's images
/// and targets are copied from the whole batch's into the step's input tensors, the step runs,
/// its parameter gradients (scaled by 1/N) are added to a sum the optimiser then reads.
struct Accumulation {
    n: usize,
    /// The whole batch's images and targets, micro-batch after micro-batch.
    input: wgpu::Buffer,
    target: wgpu::Buffer,
    /// Bytes of one micro-batch's images and targets.
    input_bytes: u64,
    target_bytes: u64,
    /// The summed gradients, laid out like the parameter arena.
    grads: wgpu::Buffer,
    /// grads = g/N (the first micro-batch) and grads += g/N (the others).
    first: Vec<Dispatch>,
    rest: Vec<Dispatch>,
}

impl Accumulation {
    fn new(exe: &Executable, n: usize, input: TensorId, target: TensorId) -> Result<Accumulation> {
        let gpu = &exe.gpu;
        let grad =
            exe.grad_arena().ok_or_else(|| Error::Invalid("the training graph has no parameter gradients".into()))?;
        let len = (grad.size() / 4) as usize;
        let grads = gpu.zeros("accumulated gradients", len)?;
        let alpha = 1.0 / n as f32;
        let numel = |t: TensorId| exe.graph.tensors[t].numel();
        Ok(Accumulation {
            n,
            input: gpu.zeros("batch images", numel(input) * n)?,
            target: gpu.zeros("batch targets", numel(target) * n)?,
            input_bytes: numel(input) as u64 * 4,
            target_bytes: numel(target) as u64 * 4,
            first: crate::ops::elementwise::scale_add(gpu, grad, &grads, len, alpha, false)?,
            rest: crate::ops::elementwise::scale_add(gpu, grad, &grads, len, alpha, true)?,
            grads,
        })
    }
}

/// Adds to a step's memory what the trainer keeps beside its graph: Adam's two moments per
/// parameter and, accumulating over `n` micro-batches, the gradient sum and the whole batch's
/// images and targets. (As planned: the arena's alignment padding, at most one binding
/// alignment per tensor, is left out.)
fn add_optimizer_memory(r: &mut MemoryReport, g: &Graph, n: usize, input: TensorId, target: TensorId) {
    r.params_and_state += 2 * r.param_grads;
    if n > 1 {
        r.param_grads *= 2;
        let bytes = |t: TensorId| g.tensors[t].numel() as u64 * 4;
        r.io += n as u64 * (bytes(input) + bytes(target));
    }
}

/// The optimiser step: one Adam dispatch per parameter group over its range of the parameter
/// arena, the gradient arena and the moments (or one over the whole arena when every parameter
/// decays alike), and the moments.
fn optimizer_dispatches(
    exe: &Executable,
    model: &Model,
    groups: &[Group],
    grouped: bool,
    grad: &wgpu::Buffer,
) -> Result<(Vec<Dispatch>, ArenaMoments)> {
    let gpu = &exe.gpu;
    let arena = model.store.arena().ok_or_else(|| {
        Error::Invalid("the model's parameters are not in an arena (build models with Model::new)".into())
    })?;
    // Every trainable tensor of the arena must get its gradient from this graph: an arena slot
    // without one would keep a zero gradient and still move under weight decay.
    let params: Vec<&str> =
        exe.graph.tensors.iter().filter(|t| t.role == Role::Param).map(|t| t.name.as_str()).collect();
    for (name, ..) in &arena.members {
        if !params.contains(&name.as_str()) {
            return Err(Error::Invalid(format!("parameter '{name}' gets no gradient from the loss")));
        }
    }
    for (t, tensor) in exe.graph.tensors.iter().enumerate() {
        if tensor.role == Role::Param && !exe.graph.grads.contains_key(&t) {
            return Err(Error::Invalid(format!("parameter '{}' gets no gradient from the loss", tensor.name)));
        }
    }
    let m = gpu.zeros("adam exp_avg", arena.len)?;
    let v = gpu.zeros("adam exp_avg_sq", arena.len)?;
    let ranges: Vec<(usize, std::ops::Range<usize>)> =
        if grouped { arena.groups.iter().cloned().enumerate().collect() } else { vec![(0, 0..arena.len)] };
    let mut optimizer = Vec::new();
    for (group, r) in ranges {
        let bufs = adam::AdamBuffers { hyper: &groups[group].hyper, param: &arena.buf, grad, m: &m, v: &v };
        optimizer.extend(adam::adam_step(gpu, adam::AdamRange { offset: r.start, len: r.len() }, bufs)?);
    }
    Ok((optimizer, ArenaMoments { m, v, len: arena.len, members: arena.members.clone() }))
}

/// Adam's first and second moments of one parameter, by name.
pub type Moments = (String, Vec<f32>, Vec<f32>);

/// One node of a step timed on its own ([`Trainer::profile_nodes`]).
#[derive(Clone, Debug)]
pub struct NodeTime {
    pub name: String,
    pub kind: &'static str,
    /// The op and its input shapes.
    pub op: String,
    pub seconds: f64,
    pub flops: f64,
}

struct Slot {
    buf: wgpu::Buffer,
    /// The step whose loss this slot holds and the mapping result once the device is done.
    pending: Option<(u64, Arc<Mutex<Option<bool>>>)>,
    /// The submission that fills it: waiting for it leaves later steps queued.
    submission: Option<wgpu::SubmissionIndex>,
}

pub struct Trainer {
    pub model: Model,
    pub config: TrainConfig,
    exe: Executable,
    optimizer: Vec<Dispatch>,
    groups: Vec<Group>,
    /// Adam moments, laid out like the parameter arena, kept so training can resume exactly.
    moments: ArenaMoments,
    input: TensorId,
    target: TensorId,
    loss: TensorId,
    logits: TensorId,
    ring: Vec<Slot>,
    accumulation: Option<Accumulation>,
    /// Data parallelism: the replicas on other devices (see [`Trainer::new_data_parallel`]).
    parallel: Option<parallel::Parallel>,
    /// Steps taken (the optimiser's t).
    pub step: u64,
    finished: Vec<(u64, f32)>,
}

impl Trainer {
    /// Builds, plans and allocates the training step for `model`.
    pub fn new(model: Model, config: TrainConfig) -> Result<Trainer> {
        config.optimizer.validate()?;
        let gpu = model.store.gpu.clone();
        let classes = model.net.config.num_classes;
        let weights_needed = if config.loss.class_weighted() { classes } else { 0 };
        if config.class_weights.len() != weights_needed {
            let msg = if weights_needed == 0 {
                format!(
                    "{} weights for the {:?} loss, which weighs no classes: leave class_weights empty",
                    config.class_weights.len(),
                    config.loss
                )
            } else {
                format!("{} weights for a model with {classes} classes", config.class_weights.len())
            };
            return Err(Error::shape("class weights", msg));
        }
        let micro = config.micro_batch()?;
        let mut g = Graph::new();
        let built = model.net.build(&mut g, micro, config.height, config.width, true)?;
        g.keep.push(built.logits);
        let loss_node = g.loss("loss", built.logits, config.loss)?;
        let (loss, target) = (loss_node.loss, loss_node.target);
        autodiff(&mut g)?;
        let exe = Executable::new(gpu.clone(), g, &model.store)?;
        let accumulation = match config.accumulate {
            1 => None,
            n => Some(Accumulation::new(&exe, n, built.input, target)?),
        };
        if let Some(weights) = loss_node.weights {
            exe.write(weights, &config.class_weights)?;
        }

        // One hyper-parameter block per group: 0 decays, 1 does not.
        let opt = &config.optimizer;
        let wd_group = |no_decay: bool| if opt.no_decay_bn_bias && no_decay { 0.0 } else { opt.weight_decay };
        let groups: Vec<Group> = [false, true]
            .iter()
            .map(|&nd| Ok(Group { hyper: adam::hyper_buffer(&gpu)?, weight_decay: wd_group(nd) }))
            .collect::<Result<_>>()?;
        let grad = match &accumulation {
            Some(a) => &a.grads,
            None => exe
                .grad_arena()
                .ok_or_else(|| Error::Invalid("the training graph has no parameter gradients".into()))?,
        };
        let (optimizer, moments) = optimizer_dispatches(&exe, &model, &groups, opt.no_decay_bn_bias, grad)?;
        let ring = (0..RING)
            .map(|i| Slot {
                buf: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("loss readback {i}")),
                    size: 4 * config.accumulate as u64,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                pending: None,
                submission: None,
            })
            .collect();
        Ok(Trainer {
            model,
            config,
            exe,
            optimizer,
            groups,
            moments,
            input: built.input,
            target,
            loss,
            logits: built.logits,
            ring,
            accumulation,
            parallel: None,
            step: 0,
            finished: Vec::new(),
        })
    }

    /// The device memory a training step of `model` with `config` would use, planned without
    /// allocating and without the device's per-binding limit.
    pub fn estimate_memory(model: &Model, config: &TrainConfig) -> Result<MemoryReport> {
        let mut g = Graph::new();
        let built = model.net.build(&mut g, config.micro_batch()?, config.height, config.width, true)?;
        g.keep.push(built.logits);
        let target = g.loss("loss", built.logits, config.loss)?.target;
        autodiff(&mut g)?;
        let mut r = crate::graph::exec::estimate(&g)?;
        add_optimizer_memory(&mut r, &g, config.accumulate, built.input, target);
        Ok(r)
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.exe.gpu
    }

    /// Device memory of the step (plus the optimiser's two moments per parameter, and with
    /// gradient accumulation the gradient sum and the whole batch's inputs).
    pub fn memory(&self) -> MemoryReport {
        let mut r = self.exe.memory();
        add_optimizer_memory(&mut r, &self.exe.graph, self.config.accumulate, self.input, self.target);
        r
    }

    /// Number of dispatches in one step (on each device: with gradient accumulation, the
    /// graph's once per micro-batch and the gradient sums).
    pub fn dispatch_count(&self) -> usize {
        let graph = match &self.accumulation {
            None => self.exe.dispatches.len(),
            Some(a) => a.n * self.exe.dispatches.len() + a.first.len() + (a.n - 1) * a.rest.len(),
        };
        graph + self.optimizer.len()
    }

    /// Queues one training step on `images` ([batch, c, h, w], normalised) and `targets`.
    /// Returns the losses of earlier steps that have finished since the last call. (With
    /// several devices the step waits for the gradient exchange, so its own loss is among them.)
    pub fn step(&mut self, images: &[f32], targets: Targets) -> Result<Vec<(u64, f32)>> {
        if self.parallel.is_some() {
            return self.step_parallel(images, targets);
        }
        self.write_batch(images, targets)?;
        self.step += 1;
        self.write_hyper()?;
        let slot = (self.step as usize) % RING;
        self.collect(Some(slot))?;
        let gpu = self.exe.gpu.clone();
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        self.record_gradients(&mut enc, &self.ring[slot].buf, 0);
        gpu.record(&mut enc, &self.optimizer);
        let submission = gpu.queue.submit([enc.finish()]);
        let done = Arc::new(Mutex::new(None));
        let d2 = done.clone();
        self.ring[slot].buf.map_async(wgpu::MapMode::Read, .., move |r| *d2.lock().unwrap() = Some(r.is_ok()));
        self.ring[slot].pending = Some((self.step, done));
        self.ring[slot].submission = Some(submission);
        // Every micro-batch updates the running statistics once, as in PyTorch.
        self.model.batches_tracked += self.config.accumulate as i64;
        gpu.check_alive()?;
        self.collect(None)?;
        Ok(std::mem::take(&mut self.finished))
    }

    /// Queues the batch's images and targets (checked against the loss) for the next step.
    fn write_batch(&self, images: &[f32], targets: Targets) -> Result<()> {
        self.write(self.input, "images", images)?;
        match (targets, self.config.loss) {
            (Targets::Classes(c), LossKind::Softmax { .. }) => {
                let classes = self.model.net.config.num_classes as u32;
                if let Some(bad) = c.iter().find(|&&v| v >= classes) {
                    return Err(Error::Invalid(format!("target class {bad} is out of range for {classes} classes")));
                }
                self.write(self.target, "targets", c)
            }
            (Targets::Multi(m), LossKind::Sigmoid { .. }) => self.write(self.target, "targets", m),
            (Targets::Classes(c), LossKind::TripletBatchHard { .. } | LossKind::TripletBatchAll { .. }) => {
                self.write(self.target, "targets", c)
            }
            (Targets::Embeddings(t), LossKind::DistillL2) => self.write(self.target, "targets", t),
            (t, loss) => Err(Error::Invalid(format!(
                "targets do not match the loss: got {}, the {loss:?} loss trains on {}",
                t.describe(),
                expected_targets(loss)
            ))),
        }
    }

    /// Queues the optimiser's hyperparameters for step `self.step`.
    fn write_hyper(&self) -> Result<()> {
        let opt = &self.config.optimizer;
        let lr = opt.lr_at(self.step);
        for g in &self.groups {
            let cfg = adam::AdamConfig {
                beta1: opt.beta1,
                beta2: opt.beta2,
                eps: opt.eps,
                weight_decay: g.weight_decay,
                decoupled: opt.kind == OptimizerKind::AdamW,
            };
            let h = adam::hyper_for_step(self.step as u32, lr, &cfg)?;
            adam::write_hyper(&self.exe.gpu, &g.hyper, &h);
        }
        Ok(())
    }

    /// Records the step's forward and backward passes into `enc` (micro-batch after micro-batch
    /// with gradient accumulation, summing their gradients) and copies each micro-batch's loss
    /// to `losses` from byte `offset` on. Afterwards [`Trainer::adam_grad`] holds the gradients.
    fn record_gradients(&self, enc: &mut wgpu::CommandEncoder, losses: &wgpu::Buffer, offset: u64) {
        let gpu = &self.exe.gpu;
        let loss = self.exe.range(self.loss);
        let Some(a) = &self.accumulation else {
            gpu.record(enc, &self.exe.dispatches);
            enc.copy_buffer_to_buffer(loss.buf, loss.offset, losses, offset, 4);
            return;
        };
        let (input, target) = (self.exe.range(self.input), self.exe.range(self.target));
        for k in 0..a.n as u64 {
            enc.copy_buffer_to_buffer(&a.input, k * a.input_bytes, input.buf, input.offset, a.input_bytes);
            enc.copy_buffer_to_buffer(&a.target, k * a.target_bytes, target.buf, target.offset, a.target_bytes);
            let sum = if k == 0 { &a.first } else { &a.rest };
            gpu.record_lists(enc, &[&self.exe.dispatches, sum]);
            enc.copy_buffer_to_buffer(loss.buf, loss.offset, losses, offset + 4 * k, 4);
        }
    }

    /// The gradients the optimiser reads: the step's own, or their sum over micro-batches.
    fn adam_grad(&self) -> &wgpu::Buffer {
        match &self.accumulation {
            Some(a) => &a.grads,
            None => self.exe.grad_arena().expect("a trainer's graph has parameter gradients (checked in new)"),
        }
    }

    /// Queues `data`, the whole batch's values of the step's input tensor `t`: into the tensor,
    /// or with gradient accumulation into the batch buffer the micro-batches are copied from.
    fn write<T: bytemuck::Pod>(&self, t: TensorId, what: &str, data: &[T]) -> Result<()> {
        let Some(a) = &self.accumulation else { return self.exe.write(t, data) };
        let buf = if t == self.input { &a.input } else { &a.target };
        let want = self.exe.graph.tensors[t].numel() * a.n;
        if data.len() != want {
            return Err(Error::shape(
                format!("training {what}"),
                format!("got {} values, a batch of {} needs {want}", data.len(), self.config.batch),
            ));
        }
        self.exe.gpu.write(buf, data);
        Ok(())
    }

    /// Reads the losses that are ready; with `wait_for`, first waits until that slot is free.
    fn collect(&mut self, wait_for: Option<usize>) -> Result<()> {
        let gpu = self.exe.gpu.clone();
        if let Some(s) = wait_for {
            let pending = self.ring[s].pending.is_some();
            if let (true, Some(idx)) = (pending, self.ring[s].submission.take()) {
                let wait = wgpu::PollType::Wait { submission_index: Some(idx), timeout: None };
                gpu.device.poll(wait).map_err(|e| Error::DeviceLost(e.to_string()))?;
                gpu.check_alive()?;
            }
        } else {
            let _ = gpu.device.poll(wgpu::PollType::Poll);
        }
        for slot in &mut self.ring {
            let Some((step, done)) = &slot.pending else { continue };
            let Some(ok) = *done.lock().unwrap() else { continue };
            if !ok {
                return Err(Error::DeviceLost("could not read the loss back".into()));
            }
            // The step's loss: the sum of its micro-batches' losses divided by their number.
            let v = {
                let view = slot.buf.get_mapped_range(..).map_err(|e| Error::DeviceLost(e.to_string()))?;
                let losses: &[f32] = bytemuck::cast_slice(&view);
                match losses {
                    [one] => *one,
                    many => (many.iter().map(|&l| l as f64).sum::<f64>() / many.len() as f64) as f32,
                }
            };
            slot.buf.unmap();
            let step = *step;
            slot.pending = None;
            if !v.is_finite() {
                return Err(Error::NonFiniteLoss { step, value: v });
            }
            self.finished.push((step, v));
        }
        self.finished.sort_by_key(|(s, _)| *s);
        Ok(())
    }

    /// Waits for every queued step and returns the losses not yet returned.
    pub fn finish(&mut self) -> Result<Vec<(u64, f32)>> {
        self.exe.gpu.wait()?;
        self.collect(None)?;
        Ok(std::mem::take(&mut self.finished))
    }

    /// The logits of the last step (train mode), after [`Trainer::finish`]; an embedding
    /// model's normalised embeddings. With gradient accumulation, the last micro-batch's.
    pub fn last_logits(&self) -> Result<Vec<f32>> {
        self.exe.read(self.logits)
    }

    /// The gradient of parameter `name` from the last step (with gradient accumulation, the
    /// sum over its micro-batches).
    pub fn grad(&self, name: &str) -> Result<Vec<f32>> {
        if let Some(a) = &self.accumulation {
            let (_, offset, len) = self
                .moments
                .members
                .iter()
                .find(|(n, ..)| n == name)
                .ok_or_else(|| Error::Invalid(format!("no parameter '{name}'")))?;
            return self.exe.gpu.read_at(&a.grads, *offset as u64 * 4, *len);
        }
        let t = (0..self.exe.graph.tensors.len())
            .find(|&t| self.exe.graph.tensors[t].name == name && self.exe.graph.tensors[t].role == Role::Param)
            .ok_or_else(|| Error::Invalid(format!("no parameter '{name}'")))?;
        self.exe.read(self.exe.graph.grads[&t])
    }

    /// Time per kernel family over one step, each node submitted and timed on its own:
    /// (kind, seconds, flops), slowest first. Changes the weights like a step does.
    pub fn profile(&mut self) -> Result<Vec<(String, f64, f64)>> {
        self.exe.gpu.wait()?;
        let mut by_kind: Vec<(String, f64, f64)> = Vec::new();
        let mut add = |kind: &str, secs: f64, flops: f64| match by_kind.iter_mut().find(|(k, ..)| k == kind) {
            Some(e) => {
                e.1 += secs;
                e.2 += flops;
            }
            None => by_kind.push((kind.to_string(), secs, flops)),
        };
        for (i, secs) in self.exe.profile()? {
            let n = &self.exe.graph.nodes[i];
            add(n.op.kind(), secs, self.exe.graph.flops(n));
        }
        let t = std::time::Instant::now();
        self.exe.gpu.run(&self.optimizer)?;
        add("adam", t.elapsed().as_secs_f64(), 0.0);
        by_kind.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(by_kind)
    }

    /// Every node of the step timed on its own, the best of `reps` submissions each, in graph
    /// order: (node name, kind, op and input shapes, seconds, flops). Changes the weights'
    /// gradients (accumulating ones grow) like extra steps would.
    pub fn profile_nodes(&mut self, reps: usize) -> Result<Vec<NodeTime>> {
        self.exe.gpu.wait()?;
        let mut best = vec![f64::INFINITY; self.exe.graph.nodes.len()];
        for _ in 0..reps.max(1) {
            for (i, secs) in self.exe.profile()? {
                best[i] = best[i].min(secs);
            }
        }
        let g = &self.exe.graph;
        Ok(g.nodes
            .iter()
            .zip(best)
            .map(|(n, secs)| {
                let shapes: Vec<String> = n.ins.iter().map(|&t| format!("{:?}", g.tensors[t].shape)).collect();
                let op = format!("{:?} {}", n.op, shapes.join(" "));
                NodeTime { name: n.name.clone(), kind: n.op.kind(), op, seconds: secs, flops: g.flops(n) }
            })
            .collect())
    }

    /// The optimiser's moments by parameter name, for checkpoints.
    pub fn optimizer_state(&self) -> Result<Vec<Moments>> {
        let gpu = &self.exe.gpu;
        let (m, v) =
            (gpu.read::<f32>(&self.moments.m, self.moments.len)?, gpu.read::<f32>(&self.moments.v, self.moments.len)?);
        Ok(self
            .moments
            .members
            .iter()
            .map(|(n, o, len)| (n.clone(), m[*o..o + len].to_vec(), v[*o..o + len].to_vec()))
            .collect())
    }

    /// The optimiser state as a state dict: moments as `<param>.exp_avg` / `.exp_avg_sq`, the
    /// step and the optimiser's settings in the metadata.
    pub fn optimizer_state_dict(&self) -> Result<super::checkpoint::StateDict> {
        let mut sd = super::checkpoint::StateDict::default();
        for (name, m, v) in self.optimizer_state()? {
            let n = m.len();
            sd.tensors.insert(format!("{name}.exp_avg"), (vec![n], m));
            sd.tensors.insert(format!("{name}.exp_avg_sq"), (vec![n], v));
        }
        sd.metadata.insert("step".into(), self.step.to_string());
        sd.metadata.insert("optimizer".into(), serde_json::to_string(&self.config.optimizer).unwrap_or_default());
        Ok(sd)
    }

    /// Writes [`Trainer::optimizer_state_dict`] to a safetensors file, atomically.
    pub fn save_optimizer(&self, path: &std::path::Path) -> Result<()> {
        self.optimizer_state_dict()?.save(path)
    }

    /// Restores what [`Trainer::save_optimizer`] wrote, so training resumes exactly.
    pub fn load_optimizer(&mut self, path: &std::path::Path) -> Result<()> {
        self.load_optimizer_dict(&super::checkpoint::StateDict::load(path)?, path)
    }

    /// [`Trainer::load_optimizer`] from a state dict already read from `path` (named in errors).
    pub fn load_optimizer_dict(&mut self, sd: &super::checkpoint::StateDict, path: &std::path::Path) -> Result<()> {
        let step: u64 = sd
            .metadata
            .get("step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::file(path, "not a tailor optimiser state (no step in its metadata)"))?;
        let mut state = Vec::new();
        for (name, ..) in &self.moments.members {
            let get = |suffix: &str| {
                sd.tensors.get(&format!("{name}.{suffix}")).map(|(_, v)| v.clone()).ok_or_else(|| {
                    Error::file(path, format!("no '{name}.{suffix}': the optimiser state is for another model"))
                })
            };
            state.push((name.clone(), get("exp_avg")?, get("exp_avg_sq")?));
        }
        self.load_optimizer_state(step, &state)
    }

    /// Restores the optimiser's moments and step count.
    pub fn load_optimizer_state(&mut self, step: u64, state: &[Moments]) -> Result<()> {
        for (name, m, v) in state {
            let (_, offset, len) = self
                .moments
                .members
                .iter()
                .find(|(n, ..)| n == name)
                .ok_or_else(|| Error::Invalid(format!("optimiser state for unknown parameter '{name}'")))?;
            if m.len() != *len || v.len() != *len {
                return Err(Error::shape(
                    "optimiser state",
                    format!("'{name}' has {} values, expected {len}", m.len()),
                ));
            }
            self.exe.gpu.write_at(&self.moments.m, *offset as u64 * 4, m);
            self.exe.gpu.write_at(&self.moments.v, *offset as u64 * 4, v);
        }
        self.step = step;
        // Replicas on other devices take the same steps from the same state.
        for peer in self.peers_mut() {
            peer.load_optimizer_state(step, state)?;
        }
        Ok(())
    }
}
