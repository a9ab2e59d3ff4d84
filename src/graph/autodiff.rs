//! Reverse-mode autodiff: walks the forward nodes backwards and appends, for each, the nodes
//! that turn the gradient of its outputs into gradients of its inputs and parameters.
//!
//! Gradients that several consumers contribute to (the channels of a dense block) are written
//! by the first contribution and accumulated by the later ones; which channels are written so
//! far is tracked per storage, and never-written channels are zeroed before a partial overlap.

use std::collections::HashMap;

use super::{Graph, Node, Op, Role, TensorId, View};
use crate::error::{Error, Result};

struct Differ<'g> {
    g: &'g mut Graph,
    /// Channels of each gradient storage written so far.
    written: HashMap<TensorId, Vec<bool>>,
    /// Forward tensors replaced by a recomputed copy in backward.
    recomputed: HashMap<TensorId, TensorId>,
    /// For recompute batch norms: output → the forward node that made it.
    recompute_src: HashMap<TensorId, usize>,
    out: Vec<Node>,
}

/// Appends the backward graph. The loss node (added by [`Graph::loss`]) seeds the gradient.
pub fn autodiff(g: &mut Graph) -> Result<()> {
    let forward = g.nodes.clone();
    if !forward.iter().any(|n| matches!(n.op, Op::Loss(_))) {
        return Err(Error::Invalid("autodiff: the graph has no loss".into()));
    }
    let mut recompute_src = HashMap::new();
    for (i, n) in forward.iter().enumerate() {
        if let Op::BatchNormTrain { recompute: true, .. } = n.op {
            recompute_src.insert(n.outs[0], i);
        }
    }
    let mut d = Differ { g, written: HashMap::new(), recomputed: HashMap::new(), recompute_src, out: Vec::new() };
    for (i, node) in forward.iter().enumerate().rev() {
        d.backward(i, node, &forward)?;
    }
    let out = std::mem::take(&mut d.out);
    d.g.nodes.extend(out);
    Ok(())
}

