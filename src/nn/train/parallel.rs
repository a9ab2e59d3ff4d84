//! Data parallelism over several devices in one process: one replica of the model per device,
//! each taking its share of every batch; their gradients are averaged and every replica takes
//! the same optimiser step, so the weights stay identical.
//!
//! wgpu has no copies between devices, so the exchange goes through the host: each replica's
//! submission ends by copying its gradients (and losses) into a mappable buffer; the host waits
//! for all of them, forms the share-weighted average in f32, in replica order, with the same
//! arithmetic as gradient accumulation on one device (`g = w₀·g₀`, then `g = w_r·g_r + g`), and
//! writes it back to every replica before its optimiser dispatches. With equal shares of a
//! power-of-two count of devices the weights w_r are exact, and N replicas compute bit for bit
//! what `--accumulate N` computes on one device.
//!
//! Batch-norm running statistics are each replica's own (a replica's forward sees only its
//! share), as in PyTorch's DistributedDataParallel, and checkpoints hold the first replica's.

use std::sync::Arc;
use std::time::Instant;

use super::{Collective, Targets, TrainConfig, Trainer};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::densenet::DenseNetConfig;
use crate::nn::model::Model;

pub(super) struct Parallel {
    /// The replicas on the other devices.
    peers: Vec<Trainer>,
    /// Images of each batch per replica, the primary's first.
    shares: Vec<usize>,
    /// One mappable buffer per replica: its gradients, then its micro-batches' losses.
    staging: Vec<wgpu::Buffer>,
    /// Seconds spent on the exchange once every replica's gradients are ready: reading them,
    /// averaging them on the host (and over the processes), writing them back.
    exchange_seconds: f64,
    /// Other processes training the same model (MPI): each takes its rank's rows of every
    /// batch, and the gradients are summed over the processes too.
    collective: Option<Arc<dyn Collective>>,
}

/// Images per device for a batch of `batch`, in proportion to `speeds` (images per second, any
/// unit): each share a multiple of `accumulate` (every device cuts its share into that many
/// micro-batches), at least `accumulate`, and together `batch`. The largest remainders get
/// what rounding leaves.
pub fn shares_from_speeds(batch: usize, accumulate: usize, speeds: &[f64]) -> Result<Vec<usize>> {
    let n = speeds.len();
    if n == 0 || accumulate == 0 || batch % accumulate != 0 || batch / accumulate < n {
        return Err(Error::Invalid(format!(
            "a batch of {batch} in steps of {accumulate} cannot give each of {n} devices a share: give a larger \
             batch size"
        )));
    }
    if speeds.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::Invalid(format!("device speeds must be positive, got {speeds:?}")));
    }
    // Units of `accumulate` images; one each first, the rest by speed.
    let units = batch / accumulate;
    let spare = units - n;
    let total: f64 = speeds.iter().sum();
    let exact: Vec<f64> = speeds.iter().map(|s| s / total * spare as f64).collect();
    let mut got: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut left = spare - got.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        got[i] += 1;
        left -= 1;
    }
    Ok(got.into_iter().map(|u| (u + 1) * accumulate).collect())
}

/// Images per second of each device for a training step's forward and backward passes (no
/// optimiser step) on one micro-batch of `config` (`config.batch / config.accumulate` images)
/// of a fresh model like `net`: a throwaway copy per device, timed after one warm-up pass.
/// (What [`shares_from_speeds`] shares batches by on devices of different models.)
pub fn measure_speeds(net: &DenseNetConfig, config: &TrainConfig, gpus: &[Arc<Gpu>]) -> Result<Vec<f64>> {
    let micro = config.micro_batch()?;
    let mut speeds = Vec::with_capacity(gpus.len());
    for gpu in gpus {
        let model = Model::new(gpu.clone(), net.clone(), 0)?;
        let t = Trainer::new(model, TrainConfig { batch: micro, accumulate: 1, ..config.clone() })?;
        t.exe.run()?;
        let start = Instant::now();
        t.exe.run()?;
        speeds.push(micro as f64 / start.elapsed().as_secs_f64().max(1e-9));
    }
    Ok(speeds)
}

