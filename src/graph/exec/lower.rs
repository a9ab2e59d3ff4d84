//! Lowering: one graph node to the kernel dispatches that compute it.

use super::Executable;
use crate::error::Result;
use crate::gpu::Dispatch;
use crate::graph::{Graph, LossKind, Node, Op};
use crate::ops::{batchnorm, conv, elementwise, loss, pool, Act};

fn dims(g: &Graph, t: usize) -> [usize; 4] {
    super::nchw(&g.tensors[t].shape)
}

fn conv_shape(g: &Graph, x: usize, w: usize, stride: usize, pad: usize) -> conv::Conv2dShape {
    let [n, c, h, wd] = dims(g, x);
    let ws = &g.tensors[w].shape;
    conv::Conv2dShape { n, c_in: c, h, w: wd, c_out: ws[0], kh: ws[2], kw: ws[3], stride, pad }
}

/// x [b, in] and w [out, in] as a 1×1 convolution.
fn linear_shape(g: &Graph, x: usize, w: usize) -> conv::Conv2dShape {
    let [n, c_in, _, _] = dims(g, x);
    let c_out = g.tensors[w].shape[0];
    conv::Conv2dShape { n, c_in, h: 1, w: 1, c_out, kh: 1, kw: 1, stride: 1, pad: 0 }
}

fn bn_shape(g: &Graph, x: usize, eps: f32, momentum: f32, relu: bool) -> batchnorm::BnShape {
    let [n, c, h, w] = dims(g, x);
    batchnorm::BnShape { n, c, h, w, eps, momentum, relu }
}

fn pool_shape(g: &Graph, x: usize, k: usize, stride: usize, pad: usize) -> pool::PoolShape {
    let [n, c, h, w] = dims(g, x);
    pool::PoolShape { n, c, h, w, k, stride, pad }
}

/// f32 elements of scratch the node's kernels need.
pub fn scratch_len(g: &Graph, n: &Node) -> usize {
    match n.op {
        Op::Conv2dBackwardWeight { stride, pad, .. } => {
            // ins [x, dy], outs [dw, ..]
            conv::backward_weight_scratch_len(&conv_shape(g, n.ins[0], n.outs[0], stride, pad))
        }
        Op::BatchNormTrain { eps, momentum, relu, .. } => {
            batchnorm::forward_train_scratch_len(&bn_shape(g, n.ins[0], eps, momentum, relu))
        }
        Op::BatchNormBackward { relu } => batchnorm::backward_scratch_len(&bn_shape(g, n.ins[0], 1e-5, 0.1, relu)),
        Op::LinearBackwardParams => conv::backward_weight_scratch_len(&linear_shape(g, n.ins[0], n.outs[0])),
        Op::Loss(_) => {
            let [b, c, _, _] = dims(g, n.ins[0]);
            loss::LossShape::new(b, c).map(loss::loss_scratch_len).unwrap_or(0)
        }
        _ => 0,
    }
}

