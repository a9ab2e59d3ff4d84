use crate::common::*;
use tailor::gpu::BufRange;
use tailor::ops::conv::{self, Conv2dShape, Tiles};
use tailor::ops::Act;

#[allow(clippy::too_many_arguments)]
fn shape(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Conv2dShape {
    Conv2dShape { n, c_in, h, w, c_out, kh: k, kw: k, stride, pad }
}

/// A tensor of `c` channels living at channels `off..off + c` of a buffer of `tot` channels whose
/// other channels hold junk that the kernels must leave alone.
struct View {
    off: usize,
    tot: usize,
    full: Vec<f64>,
}

impl View {
    fn new(rng: &mut Rng, data: &[f64], n: usize, c: usize, pix: usize, off: usize, tot: usize) -> View {
        let mut full = rng.vec(n * tot * pix, -3.0, 3.0);
        for i in 0..n {
            let (dst, src) = ((i * tot + off) * pix, i * c * pix);
            full[dst..dst + c * pix].copy_from_slice(&data[src..src + c * pix]);
        }
        View { off, tot, full }
    }
    /// `full` with channels `off..off + c` replaced by `data`.
    fn with(&self, data: &[f64], n: usize, c: usize) -> Vec<f64> {
        let pix = self.full.len() / (n * self.tot);
        let mut out = self.full.clone();
        for i in 0..n {
            let (dst, src) = ((i * self.tot + self.off) * pix, i * c * pix);
            out[dst..dst + c * pix].copy_from_slice(&data[src..src + c * pix]);
        }
        out
    }
    fn act<'a>(&self, buf: &'a wgpu::Buffer) -> Act<'a> {
        Act::slice(buf, self.off, self.tot)
    }
}

/// Sums of up to a few thousand f32 products: compare relative to the largest reference value.
const TOL: f64 = 2e-6;

/// Runs all three directions of `s` on the GPU against the references; `views` puts every
/// activation in a channel slice of a wider buffer, and the weight and bias (and their
/// gradients) side by side in one buffer at aligned offsets, as the parameter arena does.
fn check(s: Conv2dShape, with_bias: bool, views: bool, seed: u64) {
    let g = gpu();
    let mut rng = Rng::new(seed);
    let (hw, pq) = (s.h * s.w, s.p() * s.q());
    let x = rng.vec(s.x_len(), -1.0, 1.0);
    let wgt = rng.vec(s.weight_len(), -1.0, 1.0);
    let b = rng.vec(s.c_out, -1.0, 1.0);
    let dy = rng.vec(s.y_len(), -1.0, 1.0);
    let (pre, post) = if views { (5, 2) } else { (0, 0) };
    let xv = View::new(&mut rng, &x, s.n, s.c_in, hw, pre, s.c_in + pre + post);
    let ytot = s.c_out + pre + post;
    let yv = View { off: post, tot: ytot, full: rng.vec(s.n * ytot * pq, -3.0, 3.0) };
    let dyv = View::new(&mut rng, &dy, s.n, s.c_out, pq, pre, s.c_out + pre);
    let what = format!("{s:?} bias={with_bias} views={views}");

    let bx = up(&g, &xv.full);
    let (params, offsets) = if views { packed(&g, &[&wgt, &b]) } else { packed(&g, &[]) };
    let (bw, bb) = (up(&g, &wgt), up(&g, &b));
    let (w_range, b_range): (BufRange, BufRange) = if views {
        let at = |i: usize, len: usize| BufRange { buf: &params, offset: offsets[i], size: len as u64 * 4 };
        (at(0, s.weight_len()), at(1, s.c_out))
    } else {
        ((&bw).into(), (&bb).into())
    };
    let bias = with_bias.then_some(b_range);
    let by = up(&g, &yv.full);
    let d = conv::forward(&g, &s, xv.act(&bx), w_range, bias, yv.act(&by)).unwrap();
    let got = run_read(&g, &d, &by, yv.full.len());
    let want = conv::forward_ref(&s, &x, &wgt, with_bias.then_some(&b[..]));
    assert_close_scaled(&format!("forward {what}"), &got, &yv.with(&want, s.n, s.c_out), TOL);

    let bdy = up(&g, &dyv.full);
    let want = conv::backward_data_ref(&s, &dy, &wgt);
    let old = rng.vec(s.x_len(), -1.0, 1.0);
    for accumulate in [false, true] {
        let bdx = up(&g, &xv.with(&old, s.n, s.c_in));
        let d = conv::backward_data(&g, &s, dyv.act(&bdy), w_range, xv.act(&bdx), accumulate).unwrap();
        let got = run_read(&g, &d, &bdx, xv.full.len());
        let w: Vec<f64> = want.iter().zip(&old).map(|(a, o)| if accumulate { a + o } else { *a }).collect();
        assert_close_scaled(&format!("backward data acc={accumulate} {what}"), &got, &xv.with(&w, s.n, s.c_in), TOL);
    }

    let (junk_w, junk_b) = (rng.vec(s.weight_len(), -1.0, 1.0), rng.vec(s.c_out, -1.0, 1.0));
    let (grads, goff) = packed(&g, &[&junk_w, &junk_b]);
    let (gw, gb) = if views { (goff[0], goff[1]) } else { (0, 0) };
    let (bdw, bdb) = if views { (grads.clone(), grads.clone()) } else { (up(&g, &junk_w), up(&g, &junk_b)) };
    let dw_range = BufRange { buf: &bdw, offset: gw, size: s.weight_len() as u64 * 4 };
    let db_range = BufRange { buf: &bdb, offset: gb, size: s.c_out as u64 * 4 };
    let scratch = up(&g, &rng.vec(conv::backward_weight_scratch_len(&s), -1.0, 1.0));
    let dbias = with_bias.then_some(db_range);
    let d = conv::backward_weight(&g, &s, xv.act(&bx), dyv.act(&bdy), dw_range, dbias, &scratch).unwrap();
    g.run(&d).unwrap();
    let got = read_at(&g, &bdw, gw, s.weight_len());
    assert_close_scaled(&format!("backward weight {what}"), &got, &conv::backward_weight_ref(&s, &x, &dy), TOL);
    if with_bias {
        let got = read_at(&g, &bdb, gb, s.c_out);
        assert_close_scaled(&format!("backward bias {what}"), &got, &conv::backward_bias_ref(&s, &dy), TOL);
    }
}

