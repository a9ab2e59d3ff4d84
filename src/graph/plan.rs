//! The planner: gives every tensor storage before the first step. Tensors that live only
//! inside a step (activations, saved statistics, activation gradients) share a pool of buffers
//! by liveness: a buffer is reused once the tensor in it is dead. Parameters, their gradients,
//! optimiser state, inputs and the loss get buffers of their own.

use super::{Graph, Role, TensorId};
use crate::error::{Error, Result};

/// Where a tensor's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A buffer of the shared pool.
    Pool(usize),
    /// A buffer of its own (inputs, parameters, gradients of parameters, …).
    Own,
    /// Channels of another tensor's storage.
    View,
}

#[derive(Clone, Debug)]
pub struct Plan {
    /// For each tensor of the graph.
    pub slots: Vec<Slot>,
    /// Size in bytes of each pool buffer.
    pub pool: Vec<u64>,
    /// First and last node index at which each storage is used (None: unused).
    pub live: Vec<Option<(usize, usize)>>,
    /// Bytes of tensors with their own buffers, by role.
    pub own_bytes: Vec<(Role, u64)>,
}

fn bytes(g: &Graph, t: TensorId) -> u64 {
    (g.tensors[t].numel().max(1) * 4) as u64
}

fn pooled(role: Role) -> bool {
    matches!(role, Role::Activation | Role::Saved | Role::Grad)
}

/// Whether `t` holds one slice per image, batch outermost (NCHW or [n, features]): such a tensor
/// can be bound one batch chunk at a time.
pub fn batched(g: &Graph, t: TensorId) -> bool {
    matches!(g.tensors[t].role, Role::Input | Role::Activation | Role::Grad)
}

/// Bytes of one image of a batched tensor (of its storage, channels of other views included).
pub fn image_bytes(g: &Graph, t: TensorId) -> u64 {
    let s = storage(g, t);
    bytes(g, s) / g.tensors[s].shape[0].max(1) as u64
}

/// The smallest part of a tensor that one binding must hold: one image of a batched tensor,
/// the whole of any other.
fn unit_bytes(g: &Graph, t: TensorId) -> u64 {
    if batched(g, t) {
        image_bytes(g, t)
    } else {
        bytes(g, t)
    }
}

/// Refuses what cannot run however the batch is split: a tensor larger than a buffer can be, or
/// one image of it (the whole of a parameter) larger than a binding.
fn check_fits(g: &Graph, t: TensorId, max_binding: u64, max_buffer: u64) -> Result<()> {
    let name = &g.tensors[t].name;
    if bytes(g, t) > max_buffer {
        return Err(Error::BufferTooLarge { tensor: name.clone(), bytes: bytes(g, t), limit: max_buffer });
    }
    let unit = unit_bytes(g, t);
    if unit > max_binding {
        let what = if batched(g, t) { format!("one image of tensor '{name}'") } else { format!("tensor '{name}'") };
        return Err(Error::TooLarge { tensor: what, bytes: unit, limit: max_binding });
    }
    Ok(())
}

/// The storage tensor behind `t` (itself unless it is a view).
pub fn storage(g: &Graph, t: TensorId) -> TensorId {
    g.tensors[t].view.map_or(t, |v| v.base)
}