pub fn lower(e: &Executable, n: &Node, scratch: &wgpu::Buffer) -> Result<Vec<Dispatch>> {
    let g = &e.graph;
    let gpu = &*e.gpu;
    let (i, o) = (&n.ins, &n.outs);
    let acc = n.accumulate;
    match n.op {
        Op::Conv2d { stride, pad, bias } => {
            let s = conv_shape(g, i[0], i[1], stride, pad);
            let b = bias.then(|| e.buffer(i[2]));
            conv::forward(gpu, &s, e.act(i[0]), e.buffer(i[1]), b, e.act(o[0]))
        }
        Op::Conv2dBackwardData { stride, pad } => {
            // ins [dy, w], outs [dx]
            let s = conv_shape(g, o[0], i[1], stride, pad);
            conv::backward_data(gpu, &s, e.act(i[0]), e.buffer(i[1]), e.act(o[0]), acc)
        }
        Op::Conv2dBackwardWeight { stride, pad, bias } => {
            // ins [x, dy], outs [dw, (db)]
            let s = conv_shape(g, i[0], o[0], stride, pad);
            let db = bias.then(|| e.buffer(o[1]));
            conv::backward_weight(gpu, &s, e.act(i[0]), e.act(i[1]), e.buffer(o[0]), db, scratch)
        }
        Op::BatchNormTrain { eps, momentum, relu, .. } => {
            let s = bn_shape(g, i[0], eps, momentum, relu);
            batchnorm::forward_train(
                gpu,
                &s,
                e.act(i[0]),
                e.buffer(i[1]),
                e.buffer(i[2]),
                e.act(o[0]),
                e.buffer(o[1]),
                e.buffer(o[2]),
                e.buffer(i[3]),
                e.buffer(i[4]),
                scratch,
            )
        }
        Op::BatchNormEval { eps, relu } => {
            let s = bn_shape(g, i[0], eps, 0.1, relu);
            batchnorm::forward_eval(
                gpu,
                &s,
                e.act(i[0]),
                e.buffer(i[1]),
                e.buffer(i[2]),
                e.buffer(i[3]),
                e.buffer(i[4]),
                e.act(o[0]),
            )
        }
        Op::BatchNormRecompute { relu } => {
            // ins [x, gamma, beta, mean, invstd]
            let s = bn_shape(g, i[0], 1e-5, 0.1, relu);
            batchnorm::normalize(
                gpu,
                &s,
                e.act(i[0]),
                e.buffer(i[1]),
                e.buffer(i[2]),
                e.buffer(i[3]),
                e.buffer(i[4]),
                e.act(o[0]),
            )
        }
        Op::BatchNormBackward { relu } => {
            // ins [x, gamma, beta, mean, invstd, dy], outs [dx, dgamma, dbeta]
            let s = bn_shape(g, i[0], 1e-5, 0.1, relu);
            batchnorm::backward(
                gpu,
                &s,
                e.act(i[0]),
                e.act(i[5]),
                e.buffer(i[1]),
                e.buffer(i[2]),
                e.buffer(i[3]),
                e.buffer(i[4]),
                e.act(o[0]),
                e.buffer(o[1]),
                e.buffer(o[2]),
                acc,
                scratch,
            )
        }
        Op::MaxPool { k, stride, pad } => {
            pool::max_forward(gpu, &pool_shape(g, i[0], k, stride, pad), e.act(i[0]), e.act(o[0]))
        }
        Op::MaxPoolBackward { k, stride, pad } => {
            pool::max_backward(gpu, &pool_shape(g, o[0], k, stride, pad), e.act(i[0]), e.act(i[1]), e.act(o[0]), acc)
        }
        Op::AvgPool { k, stride, pad } => {
            pool::avg_forward(gpu, &pool_shape(g, i[0], k, stride, pad), e.act(i[0]), e.act(o[0]))
        }
        Op::AvgPoolBackward { k, stride, pad } => {
            pool::avg_backward(gpu, &pool_shape(g, o[0], k, stride, pad), e.act(i[0]), e.act(o[0]), acc)
        }
        Op::GlobalAvgPool => {
            let [nb, c, h, w] = dims(g, i[0]);
            pool::global_avg_forward(gpu, nb, c, h * w, e.act(i[0]), Act::whole(e.buffer(o[0]), c))
        }
        Op::GlobalAvgPoolBackward => {
            let [nb, c, h, w] = dims(g, o[0]);
            pool::global_avg_backward(gpu, nb, c, h * w, Act::whole(e.buffer(i[0]), c), e.act(o[0]), acc)
        }
        Op::Relu => elementwise::relu_forward(gpu, e.buffer(i[0]), e.buffer(o[0]), g.tensors[i[0]].numel()),
        Op::ReluBackward => elementwise::relu_backward(
            gpu,
            e.buffer(i[0]),
            e.buffer(i[1]),
            e.buffer(o[0]),
            g.tensors[i[0]].numel(),
            acc,
        ),
        // A Linear layer is a 1×1 convolution of a 1×1 image: same weight layout [out, in].
        Op::Linear => {
            let s = linear_shape(g, i[0], i[1]);
            conv::forward(
                gpu,
                &s,
                e.act(i[0]),
                e.buffer(i[1]),
                Some(e.buffer(i[2])),
                Act::whole(e.buffer(o[0]), s.c_out),
            )
        }
        Op::LinearBackwardData => {
            // ins [dy, w], outs [dx]
            let s = linear_shape(g, o[0], i[1]);
            conv::backward_data(gpu, &s, Act::whole(e.buffer(i[0]), s.c_out), e.buffer(i[1]), e.act(o[0]), acc)
        }
        Op::LinearBackwardParams => {
            // ins [x, dy], outs [dw, db]
            let s = linear_shape(g, i[0], o[0]);
            let dy = Act::whole(e.buffer(i[1]), s.c_out);
            conv::backward_weight(gpu, &s, e.act(i[0]), dy, e.buffer(o[0]), Some(e.buffer(o[1])), scratch)
        }
        Op::Loss(kind) => {
            // ins [logits, target, weights], outs [loss, dlogits]
            let [b, c, _, _] = dims(g, i[0]);
            let bufs = loss::LossBuffers {
                logits: e.buffer(i[0]),
                targets: e.buffer(i[1]),
                weights: e.buffer(i[2]),
                loss: e.buffer(o[0]),
                grad: e.buffer(o[1]),
                scratch,
            };
            let (k, gamma) = match kind {
                LossKind::Softmax { gamma } => (loss::LossKind::Softmax, gamma),
                LossKind::Sigmoid { gamma } => (loss::LossKind::Sigmoid, gamma),
            };
            loss::loss(gpu, k, loss::LossShape::new(b, c)?, loss::LossOpts { gamma, scale: 1.0 }, bufs)
        }
        Op::Zero => {
            let [nb, c, h, w] = dims(g, o[0]);
            elementwise::fill_zero(gpu, nb, c, h * w, e.act(o[0]))
        }
    }
}
