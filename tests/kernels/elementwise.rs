use crate::common::*;
use tailor::ops::elementwise as ew;

#[test]
fn relu_forward_and_backward_match_reference() {
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
fn fill_zero_clears_only_its_channel_view() {
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