#[test]
fn pointwise_matches_reference() {
    check(shape(1, 13, 9, 9, 76, 1, 1, 0), true, false, 1);
    check(shape(2, 76, 7, 7, 3, 1, 1, 0), false, true, 2);
    check(shape(3, 3, 17, 15, 13, 1, 1, 0), true, true, 3);
    // h*w a multiple of 4: the GEMM's vec4 loads along the pixels.
    check(shape(2, 13, 6, 10, 76, 1, 1, 0), true, true, 14);
    check(shape(1, 76, 4, 5, 13, 1, 1, 0), false, false, 15);
    // Forward (a bias added by a second dispatch) and backward data run as GEMMs: on a GPU
    // their workgroups fitted to the images (64 lanes, 16 lanes for 8×8, the fewest empty
    // columns for 14×14 and 2×2), on a CPU device 8 lanes; and 1-pixel images.
    check(shape(2, 13, 16, 16, 76, 1, 1, 0), false, true, 20);
    check(shape(1, 76, 32, 16, 13, 1, 1, 0), true, true, 21);
    check(shape(3, 5, 16, 16, 3, 1, 1, 0), false, false, 22);
    check(shape(2, 13, 8, 8, 11, 1, 1, 0), false, true, 23);
    check(shape(1, 17, 14, 14, 9, 1, 1, 0), false, true, 24);
    check(shape(2, 9, 2, 2, 5, 1, 1, 0), false, false, 25);
    check(shape(3, 5, 1, 1, 7, 1, 1, 0), false, true, 26);
}

/// An image of more column tiles than one grid dimension holds at 8 lanes (65535 × 32 pixels):
/// the 1×1 GEMMs widen their workgroups instead of failing.
#[test]
fn pointwise_gemm_on_an_image_wider_than_a_grid_dimension() {
    let g = gpu();
    let max = tailor::gpu::MAX_GROUPS_PER_DIM as usize;
    let s = shape(1, 2, 1, max * 32 + 5, 3, 1, 1, 0);
    let cfg = conv::pointwise_gemm_config(&g, &s).unwrap();
    assert!((s.h * s.w).div_ceil((cfg.wg * cfg.tn) as usize) <= max, "{cfg:?}");
    check(s, false, false, 27);
}

#[test]
pub(crate) fn three_by_three_matches_reference() {
    check(shape(1, 13, 15, 15, 13, 3, 1, 1), false, false, 4);
    check(shape(2, 3, 17, 9, 76, 3, 1, 1), true, true, 5);
    check(shape(1, 76, 7, 7, 3, 3, 1, 0), true, true, 6);
}

#[test]
fn stride_one_with_few_output_channels_matches_reference() {
    // Backward data walks (tap, channel) as one index when c_out is not a multiple of 8.
    check(shape(1, 48, 10, 11, 12, 3, 1, 1), false, true, 16); // a DenseNet-BC 3x3, small
    check(shape(2, 13, 6, 9, 3, 5, 1, 2), true, false, 17);
    let s = Conv2dShape { n: 3, c_in: 3, h: 7, w: 12, c_out: 13, kh: 3, kw: 5, stride: 1, pad: 2 };
    check(s, false, true, 18);
    check(shape(1, 5, 9, 8, 13, 7, 1, 3), true, true, 19); // 49 taps: too many for the mask
}

/// Every candidate tile set of a shape (and a few odd ones) gives bit-identical results: the
/// tuned choice may differ between devices and runs, the numbers may not.
#[test]
fn every_tile_choice_gives_bit_identical_results() {
    use tailor::ops::tune::{self, Pass};
    let g = gpu();
    let extra = [Tiles { wg: 8, tm: 1, tn: 1 }, Tiles { wg: 24, tm: 5, tn: 3 }, Tiles { wg: 64, tm: 16, tn: 4 }];
    let shapes = [
        shape(1, 48, 10, 11, 12, 3, 1, 1),
        shape(2, 13, 6, 10, 76, 1, 1, 0),
        shape(3, 76, 5, 7, 13, 1, 1, 0),
        shape(2, 3, 17, 9, 24, 3, 1, 1),
        shape(1, 13, 15, 15, 3, 3, 2, 1),
        shape(2, 16, 5, 8, 13, 3, 1, 1), // row windows, scalar and vec4 (tn = 4)
    ];
    for (i, s) in shapes.iter().enumerate() {
        let mut rng = Rng::new(100 + i as u64);
        let pre = 3;
        let (x, dy) = (rng.vec(s.x_len(), -1.0, 1.0), rng.vec(s.y_len(), -1.0, 1.0));
        let xv = View::new(&mut rng, &x, s.n, s.c_in, s.h * s.w, pre, s.c_in + pre + 1);
        let dyv = View::new(&mut rng, &dy, s.n, s.c_out, s.p() * s.q(), pre, s.c_out + pre);
        let (bx, bdy) = (up(&g, &xv.full), up(&g, &dyv.full));
        let (bw, bb) = (up(&g, &rng.vec(s.weight_len(), -1.0, 1.0)), up(&g, &rng.vec(s.c_out, -1.0, 1.0)));
        let old = up(&g, &xv.full);
        for pass in [Pass::Forward, Pass::BackwardData, Pass::BackwardWeight] {
            let mut tiles = tune::candidates(pass, s);
            tiles.extend(extra);
            let mut first: Option<Vec<u32>> = None;
            for t in tiles {
                let bits: Vec<u32> = match pass {
                    Pass::Forward => {
                        let y = up(&g, &dyv.full);
                        let d =
                            conv::forward_tiled(&g, s, xv.act(&bx), &bw, Some((&bb).into()), dyv.act(&y), t).unwrap();
                        g.run(&d).unwrap();
                        g.read::<f32>(&y, dyv.full.len()).unwrap().iter().map(|v| v.to_bits()).collect()
                    }
                    Pass::BackwardData => {
                        let dx = g.zeros("dx", xv.full.len()).unwrap();
                        let mut enc = g.device.create_command_encoder(&Default::default());
                        enc.copy_buffer_to_buffer(&old, 0, &dx, 0, old.size());
                        g.queue.submit([enc.finish()]);
                        let d = conv::backward_data_tiled(&g, s, dyv.act(&bdy), &bw, xv.act(&dx), true, t).unwrap();
                        g.run(&d).unwrap();
                        g.read::<f32>(&dx, xv.full.len()).unwrap().iter().map(|v| v.to_bits()).collect()
                    }
                    Pass::BackwardWeight => {
                        let dw = g.zeros("dw", s.weight_len()).unwrap();
                        let db = g.zeros("db", s.c_out).unwrap();
                        let scratch = g.zeros("scratch", conv::backward_weight_scratch_len(s)).unwrap();
                        let (x, dy) = (xv.act(&bx), dyv.act(&bdy));
                        let d =
                            conv::backward_weight_tiled(&g, s, x, dy, &dw, Some((&db).into()), &scratch, t).unwrap();
                        g.run(&d).unwrap();
                        let mut v = g.read::<f32>(&dw, s.weight_len()).unwrap();
                        v.extend(g.read::<f32>(&db, s.c_out).unwrap());
                        v.iter().map(|v| v.to_bits()).collect()
                    }
                };
                match &first {
                    None => first = Some(bits),
                    Some(f) => assert!(f == &bits, "{pass:?} {s:?}: tiles {t:?} differ from the heuristic's"),
                }
            }
        }
    }
}

