//! Lowering: one graph node to the kernel dispatches that compute it.
//!
//! A node whose batch tensors do not fit one storage binding runs in batch chunks: with the
//! batch outermost, images n0..n1 of every tensor are one contiguous byte range, so each chunk
//! binds only its images. Per-image ops simply run once per chunk ([`per_chunk`]); ops that
//! reduce over the batch (batch norm training and backward, weight gradients) take the chunk
//! list and combine their partial results across chunks.

use std::ops::Range;

use super::Executable;
use crate::error::{Error, Result};
use crate::gpu::{BufRange, Dispatch};
use crate::graph::plan::{batched, image_bytes, storage};
use crate::graph::{Graph, LossKernel, Node, Op, TensorId};
use crate::ops::conv::Pass;
use crate::ops::{batchnorm, conv, elementwise, embed, linear, loss, pool, Act};

/// The device limits batch chunks must respect, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The largest storage binding.
    pub binding: u64,
    /// Binding offsets are multiples of this.
    pub align: u64,
}

fn dims(g: &Graph, t: usize) -> [usize; 4] {
    super::nchw(&g.tensors[t].shape)
}

fn conv_shape(g: &Graph, x: usize, w: usize, stride: usize, pad: usize) -> conv::Conv2dShape {
    let [n, c, h, wd] = dims(g, x);
    let ws = &g.tensors[w].shape;
    conv::Conv2dShape { n, c_in: c, h, w: wd, c_out: ws[0], kh: ws[2], kw: ws[3], stride, pad }
}

/// The kernel pass of a convolution node and its whole-batch shape (None for other ops).
fn conv_pass(g: &Graph, n: &Node) -> Option<(Pass, conv::Conv2dShape)> {
    let (i, o) = (&n.ins, &n.outs);
    match n.op {
        Op::Conv2d { stride, pad, .. } => Some((Pass::Forward, conv_shape(g, i[0], i[1], stride, pad))),
        // ins [dy, w], outs [dx]
        Op::Conv2dBackwardData { stride, pad } => Some((Pass::BackwardData, conv_shape(g, o[0], i[1], stride, pad))),
        // ins [x, dy], outs [dw, (db)]
        Op::Conv2dBackwardWeight { stride, pad, .. } => {
            Some((Pass::BackwardWeight, conv_shape(g, i[0], o[0], stride, pad)))
        }
        _ => None,
    }
}

/// The (pass, shape) keys [`lower`] looks node `n`'s tiles up by: each batch chunk's shape for
/// the forward and backward data (one kernel per chunk), the whole batch's for the backward
/// weight (one set of tiles for all its chunks). Empty for other ops.
pub fn conv_passes(g: &Graph, n: &Node, limits: Limits) -> Result<Vec<(Pass, conv::Conv2dShape)>> {
    Ok(match conv_pass(g, n) {
        None => Vec::new(),
        Some((Pass::BackwardWeight, s)) => vec![(Pass::BackwardWeight, s)],
        Some((pass, s)) => {
            chunks(g, n, limits)?.iter().map(|r| (pass, conv::Conv2dShape { n: r.len(), ..s })).collect()
        }
    })
}

/// x [b, in] and w [out, in] as a 1×1 convolution.
/// The Linear layer of `x` ([batch, in, 1, 1]) and `w` ([out, in]).
fn linear_shape(g: &Graph, x: usize, w: usize) -> Result<linear::LinearShape> {
    let [n, in_features, _, _] = dims(g, x);
    linear::LinearShape::new(n, in_features, g.tensors[w].shape[0])
}

fn bn_shape(g: &Graph, x: usize, eps: f32, momentum: f32, relu: bool) -> batchnorm::BnShape {
    let [n, c, h, w] = dims(g, x);
    batchnorm::BnShape { n, c, h, w, eps, momentum, relu }
}

fn pool_shape(g: &Graph, x: usize, k: usize, stride: usize, pad: usize) -> pool::PoolShape {
    let [n, c, h, w] = dims(g, x);
    pool::PoolShape { n, c, h, w, k, stride, pad }
}

/// Ops that can run a batch chunk at a time (per image, or combining partials across chunks).
fn chunkable(op: &Op) -> bool {
    !matches!(op, Op::Linear | Op::LinearBackwardData | Op::LinearBackwardParams | Op::Loss(_))
}

