use crate::common::*;
use tailor::ops::linear::{self as lin, LinearShape};

#[test]
fn linear_forward_and_backward_match_reference() {
    let g = gpu();
    let mut rng = Rng::new(20);
    for (batch, i_n, o_n) in [(1, 1, 1), (3, 13, 76), (5, 76, 13), (64, 1024, 10), (300, 8, 12)] {
        let s = LinearShape::new(batch, i_n, o_n).unwrap();
        let x = rng.vec(batch * i_n, -1.0, 1.0);
        let w = rng.vec(o_n * i_n, -1.0, 1.0);
        let b = rng.vec(o_n, -1.0, 1.0);
        let dy = rng.vec(batch * o_n, -1.0, 1.0);
        let old = rng.vec(batch * i_n, -1.0, 1.0);
        let (bx, bw, bb, bdy) = (up(&g, &x), up(&g, &w), up(&g, &b), up(&g, &dy));
        let what = format!("linear {s:?}");

        let by = g.zeros("y", batch * o_n).unwrap();
        let y = run_read(&g, &lin::forward(&g, &s, &bx, &bw, &bb, &by).unwrap(), &by, batch * o_n);
        assert_close(&format!("{what} y"), &y, &lin::forward_ref(&s, &x, &w, &b), 1e-6 * i_n as f64 + 1e-6, 1e-6);

        let want = lin::backward_input_ref(&s, &dy, &w);
        let bdx = g.zeros("dx", batch * i_n).unwrap();
        let dx = run_read(&g, &lin::backward_input(&g, &s, &bdy, &bw, &bdx, false).unwrap(), &bdx, batch * i_n);
        let tol = 1e-6 * o_n as f64 + 1e-6;
        assert_close(&format!("{what} dx"), &dx, &want, tol, 1e-6);
        let bdx = up(&g, &old);
        let dx = run_read(&g, &lin::backward_input(&g, &s, &bdy, &bw, &bdx, true).unwrap(), &bdx, batch * i_n);
        let acc: Vec<f64> = want.iter().zip(&old).map(|(a, o)| a + o).collect();
        assert_close(&format!("{what} dx accumulate"), &dx, &acc, tol, 1e-6);

        let (want_dw, want_db) = lin::backward_params_ref(&s, &x, &dy);
        let (bdw, bdb) = (g.zeros("dw", o_n * i_n).unwrap(), g.zeros("db", o_n).unwrap());
        g.run(&lin::backward_params(&g, &s, &bx, &bdy, &bdw, &bdb).unwrap()).unwrap();
        let tol = 1e-6 * batch as f64 + 1e-6;
        assert_close(&format!("{what} dW"), &read(&g, &bdw, o_n * i_n), &want_dw, tol, 1e-6);
        assert_close(&format!("{what} db"), &read(&g, &bdb, o_n), &want_db, tol, 1e-6);
    }
}

#[test]
fn linear_backward_references_match_finite_differences() {
    let mut rng = Rng::new(21);
    let s = LinearShape::new(3, 5, 4).unwrap();
    let x = rng.vec(15, -1.0, 1.0);
    let w = rng.vec(20, -1.0, 1.0);
    let b = rng.vec(4, -1.0, 1.0);
    let dy = rng.vec(12, -1.0, 1.0);
    let fd_x = finite_diff(&x, 1e-6, |x| dot(&lin::forward_ref(&s, x, &w, &b), &dy));
    let fd_w = finite_diff(&w, 1e-6, |w| dot(&lin::forward_ref(&s, &x, w, &b), &dy));
    let fd_b = finite_diff(&b, 1e-6, |b| dot(&lin::forward_ref(&s, &x, &w, b), &dy));
    let (dw, db) = lin::backward_params_ref(&s, &x, &dy);
    assert_close("linear fd dx", &lin::backward_input_ref(&s, &dy, &w), &fd_x, 1e-7, 1e-6);
    assert_close("linear fd dW", &dw, &fd_w, 1e-7, 1e-6);
    assert_close("linear fd db", &db, &fd_b, 1e-7, 1e-6);
}

#[test]
fn linear_bad_shapes_are_errors() {
    assert!(LinearShape::new(0, 3, 3).is_err());
    let g = gpu();
    let s = LinearShape::new(2, 3, 4).unwrap();
    let small = g.zeros("x", 5).unwrap();
    let (w, b, y) = (g.zeros("w", 12).unwrap(), g.zeros("b", 4).unwrap(), g.zeros("y", 8).unwrap());
    assert!(lin::forward(&g, &s, &small, &w, &b, &y).is_err());
}