/// The row-window forward of 3×3 stride-1 pad-1 convolutions (`conv::row_window_forward`):
/// rows that are not a multiple of the 4 pixels a lane owns, tiny images, odd channel counts,
/// batch 1, channel views, and rows of whole vec4s (`forward_3x3_v4`).
#[test]
fn three_by_three_row_windows_match_reference() {
    let shapes = [
        shape(1, 13, 7, 5, 3, 3, 1, 1),
        shape(2, 13, 1, 1, 13, 3, 1, 1),
        shape(1, 8, 2, 9, 13, 3, 1, 1),
        shape(3, 9, 5, 2, 12, 3, 1, 1),
        shape(2, 48, 8, 8, 12, 3, 1, 1),  // vec4 rows
        shape(1, 13, 4, 12, 17, 3, 1, 1), // vec4 rows, two row tiles
        shape(2, 16, 3, 4, 3, 3, 1, 1),   // one vec4 per row: both window ends padding
    ];
    for (i, s) in shapes.into_iter().enumerate() {
        assert!(conv::row_window_forward(&s), "{s:?}");
        check(s, i % 2 == 0, i % 3 != 1, 40 + i as u64);
    }
    // Fewer than 8 input channels keep forward_flat.
    assert!(!conv::row_window_forward(&shape(1, 3, 8, 8, 12, 3, 1, 1)));
    check(shape(1, 3, 2, 9, 13, 3, 1, 1), true, true, 50);
}

/// The 8-pixels-per-lane forward of 3×3 stride-1 pad-1 convolutions on rows of a multiple of 4
/// pixels (`forward_3x3_v8`, transposed weights; `forward_3x3_v8_oihw` with 16-row tiles): rows
/// whose last 8-pixel segment is half empty, one-row and one-vec4 images, batch 1, odd channel
/// counts (a last block of 1..8 input channels), 12, 16 and 32 output channels (one or two row
/// tiles), channel views and bias (`check` runs them all); 7×7 keeps the scalar row window.
#[test]
fn three_by_three_forward_v8_matches_reference() {
    let shapes = [
        shape(1, 8, 5, 8, 12, 3, 1, 1),
        shape(2, 9, 1, 4, 13, 3, 1, 1),   // one vec4 per row: both window ends padding
        shape(1, 13, 3, 12, 32, 3, 1, 1), // the second segment's second vec4 is past the row
        shape(1, 17, 7, 7, 12, 3, 1, 1),
        shape(3, 17, 4, 16, 20, 3, 1, 1), // two row tiles of 12, the second partly empty
        shape(1, 48, 8, 8, 12, 3, 1, 1),  // DenseNet-BC
        shape(1, 128, 4, 8, 32, 3, 1, 1), // DenseNet-121: 16-row tiles, OIHW weights
    ];
    for (i, s) in shapes.into_iter().enumerate() {
        assert!(conv::row_window_forward(&s), "{s:?}");
        let t = Tiles::forward(&s);
        assert_eq!(t.tn == 8, s.w % 4 == 0, "{s:?} {t:?}");
        check(s, i % 2 == 0, i % 3 != 1, 80 + i as u64);
    }
}

/// The forward of 3×3 stride-1 pad-1 convolutions in every tile shape it takes (1..4 or 8
/// pixels per lane, any channel tile: transposed weights padded to whole vec4s or OIHW ones, any
/// workgroup size) gives bit-identical results, with bias, into a channel view.
#[test]
pub(crate) fn three_by_three_forward_tiles_are_bit_identical() {
    use tailor::ops::tune::{self, Pass};
    let g = gpu();
    let shapes = [shape(2, 13, 5, 12, 20, 3, 1, 1), shape(1, 48, 4, 8, 12, 3, 1, 1), shape(1, 9, 3, 7, 17, 3, 1, 1)];
    for (i, s) in shapes.iter().enumerate() {
        let mut rng = Rng::new(300 + i as u64);
        let x = rng.vec(s.x_len(), -1.0, 1.0);
        let xv = View::new(&mut rng, &x, s.n, s.c_in, s.h * s.w, 2, s.c_in + 3);
        let ytot = s.c_out + 2;
        let junk = rng.vec(s.n * ytot * s.h * s.w, -3.0, 3.0);
        let (bx, bw, bb) =
            (up(&g, &xv.full), up(&g, &rng.vec(s.weight_len(), -1.0, 1.0)), up(&g, &rng.vec(s.c_out, -1.0, 1.0)));
        let mut tiles = tune::candidates(Pass::Forward, s);
        for tn in [1, 3, 4, 8] {
            for (wg, tm) in [(8, 1), (24, 5), (32, 12), (16, 16)] {
                tiles.push(Tiles { wg, tm, tn });
            }
        }
        let mut first: Option<Vec<u32>> = None;
        for t in tiles {
            if !tune::valid(Pass::Forward, s, t) {
                assert!(t.tn == 8 && s.w % 4 != 0, "{s:?} {t:?}");
                continue;
            }
            let y = up(&g, &junk);
            let d =
                conv::forward_tiled(&g, s, xv.act(&bx), &bw, Some((&bb).into()), Act::slice(&y, 1, ytot), t).unwrap();
            g.run(&d).unwrap();
            let bits: Vec<u32> = g.read::<f32>(&y, junk.len()).unwrap().iter().map(|v| v.to_bits()).collect();
            match &first {
                None => first = Some(bits),
                Some(f) => assert!(f == &bits, "{s:?}: tiles {t:?} differ from the heuristic's"),
            }
        }
    }
}

/// The row-window backward weight of 3×3 stride-1 pad-1 convolutions
/// (`conv::row_window_backward_weight`: one input channel per lane, 8-pixel row segments,
/// `_v4` on rows of a multiple of 4 pixels): odd and tiny images (a segment past the row's end,
/// one pixel), batch 1, odd channel counts (input channels not filling a workgroup, output
/// channels in one or several tiles), channel views and bias (`check` runs them all).
#[test]
fn three_by_three_backward_weight_matches_reference() {
    let shapes = [
        shape(1, 8, 5, 8, 12, 3, 1, 1),
        shape(2, 9, 1, 4, 13, 3, 1, 1),
        shape(1, 13, 3, 12, 32, 3, 1, 1), // 32 output channels: tiles of 8
        shape(1, 17, 7, 7, 12, 3, 1, 1),
        shape(3, 17, 1, 1, 20, 3, 1, 1), // one pixel: every tap but the centre is padding
        shape(2, 40, 6, 14, 5, 3, 1, 1), // 40 input channels: two workgroups of 32, one partly empty
        shape(4, 48, 8, 8, 12, 3, 1, 1), // DenseNet-BC: several slices
    ];
    for (i, s) in shapes.into_iter().enumerate() {
        assert!(conv::row_window_backward_weight(&s), "{s:?}");
        check(s, i % 2 == 1, i % 3 != 2, 120 + i as u64);
    }
    assert!(!conv::row_window_backward_weight(&shape(1, 16, 8, 8, 12, 3, 2, 1)));
    // Fewer than 8 input channels (the stem) keep backward_weight.
    assert!(!conv::row_window_backward_weight(&shape(1, 3, 8, 8, 24, 3, 1, 1)));
}