/// The batch chunks node `n` runs in: the whole batch when every batch tensor it binds fits one
/// binding, else chunks of as many images as fit, a multiple of the images that keep every
/// chunk's byte offset aligned (the last chunk takes what is left).
pub fn chunks(g: &Graph, n: &Node, limits: Limits) -> Result<Vec<Range<usize>>> {
    let mut tensors: Vec<TensorId> = n.ins.iter().chain(&n.outs).copied().filter(|&t| batched(g, t)).collect();
    tensors.iter_mut().for_each(|t| *t = storage(g, *t));
    tensors.sort_unstable();
    tensors.dedup();
    let bytes = |t: TensorId| (g.tensors[t].numel().max(1) * 4) as u64;
    let batch = tensors.first().map_or(1, |&t| g.tensors[t].shape[0]);
    let Some(&big) = tensors.iter().filter(|&&t| bytes(t) > limits.binding).max_by_key(|&&t| bytes(t)) else {
        return Ok(std::iter::once(0..batch).collect());
    };
    let name = &g.tensors[big].name;
    if !chunkable(&n.op) {
        let tensor = format!("tensor '{name}' (of {}, which cannot split its batch)", n.op.kind());
        return Err(Error::TooLarge { tensor, bytes: bytes(big), limit: limits.binding });
    }
    let per_image: Vec<u64> = tensors.iter().map(|&t| image_bytes(g, t)).collect();
    crate::ops::batch_chunks(batch, &per_image, limits.binding, limits.align).ok_or_else(|| {
        let step = crate::ops::chunk_step(&per_image, limits.align);
        let tensor = format!(
            "{step} images of tensor '{name}' (the fewest that keep batch chunks {}-byte aligned)",
            limits.align
        );
        Error::TooLarge { tensor, bytes: step * image_bytes(g, big), limit: limits.binding }
    })
}

/// One batch chunk of a node: its tensors narrowed to images `images` (others whole).
struct Chunk<'e> {
    e: &'e Executable,
    images: Range<usize>,
}

impl<'e> Chunk<'e> {
    fn len(&self) -> usize {
        self.images.len()
    }

    /// Tensor `t` as a channel view of this chunk's images.
    fn act(&self, t: TensorId) -> Act<'e> {
        let a = self.e.act(t);
        if batched(&self.e.graph, t) {
            let [_, _, h, w] = dims(&self.e.graph, t);
            a.images(self.images.clone(), h * w)
        } else {
            a
        }
    }

    /// The bytes of tensor `t` (not a view) this chunk binds.
    fn range(&self, t: TensorId) -> BufRange<'e> {
        let r = self.e.range(t);
        if batched(&self.e.graph, t) {
            let per = image_bytes(&self.e.graph, t);
            r.sub(self.images.start as u64 * per, self.len() as u64 * per)
        } else {
            r
        }
    }

    /// Elements of tensor `t` in this chunk.
    fn numel(&self, t: TensorId) -> usize {
        let tensor = &self.e.graph.tensors[t];
        tensor.numel() / tensor.shape[0] * self.len()
    }
}

/// Builds a per-image op once per batch chunk.
fn per_chunk<'e>(
    e: &'e Executable,
    chunks: &[Range<usize>],
    f: &dyn Fn(&Chunk<'e>) -> Result<Vec<Dispatch>>,
) -> Result<Vec<Dispatch>> {
    let mut out = Vec::new();
    for images in chunks {
        out.extend(f(&Chunk { e, images: images.clone() })?);
    }
    Ok(out)
}

/// f32 elements of scratch the node's kernels need, its batch cut as [`chunks`] cuts it.
pub fn scratch_len(g: &Graph, n: &Node, limits: Limits) -> Result<usize> {
    let chunks = chunks(g, n, limits)?;
    Ok(match n.op {
        Op::Conv2dBackwardWeight { stride, pad, .. } => {
            // ins [x, dy], outs [dw, ..]
            conv::backward_weight_chunks_scratch_len(&conv_shape(g, n.ins[0], n.outs[0], stride, pad), &chunks)
        }
        Op::BatchNormTrain { eps, momentum, relu, .. } => {
            batchnorm::chunks_scratch_len(&bn_shape(g, n.ins[0], eps, momentum, relu), &chunks)
        }
        Op::BatchNormBackward { relu } => {
            batchnorm::chunks_scratch_len(&bn_shape(g, n.ins[0], 1e-5, 0.1, relu), &chunks)
        }
        Op::Loss(kind) => {
            let [b, c, _, _] = dims(g, n.ins[0]);
            match kind.kernel() {
                LossKernel::Embedding(k) => {
                    embed::EmbedShape::new(b, c).map(|s| embed::embed_loss_scratch_len(k, s)).unwrap_or(0)
                }
                LossKernel::ClassBalanced { .. } => loss::LossShape::new(b, c).map(loss::loss_scratch_len).unwrap_or(0),
            }
        }
        _ => 0,
    })
}