impl Trainer {
    /// A trainer with one replica of `model` on its own device and one on each of `peers`:
    /// replica r takes `shares[r]` images of every batch (`config.batch` = their sum, each a
    /// multiple of `config.accumulate`). The peers' models start as copies of `model` (weights,
    /// running statistics and counters).
    pub fn new_data_parallel(
        model: Model,
        config: TrainConfig,
        peers: &[Arc<Gpu>],
        shares: &[usize],
    ) -> Result<Trainer> {
        if shares.len() != peers.len() + 1 {
            return Err(Error::Invalid(format!(
                "{} device shares for {} devices: give one per device",
                shares.len(),
                peers.len() + 1
            )));
        }
        let sum: usize = shares.iter().sum();
        let acc = config.accumulate.max(1);
        if sum != config.batch || shares.iter().any(|&s| s == 0 || s % acc != 0) {
            return Err(Error::Invalid(format!(
                "device shares {shares:?} must be positive multiples of the {acc} micro-batches per step and sum to \
                 the batch of {}",
                config.batch
            )));
        }
        if peers.is_empty() {
            return Trainer::new(model, config);
        }
        let sd = model.state_dict()?;
        let mut replicas = Vec::with_capacity(peers.len());
        for (gpu, &share) in peers.iter().zip(&shares[1..]) {
            let mut m = Model::new(gpu.clone(), model.net.config.clone(), 0)?;
            m.load_state_dict(&sd)?;
            replicas.push(Trainer::new(m, TrainConfig { batch: share, ..config.clone() })?);
        }
        let mut primary = Trainer::new(model, TrainConfig { batch: shares[0], ..config })?;
        let staging = std::iter::once(&primary)
            .chain(&replicas)
            .map(|t| {
                let bytes = t.adam_grad().size() + 4 * acc as u64;
                t.exe.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gradient exchange"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .collect();
        primary.parallel = Some(Parallel {
            peers: replicas,
            shares: shares.to_vec(),
            staging,
            exchange_seconds: 0.0,
            collective: None,
        });
        Ok(primary)
    }

    /// Joins processes that train the same model (`c`, e.g. MPI ranks): from now on every step
    /// trains a batch `c.size()` times this trainer's, of which this process trains its rank's
    /// rows (rank r: rows r·b to (r+1)·b − 1 for a local batch of b), and the gradients and
    /// losses are summed over the processes before the optimiser step. A step takes the whole
    /// batch, or just this process's rows of it (what a loader sharded by rank serves:
    /// `data::Shard`, which saves decoding the others'). Every process must start from the
    /// same weights and optimiser state.
    pub fn join(&mut self, c: Arc<dyn Collective>) -> Result<()> {
        if self.parallel.is_none() {
            let acc = self.config.accumulate.max(1);
            let staging = self.exe.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gradient exchange"),
                size: self.adam_grad().size() + 4 * acc as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.parallel = Some(Parallel {
                peers: Vec::new(),
                shares: vec![self.config.batch],
                staging: vec![staging],
                exchange_seconds: 0.0,
                collective: None,
            });
        }
        if let Some(p) = &mut self.parallel {
            p.collective = Some(c);
        }
        Ok(())
    }

    /// The processes this trainer trains with ([`Trainer::join`]), if any.
    pub fn collective(&self) -> Option<&Arc<dyn Collective>> {
        self.parallel.as_ref().and_then(|p| p.collective.as_ref())
    }

    /// Images a step takes: this process's devices' shares, times the processes.
    pub fn global_batch(&self) -> usize {
        let local: usize = self.shares().iter().sum();
        local * self.collective().map_or(1, |c| c.size())
    }

    /// Replicas the step runs on: devices in this process times processes (1 without data
    /// parallelism).
    pub fn replicas(&self) -> usize {
        let local = self.parallel.as_ref().map_or(1, |p| p.peers.len() + 1);
        local * self.collective().map_or(1, |c| c.size())
    }

    /// Images of each batch per device, the primary's first.
    pub fn shares(&self) -> Vec<usize> {
        self.parallel.as_ref().map_or(vec![self.config.batch], |p| p.shares.clone())
    }

    /// Seconds the steps so far spent exchanging gradients between devices (0 on one device).
    pub fn exchange_seconds(&self) -> f64 {
        self.parallel.as_ref().map_or(0.0, |p| p.exchange_seconds)
    }

    /// A checksum of the trainable weights of each replica (FNV-1a over their bits).
    pub fn replica_checksums(&self) -> Result<Vec<u64>> {
        let mut out = vec![weights_checksum(self)?];
        if let Some(p) = &self.parallel {
            for t in &p.peers {
                out.push(weights_checksum(t)?);
            }
        }
        Ok(out)
    }

    /// Checks that every replica, in this process and the others it trains with, holds the same
    /// weights; returns their checksum.
    pub fn check_replicas(&self) -> Result<u64> {
        let mut sums = self.replica_checksums()?;
        if let Some(c) = self.collective() {
            sums.extend(c.gather_u64(sums[0])?);
        }
        if sums.iter().any(|&s| s != sums[0]) {
            return Err(Error::ReplicasDiverged { checksums: sums });
        }
        Ok(sums[0])
    }

    /// The peers, for the optimiser state they share with the primary.
    pub(super) fn peers_mut(&mut self) -> impl Iterator<Item = &mut Trainer> {
        self.parallel.iter_mut().flat_map(|p| p.peers.iter_mut())
    }

    pub(super) fn step_parallel(&mut self, images: &[f32], targets: Targets) -> Result<Vec<(u64, f32)>> {
        let mut p = self.parallel.take().expect("called with parallel set");
        let r = step_replicas(self, &mut p, images, targets);
        self.parallel = Some(p);
        r?;
        self.collect(None)?;
        Ok(std::mem::take(&mut self.finished))
    }
}

fn weights_checksum(t: &Trainer) -> Result<u64> {
    let arena = t.model.store.arena().ok_or_else(|| Error::Invalid("the model has no parameter arena".into()))?;
    let words: Vec<u32> = t.exe.gpu.read(&arena.buf, arena.len)?;
    Ok(words.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &w| (h ^ w as u64).wrapping_mul(0x0100_0000_01b3)))
}

/// Rows `rows` of a batch's targets, `per` values per row.
fn target_rows<'a>(t: Targets<'a>, rows: std::ops::Range<usize>, per: usize) -> Result<Targets<'a>> {
    fn cut<'a, T>(v: &'a [T], rows: &std::ops::Range<usize>, per: usize) -> Result<&'a [T]> {
        v.get(rows.start * per..rows.end * per).ok_or_else(|| {
            Error::shape("training targets", format!("{} values do not cover rows {rows:?} of {per}", v.len()))
        })
    }
    Ok(match t {
        Targets::Classes(c) => Targets::Classes(cut(c, &rows, per)?),
        Targets::Multi(m) => Targets::Multi(cut(m, &rows, per)?),
        Targets::Embeddings(e) => Targets::Embeddings(cut(e, &rows, per)?),
    })
}

