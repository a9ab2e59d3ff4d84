//! The fully connected layer, PyTorch layout: `y[B, out] = x[B, in] · Wᵀ + b` with `W` of shape
//! `[out, in]`. Every product is one [`gemm`](super::gemm) call on views of the same buffers.

use crate::error::{Error, Result};
use crate::gpu::{BufRange, Dispatch, Gpu};
use crate::ops::gemm::{self, GemmShape, MatrixLayout as L};
use crate::ops::Act;

/// `batch` rows of `in_features` in, `out_features` out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearShape {
    pub batch: usize,
    pub in_features: usize,
    pub out_features: usize,
}

impl LinearShape {
    pub fn new(batch: usize, in_features: usize, out_features: usize) -> Result<Self> {
        if batch == 0 || in_features == 0 || out_features == 0 {
            return Err(Error::shape(
                "linear",
                format!("batch, in and out features must be at least 1 (got {batch}, {in_features}, {out_features})"),
            ));
        }
        Ok(LinearShape { batch, in_features, out_features })
    }

    /// y = x · Wᵀ: A = x [B, in], B = Wᵀ (W read transposed), C = y [B, out].
    fn forward_gemm(&self, x: L, y: L) -> Result<GemmShape> {
        let (n, i, o) = (self.batch, self.in_features, self.out_features);
        GemmShape::new(n, o, i, 1, x, L::transposed(i, o), y)
    }

    /// dx = dy · W: A = dy [B, out], B = W [out, in], C = dx [B, in].
    fn input_gemm(&self, dy: L, dx: L) -> Result<GemmShape> {
        let (n, i, o) = (self.batch, self.in_features, self.out_features);
        GemmShape::new(n, i, o, 1, dy, L::row_major(o, i), dx)
    }

    /// dW = dyᵀ · x: A = dyᵀ (dy read transposed), B = x [B, in], C = dW [out, in].
    fn weight_gemm(&self, x: L, dy: L) -> Result<GemmShape> {
        let (n, i, o) = (self.batch, self.in_features, self.out_features);
        GemmShape::new(o, i, n, 1, dy.t(), x, L::row_major(o, i))
    }
}

/// The `batch × features` matrix of a view of `[batch, features, 1, 1]` activations: image r's
/// feature f at `r·c_total + c_off + f` (a channel slice of a wider buffer, or all of it).
fn rows(a: &Act) -> L {
    L { offset: a.c_off as usize, row_stride: a.c_total as usize, col_stride: 1, batch_stride: 0 }
}

/// y = x · Wᵀ + b.
pub fn forward<'a>(
    gpu: &Gpu,
    s: &LinearShape,
    x: Act<'a>,
    w: impl Into<BufRange<'a>>,
    b: impl Into<BufRange<'a>>,
    y: Act<'a>,
) -> Result<Vec<Dispatch>> {
    let mut d = gemm::gemm(gpu, &s.forward_gemm(rows(&x), rows(&y))?, x.buf, w, y.buf, false, 1.0)?;
    // One bias per column, the same in every row.
    let bias = L { offset: 0, row_stride: 0, col_stride: 1, batch_stride: 0 };
    d.push(gemm::add_bias(gpu, 1, s.batch, s.out_features, (b.into(), bias), (y.buf, rows(&y)))?);
    Ok(d)
}

/// dx (+)= dy · W.
pub fn backward_input<'a>(
    gpu: &Gpu,
    s: &LinearShape,
    dy: Act<'a>,
    w: impl Into<BufRange<'a>>,
    dx: Act<'a>,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    gemm::gemm(gpu, &s.input_gemm(rows(&dy), rows(&dx))?, dy.buf, w, dx.buf, accumulate, 1.0)
}

/// dW = dyᵀ · x and db = Σ_rows dy (a parallel column reduction).
pub fn backward_params<'a>(
    gpu: &Gpu,
    s: &LinearShape,
    x: Act<'a>,
    dy: Act<'a>,
    dw: impl Into<BufRange<'a>>,
    db: impl Into<BufRange<'a>>,
) -> Result<Vec<Dispatch>> {
    let mut d = gemm::gemm(gpu, &s.weight_gemm(rows(&x), rows(&dy))?, dy.buf, x.buf, dw, false, 1.0)?;
    let out = L::row_major(1, s.out_features);
    d.push(gemm::col_sum(gpu, s.batch, s.out_features, (dy.buf, rows(&dy)), (db.into(), out), false, 1.0)?);
    Ok(d)
}

pub fn forward_ref(s: &LinearShape, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    let (i_n, o_n) = (s.in_features, s.out_features);
    let mut y = vec![0.0; s.batch * o_n];
    for r in 0..s.batch {
        for o in 0..o_n {
            y[r * o_n + o] = b[o] + (0..i_n).map(|i| x[r * i_n + i] * w[o * i_n + i]).sum::<f64>();
        }
    }
    y
}

pub fn backward_input_ref(s: &LinearShape, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let (i_n, o_n) = (s.in_features, s.out_features);
    let mut dx = vec![0.0; s.batch * i_n];
    for r in 0..s.batch {
        for i in 0..i_n {
            dx[r * i_n + i] = (0..o_n).map(|o| dy[r * o_n + o] * w[o * i_n + i]).sum();
        }
    }
    dx
}

/// (dW, db).
pub fn backward_params_ref(s: &LinearShape, x: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (i_n, o_n) = (s.in_features, s.out_features);
    let mut dw = vec![0.0; o_n * i_n];
    let mut db = vec![0.0; o_n];
    for o in 0..o_n {
        for i in 0..i_n {
            dw[o * i_n + i] = (0..s.batch).map(|r| dy[r * o_n + o] * x[r * i_n + i]).sum();
        }
        db[o] = (0..s.batch).map(|r| dy[r * o_n + o]).sum();
    }
    (dw, db)
}