/// The backward weight (and bias) of 3×3 stride-1 pad-1 convolutions in every tile shape it
/// takes gives bit-identical results: the slices and each slice's order of pixels depend on the
/// shape only.
#[test]
fn three_by_three_backward_weight_tiles_are_bit_identical() {
    use tailor::ops::tune::{self, Pass};
    let g = gpu();
    let shapes = [shape(3, 13, 5, 12, 20, 3, 1, 1), shape(2, 48, 8, 8, 12, 3, 1, 1), shape(1, 9, 3, 7, 17, 3, 1, 1)];
    for (i, s) in shapes.iter().enumerate() {
        let mut rng = Rng::new(400 + i as u64);
        let (x, dy) = (rng.vec(s.x_len(), -1.0, 1.0), rng.vec(s.y_len(), -1.0, 1.0));
        let xv = View::new(&mut rng, &x, s.n, s.c_in, s.h * s.w, 2, s.c_in + 3);
        let dyv = View::new(&mut rng, &dy, s.n, s.c_out, s.h * s.w, 1, s.c_out + 1);
        let (bx, bdy) = (up(&g, &xv.full), up(&g, &dyv.full));
        let mut tiles = tune::candidates(Pass::BackwardWeight, s);
        for tn in [1, 2, 4] {
            for (wg, tm) in [(8, 1), (24, 5), (32, 12), (16, 16), (64, 8)] {
                tiles.push(Tiles { wg, tm, tn });
            }
        }
        let mut first: Option<Vec<u32>> = None;
        for t in tiles {
            let dw = g.zeros("dw", s.weight_len()).unwrap();
            let db = g.zeros("db", s.c_out).unwrap();
            let scratch = g.zeros("scratch", conv::backward_weight_scratch_len(s)).unwrap();
            let (x, dy) = (xv.act(&bx), dyv.act(&bdy));
            let d = conv::backward_weight_tiled(&g, s, x, dy, &dw, Some((&db).into()), &scratch, t).unwrap();
            g.run(&d).unwrap();
            let mut v = g.read::<f32>(&dw, s.weight_len()).unwrap();
            v.extend(g.read::<f32>(&db, s.c_out).unwrap());
            let bits: Vec<u32> = v.iter().map(|v| v.to_bits()).collect();
            match &first {
                None => first = Some(bits),
                Some(f) => assert!(f == &bits, "{s:?}: tiles {t:?} differ from the heuristic's"),
            }
        }
    }
}

/// The row-window backward data of 3×3 stride-1 pad-1 convolutions (`backward_data_3x3`, `_v4`
/// and, on rows of a multiple of 4 pixels, `_v8` with 8 pixels per lane): odd and tiny images,
/// rows whose last 8-pixel segment is half empty, batch 1, odd channel counts (a last block of
/// at most 4 output channels, or of 5..8), channel views, accumulate (`check` runs both).
#[test]
fn three_by_three_backward_data_matches_reference() {
    let shapes = [
        shape(1, 13, 5, 7, 3, 3, 1, 1),
        shape(2, 3, 1, 1, 13, 3, 1, 1),
        shape(1, 13, 3, 2, 12, 3, 1, 1),
        shape(3, 16, 5, 12, 13, 3, 1, 1), // v8: the second segment's second vec4 is past the row
        shape(1, 48, 4, 8, 12, 3, 1, 1),  // DenseNet-BC: 12 = a block of 8 and one of 4
        shape(2, 9, 7, 4, 5, 3, 1, 1),    // v8 on 4-pixel rows
        shape(1, 20, 6, 6, 32, 3, 1, 1),  // two row tiles, 4 blocks of 8
        shape(2, 17, 3, 16, 1, 3, 1, 1),
    ];
    for (i, s) in shapes.into_iter().enumerate() {
        assert!(conv::row_window_backward_data(&s), "{s:?}");
        check(s, i % 2 == 1, i % 3 != 2, 60 + i as u64);
    }
    assert!(!conv::row_window_backward_data(&shape(1, 16, 8, 8, 12, 3, 2, 1)));
    assert!(!conv::row_window_backward_data(&shape(1, 16, 8, 8, 12, 3, 1, 0)));
}

/// The backward data of 3×3 stride-1 pad-1 convolutions in every tile shape it takes (1..4 or 8
/// pixels per lane, any channel tile, any workgroup size) gives bit-identical results, with
/// accumulation into a channel view.
#[test]
pub(crate) fn three_by_three_backward_data_tiles_are_bit_identical() {
    use tailor::ops::tune::{self, Pass};
    let g = gpu();
    let shapes = [shape(2, 13, 5, 12, 13, 3, 1, 1), shape(1, 48, 4, 8, 12, 3, 1, 1), shape(1, 5, 3, 7, 9, 3, 1, 1)];
    for (i, s) in shapes.iter().enumerate() {
        let mut rng = Rng::new(200 + i as u64);
        let (x, dy) = (rng.vec(s.x_len(), -1.0, 1.0), rng.vec(s.y_len(), -1.0, 1.0));
        let xv = View::new(&mut rng, &x, s.n, s.c_in, s.h * s.w, 2, s.c_in + 3);
        let dyv = View::new(&mut rng, &dy, s.n, s.c_out, s.h * s.w, 1, s.c_out + 1);
        let (bdy, bw) = (up(&g, &dyv.full), up(&g, &rng.vec(s.weight_len(), -1.0, 1.0)));
        let mut tiles = tune::candidates(Pass::BackwardData, s);
        for tn in [1, 3, 4, 8] {
            for (wg, tm) in [(8, 1), (24, 5)] {
                tiles.push(Tiles { wg, tm, tn });
            }
        }
        let mut first: Option<Vec<u32>> = None;
        for t in tiles {
            if !tune::valid(Pass::BackwardData, s, t) {
                assert!(t.tn == 8 && s.w % 4 != 0, "{s:?} {t:?}");
                continue;
            }
            let dx = up(&g, &xv.full);
            let d = conv::backward_data_tiled(&g, s, dyv.act(&bdy), &bw, xv.act(&dx), true, t).unwrap();
            g.run(&d).unwrap();
            let bits: Vec<u32> = g.read::<f32>(&dx, xv.full.len()).unwrap().iter().map(|v| v.to_bits()).collect();
            match &first {
                None => first = Some(bits),
                Some(f) => assert!(f == &bits, "{s:?}: tiles {t:?} differ from the heuristic's"),
            }
        }
    }
}

#[test]
fn strided_convs_match_reference() {
    check(shape(1, 3, 17, 17, 13, 7, 2, 3), true, false, 7); // the stem, small
    check(shape(2, 13, 15, 15, 3, 3, 2, 1), false, true, 8);
    check(shape(1, 13, 9, 9, 76, 2, 2, 0), true, true, 9); // odd input: the last row is dropped
    check(shape(2, 76, 9, 7, 13, 1, 2, 0), false, true, 10); // 1x1 strided: not pointwise
    let s = Conv2dShape { n: 1, c_in: 3, h: 9, w: 15, c_out: 13, kh: 3, kw: 5, stride: 2, pad: 2 };
    check(s, true, true, 11);
}

