use crate::common::*;
use tailor::ops::linear::{self as lin, LinearShape};
use tailor::ops::Act;

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
        let y = run_read(
            &g,
            &lin::forward(&g, &s, Act::whole(&bx, i_n), &bw, &bb, Act::whole(&by, o_n)).unwrap(),
            &by,
            batch * o_n,
        );
        assert_close(&format!("{what} y"), &y, &lin::forward_ref(&s, &x, &w, &b), 1e-6 * i_n as f64 + 1e-6, 1e-6);

        let want = lin::backward_input_ref(&s, &dy, &w);
        let bdx = g.zeros("dx", batch * i_n).unwrap();
        let dx = run_read(
            &g,
            &lin::backward_input(&g, &s, Act::whole(&bdy, o_n), &bw, Act::whole(&bdx, i_n), false).unwrap(),
            &bdx,
            batch * i_n,
        );
        let tol = 1e-6 * o_n as f64 + 1e-6;
        assert_close(&format!("{what} dx"), &dx, &want, tol, 1e-6);
        let bdx = up(&g, &old);
        let dx = run_read(
            &g,
            &lin::backward_input(&g, &s, Act::whole(&bdy, o_n), &bw, Act::whole(&bdx, i_n), true).unwrap(),
            &bdx,
            batch * i_n,
        );
        let acc: Vec<f64> = want.iter().zip(&old).map(|(a, o)| a + o).collect();
        assert_close(&format!("{what} dx accumulate"), &dx, &acc, tol, 1e-6);

        let (want_dw, want_db) = lin::backward_params_ref(&s, &x, &dy);
        let (bdw, bdb) = (g.zeros("dw", o_n * i_n).unwrap(), g.zeros("db", o_n).unwrap());
        g.run(&lin::backward_params(&g, &s, Act::whole(&bx, i_n), Act::whole(&bdy, o_n), &bdw, &bdb).unwrap()).unwrap();
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
    assert!(lin::forward(&g, &s, Act::whole(&small, 3), &w, &b, Act::whole(&y, 4)).is_err());
}

#[test]
pub(crate) fn linear_on_channel_slices_matches_reference() {
    // x: features 3..3+in of a 2+in+3-feature buffer; y: outputs 1.. of a out+2-wide one.
    let g = gpu();
    let mut rng = Rng::new(22);
    let (batch, i_n, o_n) = (5, 12, 7);
    let s = LinearShape::new(batch, i_n, o_n).unwrap();
    let (x_tot, x_off, y_tot, y_off) = (i_n + 5, 3, o_n + 2, 1);
    let xw = rng.vec(batch * x_tot, -1.0, 1.0);
    let x: Vec<f64> = (0..batch).flat_map(|r| xw[r * x_tot + x_off..r * x_tot + x_off + i_n].to_vec()).collect();
    let w = rng.vec(o_n * i_n, -1.0, 1.0);
    let b = rng.vec(o_n, -1.0, 1.0);
    let dyw = rng.vec(batch * y_tot, -1.0, 1.0);
    let dy: Vec<f64> = (0..batch).flat_map(|r| dyw[r * y_tot + y_off..r * y_tot + y_off + o_n].to_vec()).collect();
    let (bx, bw, bb, bdy) = (up(&g, &xw), up(&g, &w), up(&g, &b), up(&g, &dyw));
    let by = g.zeros("y", batch * y_tot).unwrap();
    let d = lin::forward(&g, &s, Act::slice(&bx, x_off, x_tot), &bw, &bb, Act::slice(&by, y_off, y_tot)).unwrap();
    let yw = run_read(&g, &d, &by, batch * y_tot);
    let want = lin::forward_ref(&s, &x, &w, &b);
    for r in 0..batch {
        assert_close(
            "linear slice y",
            &yw[r * y_tot + y_off..r * y_tot + y_off + o_n],
            &want[r * o_n..(r + 1) * o_n],
            1e-5,
            1e-6,
        );
        assert_eq!(yw[r * y_tot], 0.0, "linear slice: y outside the view was written");
    }
    let bdx = g.zeros("dx", batch * x_tot).unwrap();
    let d = lin::backward_input(&g, &s, Act::slice(&bdy, y_off, y_tot), &bw, Act::slice(&bdx, x_off, x_tot), false)
        .unwrap();
    let dxw = run_read(&g, &d, &bdx, batch * x_tot);
    let want = lin::backward_input_ref(&s, &dy, &w);
    for r in 0..batch {
        assert_close(
            "linear slice dx",
            &dxw[r * x_tot + x_off..r * x_tot + x_off + i_n],
            &want[r * i_n..(r + 1) * i_n],
            1e-5,
            1e-6,
        );
    }
    let (bdw, bdb) = (g.zeros("dw", o_n * i_n).unwrap(), g.zeros("db", o_n).unwrap());
    g.run(
        &lin::backward_params(&g, &s, Act::slice(&bx, x_off, x_tot), Act::slice(&bdy, y_off, y_tot), &bdw, &bdb)
            .unwrap(),
    )
    .unwrap();
    let (want_dw, want_db) = lin::backward_params_ref(&s, &x, &dy);
    assert_close("linear slice dW", &read(&g, &bdw, o_n * i_n), &want_dw, 1e-5, 1e-6);
    assert_close("linear slice db", &read(&g, &bdb, o_n), &want_db, 1e-5, 1e-6);
}
