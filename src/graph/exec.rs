//! The executor: turns a planned graph into buffers and dispatches, once, and replays them.
//! A run is recorded into one compute pass and one submission; nothing is read back inside it.
//!
//! Building one has three phases: planning (buffers), tuning (the convolutions' tiles, all of
//! them at once through `ops::tune`, on this thread) and lowering (dispatches, on several
//! threads, which only read the tile table the tuning phase made).

use std::sync::Arc;

use super::plan::{plan, storage, Plan, Slot};
use super::store::Store;
use super::{Graph, Node, Role, TensorId};
use crate::error::{Error, Result};
use crate::gpu::{BufRange, Dispatch, Gpu};
use crate::ops::conv::{Conv2dShape, Pass, TileTable};
use crate::ops::{tune, Act};

/// A graph with every buffer allocated and every dispatch built.
pub struct Executable {
    pub gpu: Arc<Gpu>,
    pub graph: Graph,
    pub plan: Plan,
    /// The buffer and byte offset of each storage tensor (None for views and unused tensors).
    bufs: Vec<Option<(wgpu::Buffer, u64)>>,
    /// The parameter gradients, laid out like the store's parameter arena (if it has one).
    grad_arena: Option<wgpu::Buffer>,
    pub dispatches: Vec<Dispatch>,
    /// Index of the first dispatch of each node, for per-node reports.
    pub node_starts: Vec<usize>,
    pub scratch_bytes: u64,
    /// The convolutions' tiles the dispatches were built with.
    pub tiles: TileTable,
}

/// Device memory an executable uses, by kind, in bytes.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MemoryReport {
    pub params_and_state: u64,
    pub param_grads: u64,
    pub activations_pool: u64,
    pub activations_unshared: u64,
    pub io: u64,
    pub scratch: u64,
    /// Buffers kernels keep for themselves (zero biases, transposed weights): known once the
    /// step is built, 0 in [`estimate`].
    pub kernel_buffers: u64,
}

impl MemoryReport {
    pub fn total(&self) -> u64 {
        self.params_and_state + self.param_grads + self.activations_pool + self.io + self.scratch + self.kernel_buffers
    }
}

pub fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

impl std::fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{} total: parameters and statistics {}, parameter gradients {}, activations {} (shared pool; {} unshared), inputs/outputs {}, scratch {}",
            mib(self.total()),
            mib(self.params_and_state),
            mib(self.param_grads),
            mib(self.activations_pool),
            mib(self.activations_unshared),
            mib(self.io),
            mib(self.scratch)
        )?;
        if self.kernel_buffers > 0 {
            write!(f, ", kernel buffers {}", mib(self.kernel_buffers))?;
        }
        Ok(())
    }
}

fn nchw(s: &[usize]) -> [usize; 4] {
    match *s {
        [n, c, h, w] => [n, c, h, w],
        [n, c] => [n, c, 1, 1],
        _ => [1, s.iter().product(), 1, 1],
    }
}

/// The binding limits batch chunks respect on `gpu`.
fn limits(gpu: &Gpu) -> lower::Limits {
    lower::Limits { binding: gpu.max_binding(), align: gpu.binding_alignment() }
}

/// Every (pass, shape) the convolution kernels of `graph` are built for on `gpu`, once each,
/// in node order: a shape per batch chunk for the forward and backward data, the whole batch
/// for the backward weight. What the tuning phase tunes, and the keys lowering looks up.
pub fn conv_passes(gpu: &Gpu, graph: &Graph) -> Result<Vec<(Pass, Conv2dShape)>> {
    conv_passes_within(graph, limits(gpu))
}

fn conv_passes_within(graph: &Graph, limits: lower::Limits) -> Result<Vec<(Pass, Conv2dShape)>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for n in &graph.nodes {
        out.extend(lower::conv_passes(graph, n, limits)?.into_iter().filter(|p| seen.insert(*p)));
    }
    Ok(out)
}

impl Executable {
    /// Plans `graph`, allocates its buffers (parameters and statistics come from `store`),
    /// chooses its convolutions' tiles ([`tune::table`]: cached, timed now or the heuristic)
    /// and builds every dispatch.
    pub fn new(gpu: Arc<Gpu>, graph: Graph, store: &Store) -> Result<Executable> {
        Executable::build(gpu, graph, store, None)
    }

    /// [`Executable::new`] with the convolutions' tiles given: the tuner is not consulted
    /// (shapes `tiles` does not name get the heuristic).
    pub fn with_tiles(gpu: Arc<Gpu>, graph: Graph, store: &Store, tiles: TileTable) -> Result<Executable> {
        Executable::build(gpu, graph, store, Some(tiles))
    }