#[test]
pub(crate) fn densenet_shapes_match_reference() {
    check(shape(1, 128, 56, 56, 32, 3, 1, 1), false, true, 12); // dense layer's 3x3
    check(shape(1, 3, 224, 224, 64, 7, 2, 3), false, false, 13); // the stem
}

#[test]
fn bad_shapes_are_errors() {
    assert!(shape(1, 3, 2, 2, 4, 5, 1, 1).validate().is_err()); // kernel larger than padded input
    assert!(shape(1, 0, 8, 8, 4, 3, 1, 1).validate().is_err());
    assert!(shape(1, 3, 8, 8, 4, 3, 0, 1).validate().is_err());
    assert!(shape(1, 3, 8, 8, 4, 3, 1, 1).validate().is_ok());
    let s = shape(2, 3, 8, 8, 4, 3, 1, 1);
    assert_eq!((s.p(), s.q()), (8, 8));
    assert_eq!(shape(1, 3, 224, 224, 64, 7, 2, 3).p(), 112);
    assert_eq!(shape(1, 3, 9, 9, 4, 2, 2, 0).p(), 4);
    let g = gpu();
    let small = g.zeros("small", 10).unwrap();
    let w = g.zeros("w", s.weight_len()).unwrap();
    let y = g.zeros("y", s.y_len()).unwrap();
    assert!(conv::forward(&g, &s, Act::whole(&small, 3), &w, None, Act::whole(&y, 4)).is_err());
    let x = g.zeros("x", s.x_len()).unwrap();
    assert!(conv::forward(&g, &s, Act::slice(&x, 1, 3), &w, None, Act::whole(&y, 4)).is_err());
    // A bias shorter than c_out, for a 3×3 and for a 1×1 (which runs as the GEMM).
    let short = g.zeros("bias", 3).unwrap();
    let b = Some(BufRange::from(&short));
    assert!(conv::forward(&g, &s, Act::whole(&x, 3), &w, b, Act::whole(&y, 4)).is_err());
    let s1 = shape(2, 3, 8, 8, 4, 1, 1, 0);
    let w1 = g.zeros("w1", s1.weight_len()).unwrap();
    assert!(conv::forward(&g, &s1, Act::whole(&x, 3), &w1, b, Act::whole(&y, 4)).is_err());
}

fn fd_check(s: Conv2dShape, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = rng.vec(s.x_len(), -1.0, 1.0);
    let w = rng.vec(s.weight_len(), -1.0, 1.0);
    let b = rng.vec(s.c_out, -1.0, 1.0);
    let dy = rng.vec(s.y_len(), -1.0, 1.0);
    let fd = finite_diff(&x, 1e-6, |x| dot(&conv::forward_ref(&s, x, &w, Some(&b)), &dy));
    assert_close("conv fd dx", &conv::backward_data_ref(&s, &dy, &w), &fd, 1e-6, 1e-6);
    let fd = finite_diff(&w, 1e-6, |w| dot(&conv::forward_ref(&s, &x, w, Some(&b)), &dy));
    assert_close("conv fd dw", &conv::backward_weight_ref(&s, &x, &dy), &fd, 1e-6, 1e-6);
    let fd = finite_diff(&b, 1e-6, |b| dot(&conv::forward_ref(&s, &x, &w, Some(b)), &dy));
    assert_close("conv fd db", &conv::backward_bias_ref(&s, &dy), &fd, 1e-6, 1e-6);
}

#[test]
fn backward_references_match_finite_differences() {
    fd_check(shape(2, 3, 5, 6, 2, 3, 2, 1), 20);
    fd_check(shape(1, 2, 5, 5, 3, 2, 2, 0), 21);
    fd_check(shape(1, 2, 4, 4, 2, 1, 1, 0), 22);
}

/// GFLOP/s of every direction on DenseNet-121's convolution shapes at batch 8:
/// `cargo test --release --test kernels conv::gflops -- --ignored --nocapture`.
#[test]
#[ignore]
fn gflops() {
    let mut shapes = vec![("stem", shape(8, 3, 224, 224, 64, 7, 2, 3))];
    for (hw, cins) in [(56, [64, 224]), (28, [128, 480]), (14, [256, 992]), (7, [512, 992])] {
        for c in cins {
            shapes.push(("dense 1x1", shape(8, c, hw, hw, 128, 1, 1, 0)));
        }
        shapes.push(("dense 3x3", shape(8, 128, hw, hw, 32, 3, 1, 1)));
    }
    for (hw, c) in [(56, 256), (28, 512), (14, 1024)] {
        shapes.push(("transition", shape(8, c, hw, hw, c / 2, 1, 1, 0)));
    }
    let only = std::env::var("CONV_ONLY").ok();
    for (name, s) in shapes {
        if only.as_ref().is_some_and(|o| !format!("{name} {}", s.c_in).contains(o.as_str())) {
            continue;
        }
        let r = rates(&s, None);
        println!(
            "{name:10} {:4}->{:4} {}x{} @{:3}: fwd {:5.1}  bwd-data {:5.1}  bwd-weight {:5.1} GFLOP/s",
            s.c_in, s.c_out, s.kh, s.kw, s.h, r[0], r[1], r[2]
        );
    }
}

