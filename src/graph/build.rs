//! The forward-graph builder: one method per op, each checking shapes and naming the op in errors.

use super::{Graph, LossKind, Node, Op, Role, Tensor, TensorId, View};
use crate::error::{Error, Result};

fn pool_out(size: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    (size + 2 * pad).checked_sub(k).map(|v| v / stride + 1)
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn shape(&self, t: TensorId) -> &[usize] {
        &self.tensors[t].shape
    }

    /// Adds a tensor with its own storage.
    pub fn tensor(&mut self, name: impl Into<String>, shape: &[usize], role: Role) -> TensorId {
        self.tensors.push(Tensor { name: name.into(), shape: shape.to_vec(), role, view: None });
        self.tensors.len() - 1
    }

    pub fn input(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.tensor(name, shape, Role::Input)
    }

    pub fn param(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.tensor(name, shape, Role::Param)
    }

    pub fn state(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.tensor(name, shape, Role::State)
    }

    /// Channels `c_off..c_off+c` of the NCHW tensor `base` as a tensor of its own.
    pub fn slice(&mut self, base: TensorId, c_off: usize, c: usize) -> Result<TensorId> {
        let b = &self.tensors[base];
        if b.shape.len() != 4 || c_off + c > b.shape[1] || c == 0 {
            return Err(Error::shape(
                "slice",
                format!("channels {c_off}..{} of '{}' with shape {:?}", c_off + c, b.name, b.shape),
            ));
        }
        if b.view.is_some() {
            return Err(Error::shape("slice", format!("'{}' is itself a view; slice its base", b.name)));
        }
        let shape = vec![b.shape[0], c, b.shape[2], b.shape[3]];
        let name = format!("{}[{c_off}..{}]", b.name, c_off + c);
        let role = b.role;
        self.tensors.push(Tensor { name, shape, role, view: Some(View { base, c_off }) });
        Ok(self.tensors.len() - 1)
    }

    /// Resolves the output of an op: a fresh activation, or `into` after checking its shape.
    fn output(&mut self, op: &str, name: &str, shape: Vec<usize>, into: Option<TensorId>) -> Result<TensorId> {
        match into {
            None => Ok(self.tensor(name, &shape, Role::Activation)),
            Some(t) if self.tensors[t].shape == shape => Ok(t),
            Some(t) => Err(Error::shape(
                format!("{op} '{name}'"),
                format!(
                    "output has shape {:?} but '{}' has shape {:?}",
                    shape, self.tensors[t].name, self.tensors[t].shape
                ),
            )),
        }
    }

    fn push(&mut self, name: &str, op: Op, ins: Vec<TensorId>, outs: Vec<TensorId>) {
        self.nodes.push(Node { name: name.to_string(), op, ins, outs, accumulate: false });
    }

    fn nchw(&self, op: &str, name: &str, t: TensorId) -> Result<[usize; 4]> {
        let s = &self.tensors[t].shape;
        match s.as_slice() {
            &[n, c, h, w] => Ok([n, c, h, w]),
            _ => Err(Error::shape(
                format!("{op} '{name}'"),
                format!("input '{}' must be NCHW, got {:?}", self.tensors[t].name, s),
            )),
        }
    }

    fn expect(&self, op: &str, name: &str, t: TensorId, shape: &[usize]) -> Result<()> {
        if self.tensors[t].shape != shape {
            return Err(Error::shape(
                format!("{op} '{name}'"),
                format!("'{}' has shape {:?}, expected {:?}", self.tensors[t].name, self.tensors[t].shape, shape),
            ));
        }
        Ok(())
    }

    /// 2-D convolution of `x` with weight `w` [c_out, c_in, kh, kw] (and bias [c_out]).
    pub fn conv2d(
        &mut self,
        name: &str,
        x: TensorId,
        w: TensorId,
        b: Option<TensorId>,
        stride: usize,
        pad: usize,
        into: Option<TensorId>,
    ) -> Result<TensorId> {
        let [n, c, h, wd] = self.nchw("conv2d", name, x)?;
        let ws = self.tensors[w].shape.clone();
        let [co, ci, kh, kw] = ws[..] else {
            return Err(Error::shape(
                format!("conv2d '{name}'"),
                format!("weight must be [c_out, c_in, kh, kw], got {ws:?}"),
            ));
        };
        if ci != c {
            return Err(Error::shape(
                format!("conv2d '{name}'"),
                format!("input has {c} channels but the weight expects {ci}"),
            ));
        }
        if stride == 0 {
            return Err(Error::shape(format!("conv2d '{name}'"), "stride must be at least 1"));
        }
        let (Some(p), Some(q)) = (pool_out(h, kh, stride, pad), pool_out(wd, kw, stride, pad)) else {
            return Err(Error::shape(
                format!("conv2d '{name}'"),
                format!("kernel {kh}×{kw} is larger than the padded input {h}×{wd}"),
            ));
        };
        if let Some(b) = b {
            self.expect("conv2d", name, b, &[co])?;
        }
        let y = self.output("conv2d", name, vec![n, co, p, q], into)?;
        let mut ins = vec![x, w];
        ins.extend(b);
        self.push(name, Op::Conv2d { stride, pad, bias: b.is_some() }, ins, vec![y]);
        Ok(y)
    }

    /// Batch norm over the channels of `x`, in training mode (batch statistics, running
    /// statistics updated) or eval mode, with an optional fused ReLU. `recompute`: in backward,
    /// recompute the output instead of keeping it (memory-efficient dense layers).
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &mut self,
        name: &str,
        x: TensorId,
        params: [TensorId; 4],
        train: bool,
        relu: bool,
        recompute: bool,
    ) -> Result<TensorId> {
        let [n, c, h, w] = self.nchw("batch_norm", name, x)?;
        for p in params {
            self.expect("batch_norm", name, p, &[c])?;
        }
        let y = self.tensor(name, &[n, c, h, w], Role::Activation);
        let ins = vec![x, params[0], params[1], params[2], params[3]];
        if train {
            let mean = self.tensor(format!("{name}.save_mean"), &[c], Role::Saved);
            let invstd = self.tensor(format!("{name}.save_invstd"), &[c], Role::Saved);
            self.push(
                name,
                Op::BatchNormTrain { eps: 1e-5, momentum: 0.1, relu, recompute },
                ins,
                vec![y, mean, invstd],
            );
        } else {
            self.push(name, Op::BatchNormEval { eps: 1e-5, relu }, ins, vec![y]);
        }
        Ok(y)
    }

    fn pool(
        &mut self,
        name: &str,
        x: TensorId,
        k: usize,
        stride: usize,
        pad: usize,
        max: bool,
        into: Option<TensorId>,
    ) -> Result<TensorId> {
        let op = if max { "max_pool" } else { "avg_pool" };
        let [n, c, h, w] = self.nchw(op, name, x)?;
        if k == 0 || stride == 0 || pad * 2 > k {
            return Err(Error::shape(
                format!("{op} '{name}'"),
                format!("kernel {k}, stride {stride}, padding {pad} is not a valid pooling"),
            ));
        }
        let (Some(p), Some(q)) = (pool_out(h, k, stride, pad), pool_out(w, k, stride, pad)) else {
            return Err(Error::shape(
                format!("{op} '{name}'"),
                format!("window {k} is larger than the padded input {h}×{w}"),
            ));
        };
        let y = self.output(op, name, vec![n, c, p, q], into)?;
        let op = if max { Op::MaxPool { k, stride, pad } } else { Op::AvgPool { k, stride, pad } };
        self.push(name, op, vec![x], vec![y]);
        Ok(y)
    }

    pub fn max_pool(
        &mut self,
        name: &str,
        x: TensorId,
        k: usize,
        stride: usize,
        pad: usize,
        into: Option<TensorId>,
    ) -> Result<TensorId> {
        self.pool(name, x, k, stride, pad, true, into)
    }

    pub fn avg_pool(
        &mut self,
        name: &str,
        x: TensorId,
        k: usize,
        stride: usize,
        pad: usize,
        into: Option<TensorId>,
    ) -> Result<TensorId> {
        self.pool(name, x, k, stride, pad, false, into)
    }

    /// [n, c, h, w] → [n, c]
    pub fn global_avg_pool(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let [n, c, _, _] = self.nchw("global_avg_pool", name, x)?;
        let y = self.tensor(name, &[n, c], Role::Activation);
        self.push(name, Op::GlobalAvgPool, vec![x], vec![y]);
        Ok(y)
    }

    pub fn relu(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let shape = self.tensors[x].shape.clone();
        let y = self.tensor(name, &shape, Role::Activation);
        self.push(name, Op::Relu, vec![x], vec![y]);
        Ok(y)
    }

    /// y[b, out] = x[b, in] · wᵀ + bias, with w [out, in] as in PyTorch.
    pub fn linear(&mut self, name: &str, x: TensorId, w: TensorId, b: TensorId) -> Result<TensorId> {
        let xs = self.tensors[x].shape.clone();
        let ws = self.tensors[w].shape.clone();
        if xs.len() != 2 || ws.len() != 2 || xs[1] != ws[1] || xs[1] == 0 {
            return Err(Error::shape(
                format!("linear '{name}'"),
                format!("input {xs:?} and weight {ws:?} do not match (weight is [out, in])"),
            ));
        }
        let (bn, fout) = (xs[0], ws[0]);
        self.expect("linear", name, b, &[fout])?;
        let y = self.tensor(name, &[bn, fout], Role::Activation);
        self.push(name, Op::Linear, vec![x, w, b], vec![y]);
        Ok(y)
    }

    /// Each row of `z` [b, d] divided by its L2 norm (at least 1e-12): `F.normalize(z, dim=1)`.
    pub fn l2_normalize(&mut self, name: &str, z: TensorId) -> Result<TensorId> {
        let s = self.tensors[z].shape.clone();
        if s.len() != 2 || s.contains(&0) {
            return Err(Error::shape(
                format!("l2_normalize '{name}'"),
                format!("input must be [batch, dim], got {s:?}"),
            ));
        }
        let y = self.tensor(name, &s, Role::Activation);
        self.push(name, Op::L2Normalize, vec![z], vec![y]);
        Ok(y)
    }

    /// The loss of `logits` [b, c] (the class-balanced losses) or of embeddings [b, d] (the
    /// embedding losses), with its gradient. Targets are a [b] class-id or label tensor (softmax,
    /// triplets), a [b, c] 0/1 tensor (sigmoid) or [b, d] teacher embeddings (distillation);
    /// only the class-balanced losses have a [c] class-weights tensor.
    pub fn loss(&mut self, name: &str, logits: TensorId, kind: LossKind) -> Result<LossNode> {
        let s = self.tensors[logits].shape.clone();
        let [b, c] = s[..] else {
            return Err(Error::shape(format!("loss '{name}'"), format!("logits must be [batch, classes], got {s:?}")));
        };
        let target_shape = match kind {
            LossKind::Softmax { .. } | LossKind::TripletBatchHard { .. } | LossKind::TripletBatchAll { .. } => vec![b],
            LossKind::Sigmoid { .. } | LossKind::DistillL2 => vec![b, c],
        };
        let target = self.tensor("target", &target_shape, Role::Target);
        let weights = kind.class_weighted().then(|| self.tensor("class_weights", &[c], Role::ClassWeights));
        let loss = self.tensor(name, &[1], Role::Loss);
        let grad = self.tensor(format!("{name}.dlogits"), &[b, c], Role::Grad);
        let mut ins = vec![logits, target];
        ins.extend(weights);
        self.push(name, Op::Loss(kind), ins, vec![loss, grad]);
        self.grads.insert(logits, grad);
        Ok(LossNode { loss, grad, target, weights })
    }
}

/// The tensors of a loss node ([`Graph::loss`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossNode {
    /// The loss value, [1].
    pub loss: TensorId,
    /// The gradient of the loss w.r.t. its input, which seeds autodiff.
    pub grad: TensorId,
    /// Uploaded before each step.
    pub target: TensorId,
    /// Per-class weights, uploaded once: the class-balanced losses only.
    pub weights: Option<TensorId>,
}
