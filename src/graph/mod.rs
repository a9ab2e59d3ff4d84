//! A model as a graph of ops over tensors with static shapes.
//!
//! Build a forward graph with the methods of [`Graph`] (shapes are checked as you go and errors
//! name the op), let [`autodiff`] append the backward nodes, then hand it to the [`plan`]ner,
//! which gives every tensor a buffer by liveness and builds every dispatch once, and to the
//! [`exec`]utor, which replays the whole step as one submission.
//!
//! Dense blocks concatenate without copies: a block's features live in one *base* tensor and
//! each layer writes its new channels into a channel *view* of it, reading the prefix view that
//! holds every earlier feature (Pleiss et al. 2017).

pub mod autodiff;
mod build;
pub mod exec;
pub mod plan;
pub mod store;

pub use build::LossNode;

/// Index of a tensor in its graph.
pub type TensorId = usize;

/// What a tensor is for; decides where its storage comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A batch input uploaded before each step (images).
    Input,
    /// Loss targets uploaded before each step.
    Target,
    /// Per-class loss weights, uploaded once.
    ClassWeights,
    /// A trainable parameter, owned by the parameter store.
    Param,
    /// Non-trainable state updated in place (batch norm running statistics).
    State,
    /// A forward intermediate.
    Activation,
    /// Statistics saved by a forward op for its backward.
    Saved,
    /// The gradient of an activation.
    Grad,
    /// The gradient of a parameter (kept: the optimiser and users read it).
    ParamGrad,
    /// The loss value.
    Loss,
}

#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
    /// Some: this tensor is channels `c_off..c_off+shape[1]` of the NCHW tensor `base`.
    pub view: Option<View>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub base: TensorId,
    pub c_off: usize,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The loss a graph ends in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossKind {
    /// Softmax cross-entropy with one class id per sample; `gamma > 0` makes it focal.
    Softmax { gamma: f32 },
    /// Sigmoid binary cross-entropy with 0/1 targets per class; `gamma > 0` makes it focal.
    Sigmoid { gamma: f32 },
    /// Batch-hard triplet loss of embeddings with one label per sample (Hermans et al. 2017;
    /// see [`crate::ops::embed`]).
    TripletBatchHard { margin: f32 },
    /// Batch-all triplet loss of embeddings with one label per sample.
    TripletBatchAll { margin: f32 },
    /// L2 distillation towards teacher embeddings `[batch, dim]` (Song et al. 2017).
    DistillL2,
}

impl LossKind {
    /// Whether the loss takes per-class weights (the class-balanced softmax and sigmoid losses);
    /// the embedding losses take none.
    pub fn class_weighted(&self) -> bool {
        matches!(self.kernel(), LossKernel::ClassBalanced { .. })
    }

    /// The op-layer loss that computes it.
    pub fn kernel(&self) -> LossKernel {
        use crate::ops::{embed::EmbedLoss, loss};
        match *self {
            LossKind::Softmax { gamma } => LossKernel::ClassBalanced { kind: loss::LossKind::Softmax, gamma },
            LossKind::Sigmoid { gamma } => LossKernel::ClassBalanced { kind: loss::LossKind::Sigmoid, gamma },
            LossKind::TripletBatchHard { margin } => LossKernel::Embedding(EmbedLoss::TripletBatchHard { margin }),
            LossKind::TripletBatchAll { margin } => LossKernel::Embedding(EmbedLoss::TripletBatchAll { margin }),
            LossKind::DistillL2 => LossKernel::Embedding(EmbedLoss::DistillL2),
        }
    }
}

/// The op-layer loss behind a [`LossKind`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossKernel {
    /// [`crate::ops::loss`]: logits, targets and class weights.
    ClassBalanced { kind: crate::ops::loss::LossKind, gamma: f32 },
    /// [`crate::ops::embed`]: embeddings and targets.
    Embedding(crate::ops::embed::EmbedLoss),
}