fn step_replicas(primary: &mut Trainer, p: &mut Parallel, images: &[f32], targets: Targets) -> Result<()> {
    let batch: usize = p.shares.iter().sum();
    let (rank, ranks) = p.collective.as_ref().map_or((0, 1), |c| (c.rank(), c.size()));
    let micro = primary.config.micro_batch()?;
    let per_image = primary.exe.graph.tensors[primary.input].numel() / micro;
    let per_target = primary.exe.graph.tensors[primary.target].numel() / micro;
    let target_len = match targets {
        Targets::Classes(c) => c.len(),
        Targets::Multi(m) => m.len(),
        Targets::Embeddings(e) => e.len(),
    };
    let global = batch * ranks;
    // The whole batch, or this process's rows of it.
    let given = if images.len() == global * per_image && target_len == global * per_target {
        global
    } else if images.len() == batch * per_image && target_len == batch * per_target {
        batch
    } else {
        return Err(Error::shape(
            "training batch",
            format!(
                "{} image values and {target_len} target values: a batch of {global} needs {} and {} (this \
                 process's {batch} rows of it: {} and {})",
                images.len(),
                global * per_image,
                global * per_target,
                batch * per_image,
                batch * per_target
            ),
        ));
    };
    let mine = if given == global { rank * batch..(rank + 1) * batch } else { 0..batch };
    let images = &images[mine.start * per_image..mine.end * per_image];
    let targets = target_rows(targets, mine, per_target)?;
    let acc = primary.config.accumulate.max(1) as u64;
    let mut replicas: Vec<&mut Trainer> = std::iter::once(primary).chain(p.peers.iter_mut()).collect();
    // Each replica's forward and backward on its rows, ending with its gradients and losses in
    // its staging buffer.
    let mut start = 0;
    let mut mapped = Vec::new();
    for ((t, &share), staging) in replicas.iter_mut().zip(&p.shares).zip(&p.staging) {
        let rows = start..start + share;
        start += share;
        t.write_batch(&images[rows.start * per_image..rows.end * per_image], target_rows(targets, rows, per_target)?)?;
        t.step += 1;
        t.write_hyper()?;
        let gpu = t.exe.gpu.clone();
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let grad_bytes = t.adam_grad().size();
        t.record_gradients(&mut enc, staging, grad_bytes);
        enc.copy_buffer_to_buffer(t.adam_grad(), 0, staging, 0, grad_bytes);
        gpu.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r.is_ok());
        });
        mapped.push(rx);
    }
    // The exchange (what overlapping it with compute could hide) starts when every device is done.
    for t in &replicas {
        t.exe.gpu.wait()?;
    }
    let started = Instant::now();
    let mut sum: Vec<f32> = Vec::new();
    let mut loss = 0.0f64;
    for (r, ((_, staging), rx)) in replicas.iter().zip(&p.staging).zip(mapped).enumerate() {
        if rx.recv() != Ok(true) {
            return Err(Error::DeviceLost(format!("could not read replica {r}'s gradients back")));
        }
        let w = p.shares[r] as f64 / batch as f64;
        {
            let view = staging.get_mapped_range(..).map_err(|e| Error::DeviceLost(e.to_string()))?;
            let values: &[f32] = bytemuck::cast_slice(&view);
            let (grads, losses) = values.split_at(values.len() - acc as usize);
            let wf = w as f32;
            if r == 0 {
                sum = grads.iter().map(|&g| wf * g).collect();
            } else {
                sum.iter_mut().zip(grads).for_each(|(s, &g)| *s += wf * g);
            }
            loss += w * losses.iter().map(|&l| l as f64).sum::<f64>() / acc as f64;
        }
        staging.unmap();
    }
    // Over the processes: each contributes its average times 1/size (exact for a power-of-two
    // count), so two processes sum what two micro-batches on one device sum.
    if let Some(c) = &p.collective {
        let scale = 1.0 / c.size() as f32;
        sum.iter_mut().for_each(|g| *g *= scale);
        let mut l = [loss / c.size() as f64];
        c.sum_f32(&mut sum)?;
        c.sum_f64(&mut l)?;
        loss = l[0];
    }
    // The averaged gradients into every replica, then the same optimiser step everywhere.
    for t in replicas.iter_mut() {
        let gpu = t.exe.gpu.clone();
        gpu.write(t.adam_grad(), &sum);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        gpu.record(&mut enc, &t.optimizer);
        gpu.queue.submit([enc.finish()]);
        t.model.batches_tracked += acc as i64;
        gpu.check_alive()?;
    }
    p.exchange_seconds += started.elapsed().as_secs_f64();
    let step = replicas[0].step;
    let loss = loss as f32;
    if !loss.is_finite() {
        return Err(Error::NonFiniteLoss { step, value: loss });
    }
    replicas[0].finished.push((step, loss));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_speeds_in_whole_micro_batches() {
        assert_eq!(shares_from_speeds(64, 1, &[1.0, 1.0]).unwrap(), [32, 32]);
        assert_eq!(shares_from_speeds(64, 8, &[3.0, 1.0]).unwrap(), [48, 16]);
        assert_eq!(shares_from_speeds(10, 1, &[1.0, 1.0, 1.0]).unwrap(), [4, 3, 3]);
        // A very slow device still gets one micro-batch.
        assert_eq!(shares_from_speeds(16, 4, &[100.0, 0.001]).unwrap(), [12, 4]);
        let s = shares_from_speeds(96, 2, &[2.7, 1.1, 0.4]).unwrap();
        assert_eq!(s.iter().sum::<usize>(), 96);
        assert!(s.iter().all(|v| v % 2 == 0 && *v >= 2), "{s:?}");
        assert!(shares_from_speeds(4, 4, &[1.0, 1.0]).is_err());
        assert!(shares_from_speeds(8, 1, &[1.0, f64::NAN]).is_err());
    }
}