impl Differ<'_> {
    fn needs_grad(&self, t: TensorId) -> bool {
        let t = &self.g.tensors[t];
        let role = match t.view {
            Some(v) => self.g.tensors[v.base].role,
            None => t.role,
        };
        matches!(role, Role::Activation | Role::Param)
    }

    /// The gradient tensor of `t`, created on first use (a view of the base's gradient for views).
    fn grad_of(&mut self, t: TensorId) -> TensorId {
        if let Some(&gr) = self.g.grads.get(&t) {
            return gr;
        }
        let tensor = self.g.tensors[t].clone();
        let gr = match tensor.view {
            Some(View { base, c_off }) => {
                let gb = self.grad_of(base);
                let c = tensor.shape[1];
                self.g.slice(gb, c_off, c).expect("a view's gradient has the view's shape")
            }
            None => {
                let role = if tensor.role == Role::Param { Role::ParamGrad } else { Role::Grad };
                self.g.tensor(format!("grad({})", tensor.name), &tensor.shape, role)
            }
        };
        self.g.grads.insert(t, gr);
        gr
    }

    /// The gradient flowing into forward output `t`, if any reached it. A view's gradient is
    /// the matching channels of its base's gradient, whichever views the contributions came by.
    fn out_grad(&mut self, t: TensorId) -> Option<TensorId> {
        if let Some(&gr) = self.g.grads.get(&t) {
            return Some(gr);
        }
        let base = self.g.tensors[t].view?.base;
        self.g.grads.contains_key(&base).then(|| self.grad_of(t))
    }

    /// The storage and channel range a tensor's gradient occupies.
    fn extent(&self, gr: TensorId) -> (TensorId, usize, usize, usize) {
        let t = &self.g.tensors[gr];
        let channels = |s: &[usize]| if s.len() == 4 { s[1] } else { 1 };
        match t.view {
            Some(v) => (v.base, v.c_off, v.c_off + t.shape[1], channels(&self.g.tensors[v.base].shape)),
            None => (gr, 0, channels(&t.shape), channels(&t.shape)),
        }
    }

    /// Gradient tensor for a contribution to `t`, and whether to accumulate into it. Zeroes the
    /// unwritten part first when the contribution only partly overlaps what is written.
    fn contribute(&mut self, t: TensorId) -> Result<(TensorId, bool)> {
        let gr = self.grad_of(t);
        let (storage, lo, hi, total) = self.extent(gr);
        let written = self.written.entry(storage).or_insert_with(|| vec![false; total]);
        let done = written[lo..hi].iter().filter(|&&w| w).count();
        if done == 0 {
            written[lo..hi].iter_mut().for_each(|w| *w = true);
            return Ok((gr, false));
        }
        if self.g.tensors[t].role == Role::Param {
            return Err(Error::Invalid(format!(
                "parameter '{}' is used twice; sharing parameters is not supported",
                self.g.tensors[t].name
            )));
        }
        if done < hi - lo {
            let gaps: Vec<(usize, usize)> = runs(&written[lo..hi]).into_iter().map(|(a, b)| (a + lo, b + lo)).collect();
            written[lo..hi].iter_mut().for_each(|w| *w = true);
            for (a, b) in gaps {
                let z = self.g.slice(storage, a, b - a)?;
                self.out.push(Node {
                    name: format!("zero {}", self.g.tensors[z].name),
                    op: Op::Zero,
                    ins: vec![],
                    outs: vec![z],
                    accumulate: false,
                });
            }
        }
        Ok((gr, true))
    }

    /// A forward tensor as backward sees it: recomputed first if its op asked for that.
    fn fwd(&mut self, t: TensorId, forward: &[Node]) -> TensorId {
        if let Some(&r) = self.recomputed.get(&t) {
            return r;
        }
        let Some(&i) = self.recompute_src.get(&t) else { return t };
        let n = &forward[i];
        let Op::BatchNormTrain { relu, .. } = n.op else { unreachable!() };
        let shape = self.g.tensors[t].shape.clone();
        let r = self.g.tensor(format!("{}.recomputed", self.g.tensors[t].name), &shape, Role::Activation);
        let ins = vec![n.ins[0], n.ins[1], n.ins[2], n.outs[1], n.outs[2]];
        self.out.push(Node {
            name: format!("{} (recompute)", n.name),
            op: Op::BatchNormRecompute { relu },
            ins,
            outs: vec![r],
            accumulate: false,
        });
        self.recomputed.insert(t, r);
        r
    }

    fn emit(&mut self, name: &str, op: Op, ins: Vec<TensorId>, outs: Vec<TensorId>, accumulate: bool) {
        self.out.push(Node { name: name.to_string(), op, ins, outs, accumulate });
    }

    fn backward(&mut self, _i: usize, n: &Node, forward: &[Node]) -> Result<()> {
        let name = format!("{} backward", n.name);
        match &n.op {
            Op::Loss(_) | Op::Zero => {}
            Op::Conv2d { stride, pad, bias } => {
                let Some(dy) = self.out_grad(n.outs[0]) else { return Ok(()) };
                let (x, w) = (n.ins[0], n.ins[1]);
                let x_in = self.fwd(x, forward);
                let (dw, _) = self.contribute(w)?;
                let mut outs = vec![dw];
                if *bias {
                    outs.push(self.contribute(n.ins[2])?.0);
                }
                self.emit(
                    &format!("{name} (weight)"),
                    Op::Conv2dBackwardWeight { stride: *stride, pad: *pad, bias: *bias },
                    vec![x_in, dy],
                    outs,
                    false,
                );
                if self.needs_grad(x) {
                    let (dx, acc) = self.contribute(x)?;
                    self.emit(
                        &format!("{name} (data)"),
                        Op::Conv2dBackwardData { stride: *stride, pad: *pad },
                        vec![dy, w],
                        vec![dx],
                        acc,
                    );
                }
            }
            Op::BatchNormTrain { relu, .. } => {
                let Some(dy) = self.out_grad(n.outs[0]) else { return Ok(()) };
                let (dgamma, _) = self.contribute(n.ins[1])?;
                let (dbeta, _) = self.contribute(n.ins[2])?;
                let (dx, acc) = if self.needs_grad(n.ins[0]) {
                    self.contribute(n.ins[0])?
                } else {
                    let s = self.g.tensors[n.ins[0]].shape.clone();
                    (self.g.tensor(format!("{name} (unused dx)"), &s, Role::Grad), false)
                };
                let ins = vec![n.ins[0], n.ins[1], n.ins[2], n.outs[1], n.outs[2], dy];
                self.emit(&name, Op::BatchNormBackward { relu: *relu }, ins, vec![dx, dgamma, dbeta], acc);
            }
            Op::BatchNormEval { .. } => {
                return Err(Error::Invalid(format!(
                    "'{}' is an eval-mode batch norm: build the graph in training mode to train it",
                    n.name
                )));
            }
            Op::MaxPool { k, stride, pad } => {
                self.unary(n, &name, Op::MaxPoolBackward { k: *k, stride: *stride, pad: *pad }, true, forward)?
            }
            Op::AvgPool { k, stride, pad } => {
                self.unary(n, &name, Op::AvgPoolBackward { k: *k, stride: *stride, pad: *pad }, false, forward)?
            }
            Op::GlobalAvgPool => self.unary(n, &name, Op::GlobalAvgPoolBackward, false, forward)?,
            Op::Relu => self.unary(n, &name, Op::ReluBackward, true, forward)?,
            Op::L2Normalize => self.unary(n, &name, Op::L2NormalizeBackward, true, forward)?,
            Op::Linear => {
                let Some(dy) = self.out_grad(n.outs[0]) else { return Ok(()) };
                let (x, w, b) = (n.ins[0], n.ins[1], n.ins[2]);
                let x_in = self.fwd(x, forward);
                let (dw, _) = self.contribute(w)?;
                let (db, _) = self.contribute(b)?;
                self.emit(&format!("{name} (params)"), Op::LinearBackwardParams, vec![x_in, dy], vec![dw, db], false);
                if self.needs_grad(x) {
                    let (dx, acc) = self.contribute(x)?;
                    self.emit(&format!("{name} (data)"), Op::LinearBackwardData, vec![dy, w], vec![dx], acc);
                }
            }
            other => {
                return Err(Error::Invalid(format!("autodiff: '{}' ({other:?}) is already a backward op", n.name)))
            }
        }
        Ok(())
    }

    /// Ops with one input and one output; `reads_x`: the backward also needs the input.
    fn unary(&mut self, n: &Node, name: &str, op: Op, reads_x: bool, forward: &[Node]) -> Result<()> {
        let Some(dy) = self.out_grad(n.outs[0]) else { return Ok(()) };
        let x = n.ins[0];
        if !self.needs_grad(x) {
            return Ok(());
        }
        let mut ins = Vec::new();
        if reads_x {
            ins.push(self.fwd(x, forward));
        }
        ins.push(dy);
        let (dx, acc) = self.contribute(x)?;
        self.emit(name, op, ins, vec![dx], acc);
        Ok(())
    }
}

/// The runs of `false` in `w` as half-open ranges.
fn runs(w: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < w.len() {
        if w[i] {
            i += 1;
            continue;
        }
        let s = i;
        while i < w.len() && !w[i] {
            i += 1;
        }
        out.push((s, i));
    }
    out
}