/// Every op the executor can run. Forward ops are built by [`Graph`]'s methods; backward ops
/// are appended by [`autodiff`]. Inputs and outputs are listed in each variant's comment.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// [x, w, (b)] → [y]
    Conv2d { stride: usize, pad: usize, bias: bool },
    /// [x, gamma, beta, running_mean, running_var] → [y, save_mean, save_invstd] (batch statistics)
    BatchNormTrain { eps: f32, momentum: f32, relu: bool, recompute: bool },
    /// [x, gamma, beta, running_mean, running_var] → [y] (running statistics)
    BatchNormEval { eps: f32, relu: bool },
    /// [x] → [y]
    MaxPool { k: usize, stride: usize, pad: usize },
    /// [x] → [y]
    AvgPool { k: usize, stride: usize, pad: usize },
    /// [x] → [y] with y of shape [n, c]
    GlobalAvgPool,
    /// [x] → [y]
    Relu,
    /// [x, w, b] → [y]
    Linear,
    /// [logits, target, class_weights] → [loss, dlogits] for the class-balanced losses,
    /// [embeddings, target] → [loss, dembeddings] for the embedding losses: value and gradient
    /// in one pass
    Loss(LossKind),
    /// [z] → [e]: each row divided by its L2 norm (at least 1e-12), `F.normalize`
    L2Normalize,
    /// [] → [x]: fills with zeros
    Zero,
    /// [dy, w] → [dx]
    Conv2dBackwardData { stride: usize, pad: usize },
    /// [x, dy] → [dw, (db)]
    Conv2dBackwardWeight { stride: usize, pad: usize, bias: bool },
    /// [x, gamma, beta, save_mean, save_invstd, dy] → [dx, dgamma, dbeta]
    BatchNormBackward { relu: bool },
    /// [x, gamma, beta, save_mean, save_invstd] → [y]: recomputes a forward output in backward
    BatchNormRecompute { relu: bool },
    /// [x, dy] → [dx]
    MaxPoolBackward { k: usize, stride: usize, pad: usize },
    /// [dy] → [dx]
    AvgPoolBackward { k: usize, stride: usize, pad: usize },
    /// [dy] → [dx]
    GlobalAvgPoolBackward,
    /// [x, dy] → [dx]
    ReluBackward,
    /// [dy, w] → [dx]
    LinearBackwardData,
    /// [x, dy] → [dw, db]
    LinearBackwardParams,
    /// [z, de] → [dz]
    L2NormalizeBackward,
}

/// One op applied to tensors. `accumulate`: the first output is added to, not overwritten.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub ins: Vec<TensorId>,
    pub outs: Vec<TensorId>,
    pub accumulate: bool,
}

/// Tensors and nodes in execution order.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub tensors: Vec<Tensor>,
    pub nodes: Vec<Node>,
    /// The gradient of each tensor, once autodiff has run.
    pub grads: std::collections::HashMap<TensorId, TensorId>,
    /// Tensors that keep a buffer of their own so they can be read after a run (outputs).
    pub keep: Vec<TensorId>,
}

impl Op {
    /// The kernel family, for per-kernel reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv2d { .. } => "conv forward",
            Op::Conv2dBackwardData { .. } => "conv backward data",
            Op::Conv2dBackwardWeight { .. } => "conv backward weight",
            Op::BatchNormTrain { .. } => "batch norm forward (train)",
            Op::BatchNormEval { .. } => "batch norm forward (eval)",
            Op::BatchNormRecompute { .. } => "batch norm recompute",
            Op::BatchNormBackward { .. } => "batch norm backward",
            Op::MaxPool { .. } | Op::AvgPool { .. } | Op::GlobalAvgPool => "pooling forward",
            Op::MaxPoolBackward { .. } | Op::AvgPoolBackward { .. } | Op::GlobalAvgPoolBackward => "pooling backward",
            Op::Relu | Op::ReluBackward => "relu",
            Op::Linear | Op::LinearBackwardData | Op::LinearBackwardParams => "linear",
            Op::Loss(_) => "loss",
            Op::L2Normalize | Op::L2NormalizeBackward => "l2 normalize",
            Op::Zero => "zero fill",
        }
    }
}

impl Graph {
    /// Floating-point operations of a node (multiply-adds count 2; 0 for bandwidth-bound ops).
    pub fn flops(&self, n: &Node) -> f64 {
        let numel = |t: TensorId| self.tensors[t].numel() as f64;
        let w_per_out = |w: TensorId| {
            let s = &self.tensors[w].shape;
            (s[1] * s[2] * s[3]) as f64
        };
        match n.op {
            // y: [n, c_out, p, q]; each output is c_in·kh·kw multiply-adds
            Op::Conv2d { .. } => 2.0 * numel(n.outs[0]) * w_per_out(n.ins[1]),
            // dy [n, c_out, p, q] (ins[0]) times w
            Op::Conv2dBackwardData { .. } => 2.0 * numel(n.ins[0]) * w_per_out(n.ins[1]),
            // dy (ins[1]) times the weight shape (outs[0])
            Op::Conv2dBackwardWeight { .. } => 2.0 * numel(n.ins[1]) * w_per_out(n.outs[0]),
            Op::Linear => 2.0 * numel(n.outs[0]) * self.tensors[n.ins[1]].shape[1] as f64,
            Op::LinearBackwardData => 2.0 * numel(n.outs[0]) * self.tensors[n.ins[0]].shape[1] as f64,
            Op::LinearBackwardParams => 2.0 * numel(n.outs[0]) * self.tensors[n.ins[0]].shape[0] as f64,
            _ => 0.0,
        }
    }
}