/// Plans storage for `g`. `max_binding` is the device's largest storage binding and
/// `max_buffer` its largest buffer, in bytes. Tensors larger than a binding are fine: the
/// executor binds them a batch chunk at a time.
pub fn plan(g: &Graph, max_binding: u64, max_buffer: u64) -> Result<Plan> {
    let n = g.tensors.len();
    let mut live: Vec<Option<(usize, usize)>> = vec![None; n];
    for (i, node) in g.nodes.iter().enumerate() {
        for &t in node.ins.iter().chain(&node.outs) {
            let s = storage(g, t);
            live[s] = Some(match live[s] {
                None => (i, i),
                Some((a, b)) => (a.min(i), b.max(i)),
            });
        }
    }
    for t in (0..n).filter(|&t| g.tensors[t].view.is_none()) {
        check_fits(g, t, max_binding, max_buffer)?;
    }

    // Greedy by first use; best fit among free buffers, else grow the largest free one.
    let mut order: Vec<TensorId> = (0..n)
        .filter(|&t| {
            g.tensors[t].view.is_none() && pooled(g.tensors[t].role) && live[t].is_some() && !g.keep.contains(&t)
        })
        .collect();
    order.sort_by_key(|&t| (live[t].unwrap().0, std::cmp::Reverse(bytes(g, t))));
    let mut slots: Vec<Slot> =
        (0..n).map(|t| if g.tensors[t].view.is_some() { Slot::View } else { Slot::Own }).collect();
    let mut pool: Vec<u64> = Vec::new();
    let mut busy_until: Vec<usize> = Vec::new();
    for t in order {
        let (start, end) = live[t].unwrap();
        let need = bytes(g, t);
        let free: Vec<usize> = (0..pool.len()).filter(|&b| busy_until[b] < start).collect();
        let fit = free.iter().copied().filter(|&b| pool[b] >= need).min_by_key(|&b| pool[b]);
        let b = match fit.or_else(|| free.iter().copied().max_by_key(|&b| pool[b])) {
            Some(b) => {
                pool[b] = pool[b].max(need);
                b
            }
            None => {
                pool.push(need);
                busy_until.push(0);
                pool.len() - 1
            }
        };
        busy_until[b] = end;
        slots[t] = Slot::Pool(b);
    }

    let mut own_bytes: Vec<(Role, u64)> = Vec::new();
    for (t, slot) in slots.iter().enumerate() {
        if *slot == Slot::Own && (!pooled(g.tensors[t].role) || g.keep.contains(&t)) {
            let role = g.tensors[t].role;
            match own_bytes.iter_mut().find(|(r, _)| *r == role) {
                Some((_, b)) => *b += bytes(g, t),
                None => own_bytes.push((role, bytes(g, t))),
            }
        }
    }
    Ok(Plan { slots, pool, live, own_bytes })
}

impl Plan {
    /// Bytes of the shared pool.
    pub fn pool_bytes(&self) -> u64 {
        self.pool.iter().sum()
    }

    /// Bytes of every tensor with its own buffer.
    pub fn own_total(&self) -> u64 {
        self.own_bytes.iter().map(|(_, b)| b).sum()
    }
}

/// Peak-memory sum if nothing were shared: every pooled tensor in a buffer of its own.
pub fn unshared_bytes(g: &Graph) -> u64 {
    (0..g.tensors.len())
        .filter(|&t| g.tensors[t].view.is_none() && pooled(g.tensors[t].role))
        .map(|t| bytes(g, t))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×3 convolution of a [16, 8, 32, 32] batch: 32 KiB per image of x and y, 512 KiB each.
    fn conv_graph() -> Graph {
        let mut g = Graph::new();
        let x = g.input("x", &[16, 8, 32, 32]);
        let w = g.param("w", &[8, 8, 3, 3]);
        g.conv2d("conv", x, w, None, 1, 1, None).unwrap();
        g
    }

    #[test]
    fn tensors_larger_than_a_binding_are_planned() {
        // 64 KiB bindings: x and y run two images per chunk.
        assert!(plan(&conv_graph(), 64 << 10, 1 << 30).is_ok());
    }

    #[test]
    fn one_image_larger_than_a_binding_is_refused_by_name() {
        let e = plan(&conv_graph(), 16 << 10, 1 << 30).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::TooLarge { bytes: 32768, limit: 16384, .. }), "{msg}");
        assert!(msg.contains("one image of tensor 'x'") && msg.contains("16384"), "{msg}");
        assert!(msg.contains("smaller batch size or image size"), "{msg}");
    }

    #[test]
    fn a_tensor_larger_than_a_buffer_is_refused_by_name() {
        let e = plan(&conv_graph(), 64 << 10, 256 << 10).unwrap_err();
        assert!(matches!(e, Error::BufferTooLarge { bytes: 524288, .. }), "{e}");
        assert!(e.to_string().contains("tensor 'x'") && e.to_string().contains("max_buffer_size"), "{e}");
    }
}