    fn build(gpu: Arc<Gpu>, graph: Graph, store: &Store, tiles: Option<TileTable>) -> Result<Executable> {
        let plan = plan(&graph, gpu.max_binding(), gpu.max_buffer())?;
        gpu.check_host_memory("the activation buffers", plan.pool_bytes() + plan.own_total())?;
        let mut pool = Vec::with_capacity(plan.pool.len());
        for (i, &bytes) in plan.pool.iter().enumerate() {
            pool.push(gpu.zeros(&format!("pool{i}"), (bytes / 4) as usize)?);
        }
        // Parameter gradients mirror the parameter arena: the same offsets in one buffer, so
        // that the optimiser updates a whole group with one dispatch over one range.
        let param_of: std::collections::HashMap<TensorId, TensorId> =
            graph.grads.iter().filter(|&(&p, _)| graph.tensors[p].role == Role::Param).map(|(&p, &g)| (g, p)).collect();
        let arena = store.arena().filter(|_| !param_of.is_empty());
        let grad_arena = arena.map(|a| gpu.zeros("parameter gradients", a.len)).transpose()?;
        let in_arena = |t: TensorId| {
            let p = param_of.get(&t)?;
            let (offset, _) = arena?.find(&graph.tensors[*p].name)?;
            Some((grad_arena.clone()?, offset as u64 * 4))
        };
        let mut bufs: Vec<Option<(wgpu::Buffer, u64)>> = vec![None; graph.tensors.len()];
        for (t, tensor) in graph.tensors.iter().enumerate() {
            bufs[t] = match plan.slots[t] {
                Slot::View => None,
                Slot::Pool(b) => Some((pool[b].clone(), 0)),
                Slot::Own => match tensor.role {
                    Role::Param | Role::State => {
                        let e = store.expect(&tensor.name, &tensor.shape)?;
                        Some((e.buf.clone(), e.offset))
                    }
                    Role::ParamGrad if in_arena(t).is_some() => in_arena(t),
                    Role::Activation | Role::Saved | Role::Grad if !graph.keep.contains(&t) => None, // never used
                    _ => Some((gpu.zeros(&tensor.name, tensor.numel())?, 0)),
                },
            };
        }
        let limits = limits(&gpu);
        let scratch_len = scratch_len(&graph, limits)?;
        let scratch = gpu.zeros("scratch", scratch_len)?;
        // The tuning phase: everything the tuner does (cache, timing, environment) happens
        // here, before lowering, which then only reads the table.
        let tiles = match tiles {
            Some(t) => t,
            None => tune::table(&gpu, conv_passes_within(&graph, limits)?),
        };
        let mut exe = Executable {
            gpu,
            graph,
            plan,
            bufs,
            grad_arena,
            dispatches: Vec::new(),
            node_starts: Vec::new(),
            scratch_bytes: (scratch_len * 4) as u64,
            tiles,
        };
        let mut dispatches = Vec::new();
        for d in exe.lower_all(&scratch, limits) {
            exe.node_starts.push(dispatches.len());
            dispatches.extend(d?);
        }
        exe.dispatches = dispatches;
        exe.gpu.precompile(&exe.dispatches);
        Ok(exe)
    }

    /// Every node's dispatches, in node order. Nodes are lowered on several threads because
    /// building a dispatch may compile its pipeline, which is most of a cold start on a
    /// software driver; the device and its pipeline cache are shared between the threads, and
    /// the tile table is only read.
    fn lower_all(&self, scratch: &wgpu::Buffer, limits: lower::Limits) -> Vec<Result<Vec<Dispatch>>> {
        let nodes = &self.graph.nodes;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
        let lower_one = |node: &Node| {
            lower::lower(self, node, scratch, limits).map_err(|e| match e {
                Error::Shape { op, msg } => Error::Shape { op: format!("{op} (node '{}')", node.name), msg },
                other => other,
            })
        };
        if threads == 1 || nodes.len() < 2 {
            return nodes.iter().map(lower_one).collect();
        }
        // Node i goes to thread i % threads: neighbouring nodes (often the same kernels with
        // different shapes) are spread over the threads.
        let mut out: Vec<Option<Result<Vec<Dispatch>>>> = (0..nodes.len()).map(|_| None).collect();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let lower_one = &lower_one;
                    scope.spawn(move || {
                        nodes
                            .iter()
                            .enumerate()
                            .skip(t)
                            .step_by(threads)
                            .map(|(i, n)| (i, lower_one(n)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for w in workers {
                match w.join() {
                    Ok(done) => done.into_iter().for_each(|(i, r)| out[i] = Some(r)),
                    Err(p) => std::panic::resume_unwind(p),
                }
            }
        });
        out.into_iter().map(|r| r.unwrap_or_else(|| Err(Error::Invalid("a node was not lowered".into())))).collect()
    }

    /// The buffer holding tensor `t` (its base's for a view), which may hold other tensors
    /// too: [`Executable::range`] says where in it.
    pub fn buffer(&self, t: TensorId) -> &wgpu::Buffer {
        &self.bufs[storage(&self.graph, t)].as_ref().expect("tensor has storage").0
    }

    /// The bytes of tensor `t`'s storage (its base's for a view) within its buffer, which may be
    /// a larger pool buffer or an arena: what a dispatch binds.
    pub fn range(&self, t: TensorId) -> BufRange<'_> {
        let s = storage(&self.graph, t);
        let (buf, offset) = self.bufs[s].as_ref().expect("tensor has storage");
        BufRange { buf, offset: *offset, size: (self.graph.tensors[s].numel().max(1) * 4) as u64 }
    }

    /// The parameter gradients' buffer, laid out like the store's parameter arena (None when
    /// the store has no arena or the graph computes no parameter gradients).
    pub fn grad_arena(&self) -> Option<&wgpu::Buffer> {
        self.grad_arena.as_ref()
    }

    /// Tensor `t` as an NCHW channel view.
    fn act(&self, t: TensorId) -> Act<'_> {
        let tensor = &self.graph.tensors[t];
        match tensor.view {
            Some(v) => Act::slice(self.range(t), v.c_off, self.graph.tensors[v.base].shape[1]),
            None => Act::whole(self.range(t), nchw(&tensor.shape)[1]),
        }
    }