pub fn lower(e: &Executable, n: &Node, scratch: &wgpu::Buffer, limits: Limits) -> Result<Vec<Dispatch>> {
    let g = &e.graph;
    let gpu = &*e.gpu;
    let (i, o) = (&n.ins, &n.outs);
    let acc = n.accumulate;
    let chunks = chunks(g, n, limits)?;
    let each = |f: &dyn Fn(&Chunk) -> Result<Vec<Dispatch>>| per_chunk(e, &chunks, f);
    // Convolutions: the shapes and tile keys of `conv_passes`, the tiles from the table.
    let conv = || conv_pass(g, n).ok_or_else(|| Error::Invalid(format!("node '{}' is not a convolution", n.name)));
    match n.op {
        Op::Conv2d { bias, .. } => each(&|c| {
            let (pass, s) = conv()?;
            let s = conv::Conv2dShape { n: c.len(), ..s };
            let (x, w, b, y) = (c.act(i[0]), e.range(i[1]), bias.then(|| e.range(i[2])), c.act(o[0]));
            conv::forward_tiled(gpu, &s, x, w, b, y, e.tiles.get(pass, &s))
        }),
        Op::Conv2dBackwardData { .. } => each(&|c| {
            // ins [dy, w], outs [dx]
            let (pass, s) = conv()?;
            let s = conv::Conv2dShape { n: c.len(), ..s };
            conv::backward_data_tiled(gpu, &s, c.act(i[0]), e.range(i[1]), c.act(o[0]), acc, e.tiles.get(pass, &s))
        }),
        Op::Conv2dBackwardWeight { bias, .. } => {
            // ins [x, dy], outs [dw, (db)]
            let (pass, s) = conv()?;
            let db = bias.then(|| e.range(o[1]));
            let (x, dy, t) = (e.act(i[0]), e.act(i[1]), e.tiles.get(pass, &s));
            conv::backward_weight_chunks_tiled(gpu, &s, &chunks, x, dy, e.range(o[0]), db, scratch, t)
        }
        Op::BatchNormTrain { eps, momentum, relu, .. } => {
            let s = bn_shape(g, i[0], eps, momentum, relu);
            // stats: gamma, beta, save_mean, save_invstd, running_mean, running_var
            let stats = [i[1], i[2], o[1], o[2], i[3], i[4]].map(|t| e.range(t));
            batchnorm::forward_train_chunks(gpu, &s, &chunks, e.act(i[0]), e.act(o[0]), stats, scratch)
        }
        Op::BatchNormEval { eps, relu } => each(&|c| {
            let s = batchnorm::BnShape { n: c.len(), ..bn_shape(g, i[0], eps, 0.1, relu) };
            let [gamma, beta, mean, var] = [i[1], i[2], i[3], i[4]].map(|t| e.range(t));
            batchnorm::forward_eval(gpu, &s, c.act(i[0]), gamma, beta, mean, var, c.act(o[0]))
        }),
        Op::BatchNormRecompute { relu } => each(&|c| {
            // ins [x, gamma, beta, mean, invstd]
            let s = batchnorm::BnShape { n: c.len(), ..bn_shape(g, i[0], 1e-5, 0.1, relu) };
            let [gamma, beta, mean, invstd] = [i[1], i[2], i[3], i[4]].map(|t| e.range(t));
            batchnorm::normalize(gpu, &s, c.act(i[0]), gamma, beta, mean, invstd, c.act(o[0]))
        }),
        Op::BatchNormBackward { relu } => {
            // ins [x, gamma, beta, mean, invstd, dy], outs [dx, dgamma, dbeta]
            let s = bn_shape(g, i[0], 1e-5, 0.1, relu);
            let acts = [e.act(i[0]), e.act(i[5]), e.act(o[0])];
            let stats = [i[1], i[2], i[3], i[4]].map(|t| e.range(t));
            let dparams = [e.range(o[1]), e.range(o[2])];
            batchnorm::backward_chunks(gpu, &s, &chunks, acts, stats, dparams, acc, scratch)
        }
        Op::MaxPool { k, stride, pad } => each(&|c| {
            let s = pool::PoolShape { n: c.len(), ..pool_shape(g, i[0], k, stride, pad) };
            pool::max_forward(gpu, &s, c.act(i[0]), c.act(o[0]))
        }),
        Op::MaxPoolBackward { k, stride, pad } => each(&|c| {
            let s = pool::PoolShape { n: c.len(), ..pool_shape(g, o[0], k, stride, pad) };
            pool::max_backward(gpu, &s, c.act(i[0]), c.act(i[1]), c.act(o[0]), acc)
        }),
        Op::AvgPool { k, stride, pad } => each(&|c| {
            let s = pool::PoolShape { n: c.len(), ..pool_shape(g, i[0], k, stride, pad) };
            pool::avg_forward(gpu, &s, c.act(i[0]), c.act(o[0]))
        }),
        Op::AvgPoolBackward { k, stride, pad } => each(&|c| {
            let s = pool::PoolShape { n: c.len(), ..pool_shape(g, o[0], k, stride, pad) };
            pool::avg_backward(gpu, &s, c.act(i[0]), c.act(o[0]), acc)
        }),
        Op::GlobalAvgPool => each(&|c| {
            let [_, ch, h, w] = dims(g, i[0]);
            pool::global_avg_forward(gpu, c.len(), ch, h * w, c.act(i[0]), c.act(o[0]))
        }),
        Op::GlobalAvgPoolBackward => each(&|c| {
            let [_, ch, h, w] = dims(g, o[0]);
            pool::global_avg_backward(gpu, c.len(), ch, h * w, c.act(i[0]), c.act(o[0]), acc)
        }),
        Op::Relu => each(&|c| elementwise::relu_forward(gpu, c.range(i[0]), c.range(o[0]), c.numel(i[0]))),
        Op::ReluBackward => {
            each(&|c| elementwise::relu_backward(gpu, c.range(i[0]), c.range(i[1]), c.range(o[0]), c.numel(i[0]), acc))
        }
        Op::Linear => {
            let s = linear_shape(g, i[0], i[1])?;
            linear::forward(gpu, &s, e.act(i[0]), e.range(i[1]), e.range(i[2]), e.act(o[0]))
        }
        Op::LinearBackwardData => {
            // ins [dy, w], outs [dx]
            let s = linear_shape(g, o[0], i[1])?;
            linear::backward_input(gpu, &s, e.act(i[0]), e.range(i[1]), e.act(o[0]), acc)
        }
        Op::LinearBackwardParams => {
            // ins [x, dy], outs [dw, db]
            let s = linear_shape(g, i[0], o[0])?;
            linear::backward_params(gpu, &s, e.act(i[0]), e.act(i[1]), e.range(o[0]), e.range(o[1]))
        }
        Op::Loss(kind) => {
            let [b, c, _, _] = dims(g, i[0]);
            let (loss, grad) = (e.range(o[0]), e.range(o[1]));
            match kind.kernel() {
                LossKernel::Embedding(k) => {
                    // ins [embeddings, target], outs [loss, dembeddings]
                    let shape = embed::EmbedShape::new(b, c)?;
                    let len = embed::embed_loss_scratch_len(k, shape);
                    let bufs = embed::EmbedLossBuffers {
                        embeddings: e.range(i[0]),
                        targets: e.range(i[1]),
                        loss,
                        grad,
                        scratch: BufRange::prefix(scratch, len as u64 * 4),
                    };
                    embed::embed_loss(gpu, k, shape, bufs)
                }
                LossKernel::ClassBalanced { kind: k, gamma } => {
                    // ins [logits, target, weights], outs [loss, dlogits]
                    let shape = loss::LossShape::new(b, c)?;
                    let bufs = loss::LossBuffers {
                        logits: e.range(i[0]),
                        targets: e.range(i[1]),
                        weights: e.range(i[2]),
                        loss,
                        grad,
                        scratch: BufRange::prefix(scratch, loss::loss_scratch_len(shape).max(1) as u64 * 4),
                    };
                    loss::loss(gpu, k, shape, loss::LossOpts { gamma, scale: 1.0 }, bufs)
                }
            }
        }
        Op::L2Normalize => each(&|c| {
            let s = embed::EmbedShape::new(c.len(), dims(g, i[0])[1])?;
            embed::normalize_forward(gpu, s, c.range(i[0]), c.range(o[0]))
        }),
        Op::L2NormalizeBackward => each(&|c| {
            // ins [z, de], outs [dz]
            let s = embed::EmbedShape::new(c.len(), dims(g, i[0])[1])?;
            embed::normalize_backward(gpu, s, c.range(i[0]), c.range(i[1]), c.range(o[0]), acc)
        }),
        Op::Zero => each(&|c| {
            let [_, ch, h, w] = dims(g, o[0]);
            elementwise::fill_zero(gpu, c.len(), ch, h * w, c.act(o[0]))
        }),
    }
}
