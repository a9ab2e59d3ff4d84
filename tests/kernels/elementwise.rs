use crate::common::*;
use tailor::ops::elementwise as ew;

#[test]
pub(crate) fn relu_forward_and_backward_match_reference() {
    let g = gpu();
    let mut rng = Rng::new(1);
    // 1, odd, not a multiple of the workgroup, and past the 65535-workgroup grid limit.
    for n in [1usize, 13, 1000, 256 * 65536 + 77] {
        let x = rng.vec(n, -1.0, 1.0);
        let dy = rng.vec(n, -1.0, 1.0);
        let old = rng.vec(n, -1.0, 1.0);
        let (bx, bdy) = (up(&g, &x), up(&g, &dy));
        let by = g.zeros("y", n).unwrap();
        let y = run_read(&g, &ew::relu_forward(&g, &bx, &by, n).unwrap(), &by, n);
        assert_close("relu forward", &y, &ew::relu_forward_ref(&x), 0.0, 0.0);

        let want = ew::relu_backward_ref(&x, &dy);
        let bdx = g.zeros("dx", n).unwrap();
        let dx = run_read(&g, &ew::relu_backward(&g, &bx, &bdy, &bdx, n, false).unwrap(), &bdx, n);
        assert_close("relu backward", &dx, &want, 0.0, 0.0);

        let bdx = up(&g, &old);
        let dx = run_read(&g, &ew::relu_backward(&g, &bx, &bdy, &bdx, n, true).unwrap(), &bdx, n);
        let acc: Vec<f64> = want.iter().zip(&old).map(|(a, b)| a + b).collect();
        assert_close("relu backward (accumulate)", &dx, &acc, 1e-7, 0.0);
    }
}

#[test]
fn relu_backward_reference_matches_finite_differences() {
    let mut rng = Rng::new(2);
    // Keep points away from the kink at 0, where the derivative is undefined.
    let x: Vec<f64> = rng.vec(50, -1.0, 1.0).into_iter().map(|v| if v.abs() < 0.05 { 0.5 } else { v }).collect();
    let dy = rng.vec(50, -1.0, 1.0);
    let fd = finite_diff(&x, 1e-6, |x| dot(&ew::relu_forward_ref(x), &dy));
    assert_close("relu fd", &ew::relu_backward_ref(&x, &dy), &fd, 1e-6, 1e-6);
}

#[test]
pub(crate) fn fill_zero_clears_only_its_channel_view() {
    let g = gpu();
    let mut rng = Rng::new(3);
    let (n, c_total, hw, c_off, c) = (3usize, 13usize, 7 * 5, 4usize, 6usize);
    let x = rng.vec(n * c_total * hw, 0.5, 1.0);
    let b = up(&g, &x);
    let got =
        run_read(&g, &ew::fill_zero(&g, n, c, hw, tailor::ops::Act::slice(&b, c_off, c_total)).unwrap(), &b, x.len());
    let mut want = x.clone();
    for img in 0..n {
        for ch in c_off..c_off + c {
            for p in 0..hw {
                want[(img * c_total + ch) * hw + p] = 0.0;
            }
        }
    }
    assert_close("fill_zero", &got, &want, 0.0, 0.0);
}

/// y = alpha·x and y += alpha·x at awkward lengths; a power-of-two alpha sums exactly, as the
/// gradient accumulation over micro-batches relies on; the same buffer twice is refused.
#[test]
pub(crate) fn scale_add_matches_reference() {
    let g = gpu();
    let mut rng = Rng::new(4);
    for (n, alpha) in [(1usize, 0.5f64), (13, 1.0 / 3.0), (1000, 0.125), (256 * 65536 + 77, 0.25)] {
        let (x, old) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
        let bx = up(&g, &x);
        for accumulate in [false, true] {
            let by = up(&g, &old);
            let d = ew::scale_add(&g, &bx, &by, n, alpha as f32, accumulate).unwrap();
            let got = run_read(&g, &d, &by, n);
            // The reference on the f32 values the kernel sees, rounded once more to f32.
            let (xf, of) = (f64s(&f32s(&x)), f64s(&f32s(&old)));
            let want = ew::scale_add_ref(&xf, &of, alpha as f32 as f64, accumulate);
            let tol = if alpha == 0.5 || alpha == 0.25 || alpha == 0.125 { 6e-8 } else { 1.2e-7 };
            assert_close(&format!("scale_add n={n} alpha={alpha} acc={accumulate}"), &got, &want, 0.0, tol);
            if !accumulate && alpha.log2().fract() == 0.0 {
                let exact = got.iter().zip(&xf).all(|(g, x)| *g == x * alpha);
                assert!(exact, "alpha {alpha}: a power-of-two factor is exact");
            }
        }
    }
    // Larger than one binding (1 KiB: 256 elements): in pieces, with the same results.
    let lim = limited_gpu(1024);
    let (x, old) = (rng.vec(1000, -1.0, 1.0), rng.vec(1000, -1.0, 1.0));
    let (bx, by) = (up(&lim, &x), up(&lim, &old));
    let d = ew::scale_add(&lim, &bx, &by, 1000, 0.5, true).unwrap();
    assert!(d.len() > 1, "{} dispatches", d.len());
    let got = run_read(&lim, &d, &by, 1000);
    let want = ew::scale_add_ref(&f64s(&f32s(&x)), &f64s(&f32s(&old)), 0.5, true);
    assert_close("scale_add in pieces", &got, &want, 0.0, 6e-8);
    drop(lim);
    let b = up(&g, &[1.0; 8]);
    assert!(ew::scale_add(&g, &b, &b, 8, 1.0, true).is_err());
    let other = up(&g, &[0.0; 8]);
    assert!(ew::scale_add(&g, &other, &b, 8, f32::NAN, true).is_err());
}