    /// Device memory by kind.
    pub fn memory(&self) -> MemoryReport {
        let kernel_buffers = self.dispatches.iter().map(|d| d.owned_bytes).sum();
        MemoryReport { kernel_buffers, ..memory_report(&self.graph, &self.plan, self.scratch_bytes) }
    }

    /// Records every dispatch into `enc` as one compute pass.
    pub fn record(&self, enc: &mut wgpu::CommandEncoder) {
        self.gpu.record(enc, &self.dispatches);
    }

    /// Runs every node in a submission of its own and times it (wall clock, including the
    /// submission overhead): (node index, seconds).
    pub fn profile(&self) -> Result<Vec<(usize, f64)>> {
        let mut out = Vec::with_capacity(self.graph.nodes.len());
        for i in 0..self.graph.nodes.len() {
            let end = self.node_starts.get(i + 1).copied().unwrap_or(self.dispatches.len());
            let d = &self.dispatches[self.node_starts[i]..end];
            let t = std::time::Instant::now();
            self.gpu.run(d)?;
            out.push((i, t.elapsed().as_secs_f64()));
        }
        Ok(out)
    }

    /// Runs the whole graph once and waits.
    pub fn run(&self) -> Result<()> {
        self.gpu.run(&self.dispatches)
    }

    /// Reads tensor `t` (a whole tensor, not a view) back to the host.
    pub fn read(&self, t: TensorId) -> Result<Vec<f32>> {
        if self.graph.tensors[t].view.is_some() {
            return Err(Error::Invalid(format!("'{}' is a view; read its base", self.graph.tensors[t].name)));
        }
        let r = self.range(t);
        self.gpu.read_at(r.buf, r.offset, self.graph.tensors[t].numel())
    }

    /// Queues an upload of `data` into tensor `t` (takes effect before the next submission).
    pub fn write<T: bytemuck::Pod>(&self, t: TensorId, data: &[T]) -> Result<()> {
        let tensor = &self.graph.tensors[t];
        if data.len() != tensor.numel() {
            return Err(Error::shape(
                format!("input '{}'", tensor.name),
                format!("got {} values, the graph expects {:?} = {}", data.len(), tensor.shape, tensor.numel()),
            ));
        }
        let r = self.range(t);
        self.gpu.write_at(r.buf, r.offset, data);
        Ok(())
    }
}

/// Device memory of a planned graph, by kind.
pub fn memory_report(graph: &Graph, plan: &Plan, scratch_bytes: u64) -> MemoryReport {
    let mut r = MemoryReport {
        activations_pool: plan.pool_bytes(),
        activations_unshared: super::plan::unshared_bytes(graph),
        scratch: scratch_bytes,
        ..Default::default()
    };
    for &(role, b) in &plan.own_bytes {
        match role {
            Role::Param | Role::State => r.params_and_state += b,
            Role::ParamGrad => r.param_grads += b,
            Role::Activation | Role::Saved | Role::Grad => r.activations_pool += b,
            _ => r.io += b,
        }
    }
    r
}

/// The memory `graph` would need, planned without allocating anything and without the
/// device's per-binding limit: what a device with large enough bindings would use.
pub fn estimate(graph: &Graph) -> Result<MemoryReport> {
    let plan = plan(graph, u64::MAX, u64::MAX)?;
    let scratch = scratch_len(graph, lower::Limits { binding: u64::MAX, align: 1 })? as u64 * 4;
    Ok(memory_report(graph, &plan, scratch))
}

/// f32 elements of the scratch buffer every node shares: the most any node needs.
fn scratch_len(g: &Graph, limits: lower::Limits) -> Result<usize> {
    let mut len = 0;
    for n in &g.nodes {
        len = len.max(lower::scratch_len(g, n, limits)?);
    }
    Ok(len)
}

mod lower;