/// Sweeps tile sizes on one shape: `CONV_TILES="64,16,2 32,8,4" cargo test ... conv::tiles -- --ignored`.
#[test]
#[ignore]
fn tiles() {
    let spec = std::env::var("CONV_SHAPE").unwrap_or("8,256,28,28,128,1,1,0".into());
    let v: Vec<usize> = spec.split(',').map(|t| t.parse().unwrap()).collect();
    let s = shape(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
    let tiles = std::env::var("CONV_TILES").unwrap_or("64,16,2".into());
    for t in tiles.split_whitespace() {
        let v: Vec<u32> = t.split(',').map(|t| t.parse().unwrap()).collect();
        let t = Tiles { wg: v[0], tm: v[1], tn: v[2] };
        let r = rates(&s, Some(t));
        println!("{s:?} {t:?}: fwd {:5.1}  bwd-data {:5.1}  bwd-weight {:5.1} GFLOP/s", r[0], r[1], r[2]);
    }
}

fn rates(s: &Conv2dShape, t: Option<conv::Tiles>) -> [f64; 3] {
    let g = gpu();
    let x = g.zeros("x", s.x_len()).unwrap();
    let y = g.zeros("y", s.y_len()).unwrap();
    let w = g.zeros("w", s.weight_len()).unwrap();
    let dw = g.zeros("dw", s.weight_len()).unwrap();
    let scratch = g.zeros("scratch", conv::backward_weight_scratch_len(s)).unwrap();
    let (xa, ya) = (Act::whole(&x, s.c_in), Act::whole(&y, s.c_out));
    let dispatches = [
        match t {
            Some(t) => conv::forward_tiled(&g, s, xa, &w, None, ya, t),
            None => conv::forward(&g, s, xa, &w, None, ya),
        },
        match t {
            Some(t) => conv::backward_data_tiled(&g, s, ya, &w, xa, false, t),
            None => conv::backward_data(&g, s, ya, &w, xa, false),
        },
        match t {
            Some(t) => conv::backward_weight_tiled(&g, s, xa, ya, &dw, None, &scratch, t),
            None => conv::backward_weight(&g, s, xa, ya, &dw, None, &scratch),
        },
    ];
    // CONV_PASS=fwd (or bwd-data, bwd-weight, or several, comma-separated) times only those.
    let pass = std::env::var("CONV_PASS").ok();
    let mut names = ["fwd", "bwd-data", "bwd-weight"].into_iter();
    dispatches.map(|d| {
        let name = names.next().unwrap_or_default();
        if pass.as_ref().is_some_and(|p| !p.split(',').any(|p| p.trim() == name)) {
            return f64::NAN;
        }
        // Tiles that only one direction takes (8 pixels per lane: the 3×3 row windows) are NaN
        // in the others.
        let Ok(d) = d else { return f64::NAN };
        g.run(&d).unwrap();
        // The CPU running lavapipe is shared with other work, so wall-clock time overstates the
        // cost: count the process's CPU time instead, and report what two cores would do.
        // CONV_GFLOP: the work timed per direction (default 2 GFLOP), for steadier numbers.
        let work = std::env::var("CONV_GFLOP").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(2.0);
        let reps = (work * 1e9 / s.flops()).ceil().clamp(2.0, 500.0) as usize;
        let cpu = cpu_seconds();
        for _ in 0..reps {
            g.run(&d).unwrap();
        }
        2.0 * s.flops() * reps as f64 / (cpu_seconds() - cpu) / 1e9
    })
}

/// User + system CPU time of this process (all threads, lavapipe's included), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the command name.
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

/// Forward, backward data and backward weight (with bias) of a 3×3 convolution over 5 images,
/// with a binding limit of 8 KiB: x (4 KiB per image) is bound two images at a time, in chunks
/// 0..2, 2..4, 4..5, and each chunk binds only its images.
#[test]
pub(crate) fn batch_chunks_match_reference() {
    let s = shape(5, 16, 8, 8, 8, 3, 1, 1);
    let g = limited_gpu(8 << 10);
    let (hw, pq) = (s.h * s.w, s.p() * s.q());
    let chunks = cut(&g, s.n, &[(s.c_in * hw * 4) as u64, (s.c_out * pq * 4) as u64]);
    let mut rng = Rng::new(31);
    let (x, wgt, dy) =
        (rng.vec(s.x_len(), -1.0, 1.0), rng.vec(s.weight_len(), -1.0, 1.0), rng.vec(s.y_len(), -1.0, 1.0));
    let [bx, bw, bdy] = [&x, &wgt, &dy].map(|v| up(&g, v));
    let (by, bdx) = (g.zeros("y", s.y_len()).unwrap(), g.zeros("dx", s.x_len()).unwrap());
    let (xa, ya, dya, dxa) =
        (Act::whole(&bx, s.c_in), Act::whole(&by, s.c_out), Act::whole(&bdy, s.c_out), Act::whole(&bdx, s.c_in));
    let mut d = Vec::new();
    for r in &chunks {
        let sc = Conv2dShape { n: r.len(), ..s };
        let (x, y, dy, dx) =
            (xa.images(r.clone(), hw), ya.images(r.clone(), pq), dya.images(r.clone(), pq), dxa.images(r.clone(), hw));
        d.extend(conv::forward(&g, &sc, x, &bw, None, y).unwrap());
        d.extend(conv::backward_data(&g, &sc, dy, &bw, dx, false).unwrap());
    }
    let (bdw, bdb) = (up(&g, &rng.vec(s.weight_len(), -1.0, 1.0)), up(&g, &rng.vec(s.c_out, -1.0, 1.0)));
    let scratch = g.zeros("scratch", conv::backward_weight_chunks_scratch_len(&s, &chunks)).unwrap();
    d.extend(conv::backward_weight_chunks(&g, &s, &chunks, xa, dya, &bdw, Some((&bdb).into()), &scratch).unwrap());
    g.run(&d).unwrap();
    let what = format!("{s:?} in chunks {chunks:?}");
    assert_close_scaled(
        &format!("forward {what}"),
        &read(&g, &by, s.y_len()),
        &conv::forward_ref(&s, &x, &wgt, None),
        TOL,
    );
    assert_close_scaled(
        &format!("backward data {what}"),
        &read(&g, &bdx, s.x_len()),
        &conv::backward_data_ref(&s, &dy, &wgt),
        TOL,
    );
    assert_close_scaled(
        &format!("backward weight {what}"),
        &read(&g, &bdw, s.weight_len()),
        &conv::backward_weight_ref(&s, &x, &dy),
        TOL,
    );
    assert_close_scaled(
        &format!("backward bias {what}"),
        &read(&g, &bdb, s.c_out),
        &conv::backward_bias_ref(&s, &dy),
        TOL,
    );
}

/// The backward weight of 1×1 convolutions as `gemm_split` (`conv::pointwise_gemm_weight`):
/// channel counts that are not multiples of the 16 × 32 tiles, batch 1 (the split cuts h·w) and
/// larger batches (it cuts the images), channel views (scalar and vec4 loads), dbias, images
/// of 2×2 pixels, and the 1×1 images of a Linear layer that keep the conv kernel.
#[test]
pub(crate) fn pointwise_backward_weight_as_gemm_matches_reference() {
    let shapes = [
        (shape(1, 13, 32, 32, 19, 1, 1, 0), true, false), // batch 1: h·w split, vec4 loads
        (shape(7, 37, 8, 8, 17, 1, 1, 0), false, true),   // images split, views: scalar x loads
        (shape(9, 40, 16, 16, 48, 1, 1, 0), true, false), // whole tiles in m, vec4 loads
        (shape(6, 33, 7, 7, 21, 1, 1, 0), false, false),  // 7×7: scalar loads
        (shape(64, 24, 2, 2, 48, 1, 1, 0), true, true),   // the smallest images routed
        (shape(5, 13, 12, 12, 5, 1, 1, 0), true, true),   // c_out below a tile
        (shape(4, 13, 1, 1, 9, 1, 1, 0), true, false),    // Linear: the conv kernel
    ];
    for (i, (s, bias, views)) in shapes.into_iter().enumerate() {
        assert_eq!(conv::pointwise_gemm_weight(&s), s.h * s.w > 1, "{s:?}");
        check(s, bias, views, 60 + i as u64);
    }
}

/// A 1×1 backward weight as `gemm_split` in batch chunks (binding limit 24 KiB: x, 10 KiB per
/// image, goes two images at a time, in chunks 0..2, 2..4, 4..5, the first two split in two
/// slices, the last in one): the first chunk overwrites dweight and dbias (both hold junk
/// before), later ones add to them; the tensors are channel views of wider buffers.
#[test]
fn pointwise_backward_weight_chunks_match_reference() {
    let s = shape(5, 7, 16, 16, 5, 1, 1, 0);
    assert!(conv::pointwise_gemm_weight(&s));
    let g = limited_gpu(24 << 10);
    let hw = s.h * s.w;
    let mut rng = Rng::new(77);
    let (x, dy) = (rng.vec(s.x_len(), -1.0, 1.0), rng.vec(s.y_len(), -1.0, 1.0));
    let xv = View::new(&mut rng, &x, s.n, s.c_in, hw, 2, s.c_in + 3);
    let dyv = View::new(&mut rng, &dy, s.n, s.c_out, hw, 3, s.c_out + 3);
    let chunks = cut(&g, s.n, &[(xv.tot * hw * 4) as u64, (dyv.tot * hw * 4) as u64]);
    let (bx, bdy) = (up(&g, &xv.full), up(&g, &dyv.full));
    let (bdw, bdb) = (up(&g, &rng.vec(s.weight_len(), -1.0, 1.0)), up(&g, &rng.vec(s.c_out, -1.0, 1.0)));
    let len = conv::backward_weight_chunks_scratch_len(&s, &chunks);
    assert!(len > 0, "{s:?} in chunks {chunks:?}: no split");
    let scratch = up(&g, &rng.vec(len, -1.0, 1.0));
    let (xa, dya) = (xv.act(&bx), dyv.act(&bdy));
    let d = conv::backward_weight_chunks(&g, &s, &chunks, xa, dya, &bdw, Some((&bdb).into()), &scratch).unwrap();
    g.run(&d).unwrap();
    let what = format!("{s:?} in chunks {chunks:?}");
    let got = read(&g, &bdw, s.weight_len());
    assert_close_scaled(&format!("backward weight {what}"), &got, &conv::backward_weight_ref(&s, &x, &dy), TOL);
    let got = read(&g, &bdb, s.c_out);
    assert_close_scaled(&format!("backward bias {what}"), &got, &conv::backward_bias_ref(&s, &dy), TOL);
}

/// A 1x1 convolution as the batched strided GEMM in several tile configs (the conv ops run
/// [`conv::pointwise_gemm_config`]'s), next to the conv ops' rates, in GFLOP per CPU-second ×2
/// (the conv kernel's own 1×1 forward, measured 1.5–2× slower here, is gone):
/// `CONV_SHAPE=64,84,32,32,48,1,1,0 cargo test --release --test kernels conv::pointwise_as_gemm -- --ignored --nocapture`.
#[test]
#[ignore]
fn pointwise_as_gemm() {
    use tailor::ops::gemm::{self, GemmConfig, GemmShape, MatrixLayout as L};
    let g = gpu();
    let spec = std::env::var("CONV_SHAPE").unwrap_or("64,84,32,32,48,1,1,0".into());
    let v: Vec<usize> = spec.split(',').map(|t| t.parse().unwrap()).collect();
    let s = shape(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
    let hw = s.h * s.w;
    let w = L::row_major(s.c_out, s.c_in).with_batch_stride(0);
    let x = L { offset: 0, row_stride: hw, col_stride: 1, batch_stride: s.c_in * hw };
    let y = L { offset: 0, row_stride: hw, col_stride: 1, batch_stride: s.c_out * hw };
    let gs = GemmShape::new(s.c_out, hw, s.c_in, s.n, w, x, y).unwrap();
    let (bx, bw, by) =
        (g.zeros("x", s.x_len()).unwrap(), g.zeros("w", s.weight_len()).unwrap(), g.zeros("y", s.y_len()).unwrap());
    for cfg in [
        GemmConfig::default(),
        GemmConfig { wg: 32, tm: 16, tn: 4, vec4: true },
        GemmConfig { wg: 64, tm: 8, tn: 4, vec4: true },
        GemmConfig { wg: 64, tm: 16, tn: 8, vec4: true },
    ] {
        let d = gemm::gemm_with(&g, &gs, &bw, &bx, &by, false, 1.0, &cfg).unwrap();
        g.run(&d).unwrap();
        let reps = 10;
        let cpu = cpu_seconds();
        for _ in 0..reps {
            g.run(&d).unwrap();
        }
        println!("gemm {cfg:?}: {:.1} GFLOP/s", 2.0 * s.flops() * reps as f64 / (cpu_seconds() - cpu) / 1e9);
    }
    let r = rates(&s, None);
    println!("conv: fwd {:.1} bwd-data {:.1} bwd-weight {:.1}", r[0], r[1], r[2]);
}

/// The backward weight of a 1×1 convolution as `gemm_split` over a sweep of tile configs
/// (wg,tm,tn) and split counts, next to `conv::backward_weight` (which picks one of them where
/// `conv::pointwise_gemm_weight` holds), in GFLOP/s of wall time (best run) and per CPU-second ×2
/// (how `conv::GEMM_BW` and its split target were chosen):
/// `CONV_SHAPE=64,84,32,32,48,1,1,0 GEMM_CFGS="8,16,4 16,16,4" GEMM_SPLITS="1 4 16" cargo test
/// --release --test kernels conv::pointwise_backward_weight_sweep -- --ignored --nocapture`.
#[test]
#[ignore]
fn pointwise_backward_weight_sweep() {
    use tailor::ops::gemm::{self, GemmConfig, GemmShape, MatrixLayout as L};
    let g = gpu();
    let spec = std::env::var("CONV_SHAPE").unwrap_or("64,84,32,32,48,1,1,0".into());
    let v: Vec<usize> = spec.split(',').map(|t| t.parse().unwrap()).collect();
    let s = shape(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
    let hw = s.h * s.w;
    let a = L { offset: 0, row_stride: hw, col_stride: 1, batch_stride: s.c_out * hw };
    let b = L { offset: 0, row_stride: 1, col_stride: hw, batch_stride: s.c_in * hw };
    let c = L::row_major(s.c_out, s.c_in).with_batch_stride(0);
    let gs = GemmShape::new(s.c_out, s.c_in, hw, s.n, a, b, c).unwrap();
    let (bx, bdy, bdw) =
        (g.zeros("x", s.x_len()).unwrap(), g.zeros("dy", s.y_len()).unwrap(), g.zeros("dw", s.weight_len()).unwrap());
    let time = |d: &[tailor::gpu::Dispatch]| {
        g.run(d).unwrap();
        let mut best = f64::INFINITY;
        let (cpu, mut reps) = (cpu_seconds(), 0);
        while reps < 3 || cpu_seconds() - cpu < 0.5 {
            let t = std::time::Instant::now();
            g.run(d).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            reps += 1;
        }
        let cpu = (cpu_seconds() - cpu) / reps as f64;
        (s.flops() / best / 1e9, s.flops() / cpu * 2.0 / 1e9)
    };
    let cfgs = std::env::var("GEMM_CFGS").unwrap_or("8,16,4 16,16,4 32,16,4 8,16,8 16,8,4".into());
    let splits = std::env::var("GEMM_SPLITS").unwrap_or("1 4 8 16 32 64".into());
    for cfg in cfgs.split_whitespace() {
        let v: Vec<u32> = cfg.split(',').map(|t| t.parse().unwrap()).collect();
        let cfg = GemmConfig { wg: v[0], tm: v[1], tn: v[2], vec4: true };
        for sp in splits.split_whitespace() {
            let sp: usize = sp.parse().unwrap();
            let scratch = g.zeros("scratch", gemm::gemm_scratch_len(&gs, sp).max(1)).unwrap();
            let d = gemm::gemm_split(&g, &gs, &bdy, &bx, &bdw, false, 1.0, &cfg, sp, &scratch).unwrap();
            let (wall, cpu) = time(&d);
            println!(
                "{} {cfg:?} splits {sp:3}: wall {wall:5.1}  cpu×2 {cpu:5.1} GFLOP/s",
                gemm::entry(&gs, &cfg).name()
            );
        }
    }
    let scratch = g.zeros("scratch", conv::backward_weight_scratch_len(&s)).unwrap();
    let d = conv::backward_weight(&g, &s, Act::whole(&bx, s.c_in), Act::whole(&bdy, s.c_out), &bdw, None, &scratch)
        .unwrap();
    let (wall, cpu) = time(&d);
    println!("conv backward_weight: wall {wall:5.1}  cpu×2 {cpu:5.1} GFLOP/s");
}

/// The executor lowers with exactly the tiles of the table it is given, and consults the tuner
/// for nothing while building (tuning is a phase of its own, before lowering): a training step
/// of two convolutions (a 3×3 same, a 3×3 stride 2) on 5 images under an 8 KiB binding limit,
/// so that the forward and backward data run in batch chunks of their own shapes. Every conv
/// kernel gets a named tile that is not the heuristic's; the step computes the same loss and
/// gradients, bit for bit, as with the heuristic tiles. `Executable::new` asks the tuner once
/// per (pass, shape) and, tuning off (as in every kernel test), gets the heuristic.
#[test]
fn lowering_takes_the_tile_table_and_tunes_nothing() {
    use tailor::graph::exec::{conv_passes, Executable};
    use tailor::graph::store::Store;
    use tailor::graph::{autodiff::autodiff, Graph, LossKind};
    use tailor::ops::conv::{Pass, TileTable};
    use tailor::ops::tune;

    let _ = gpu(); // tuning off
    let g = limited_gpu(8 << 10);
    let gpu: std::sync::Arc<tailor::gpu::Gpu> = (*g).clone();
    let (n, classes) = (5, 8);
    let mut graph = Graph::new();
    let x = graph.input("x", &[n, 16, 8, 8]);
    let w1 = graph.param("w1", &[12, 16, 3, 3]);
    let w2 = graph.param("w2", &[classes, 12, 3, 3]);
    let y1 = graph.conv2d("conv1", x, w1, None, 1, 1, None).unwrap();
    let y2 = graph.conv2d("conv2", y1, w2, None, 2, 1, None).unwrap();
    let logits = graph.global_avg_pool("pool", y2).unwrap();
    let loss = graph.loss("loss", logits, LossKind::Softmax { gamma: 0.0 }).unwrap();
    autodiff(&mut graph).unwrap();
    let grads = [w1, w2].map(|w| graph.grads[&w]);

    let passes = conv_passes(&gpu, &graph).unwrap();
    let kinds = |p: Pass| passes.iter().filter(|q| q.0 == p).count();
    // Chunked forward and backward data: more than one shape each (the last chunk's n differs).
    assert!(
        kinds(Pass::Forward) > 2 && kinds(Pass::BackwardData) > 1 && kinds(Pass::BackwardWeight) == 2,
        "{passes:?}"
    );
    let mut table = TileTable::new();
    for &(pass, s) in &passes {
        let h = tune::heuristic(pass, &s);
        let other = tune::candidates(pass, &s).into_iter().find(|&t| t != h);
        let other = other.unwrap_or_else(|| panic!("no other candidate for {pass:?} {s:?}"));
        table.insert(pass, &s, other).unwrap();
    }
    assert_eq!(table.len(), passes.len());
    // Tiles the kernels refuse are refused by name.
    let s0 = passes[0].1;
    assert!(table.clone().insert(Pass::Forward, &s0, Tiles { wg: 12, tm: 17, tn: 2 }).is_err());

    let mut store = Store::new(gpu.clone());
    let mut rng = Rng::new(77);
    for (name, w) in [("w1", w1), ("w2", w2)] {
        let shape = graph.tensors[w].shape.clone();
        let v = f32s(&rng.vec(shape.iter().product(), -0.3, 0.3));
        store.insert(name, &shape, &v).unwrap();
    }
    let images = f32s(&rng.vec(n * 16 * 64, -1.0, 1.0));
    let targets: Vec<u32> = (0..n as u32).map(|i| i * 3 % classes as u32).collect();
    let weights = vec![1.0f32; classes];
    let run = |exe: &Executable| {
        exe.write(x, &images).unwrap();
        exe.write(loss.target, &targets).unwrap();
        exe.write(loss.weights.unwrap(), &weights).unwrap();
        exe.run().unwrap();
        let mut out = vec![exe.read(loss.loss).unwrap()];
        out.extend(grads.map(|t| exe.read(t).unwrap()));
        out
    };

    let asked = tune::lookups();
    let named = Executable::with_tiles(gpu.clone(), graph.clone(), &store, table.clone()).unwrap();
    assert_eq!(tune::lookups(), asked, "building from a table consulted the tuner");
    assert_eq!(named.tiles, table);
    // Every conv kernel dispatch (those with a WG constant) runs a named, non-heuristic tile.
    let tile_of = |d: &tailor::gpu::Dispatch| {
        let c = |k: &str| d.spec.constants.iter().find(|(n, _)| n == k).map(|(_, v)| *v as u32);
        Some(Tiles { wg: c("WG")?, tm: c("TM")?, tn: c("TN")? })
    };
    let used: Vec<Tiles> = named.dispatches.iter().filter_map(tile_of).collect();
    let heuristic: Vec<Tiles> = passes.iter().map(|&(p, s)| tune::heuristic(p, &s)).collect();
    let chosen: Vec<Tiles> = passes.iter().map(|&(p, s)| table.get(p, &s)).collect();
    assert!(used.len() >= passes.len(), "{used:?}");
    for t in &used {
        assert!(chosen.contains(t) && !heuristic.contains(t), "{t:?} is not a named tile: {chosen:?} / {heuristic:?}");
    }

    let asked = tune::lookups();
    let plain = Executable::new(gpu.clone(), graph, &store).unwrap();
    assert_eq!(tune::lookups(), asked + passes.len() as u64, "one question per (pass, shape)");
    assert!(passes.iter().all(|&(p, s)| plain.tiles.get(p, &s) == tune::heuristic(p, &s)));
    let used: Vec<Tiles> = plain.dispatches.iter().filter_map(tile_of).collect();
    assert!(used.iter().all(|t| heuristic.contains(t)), "{used:?}");
    assert_eq!(run(&named), run(&plain), "the tiles changed the results");
}
