//! Every entry point of every kernel shader is run by some kernel test.
//!
//! Why this shape: the tests of a binary run in any order on a pool of threads, so no test can
//! wait for "all the others" and read what they dispatched, and a table of test names alone
//! would not show that the tests named still reach the entry points. So this test runs a
//! representative set of the kernel tests itself, by function (a test renamed or deleted does
//! not compile), records with `tailor::gpu::record_entries` the entry points each one builds into
//! dispatches on this thread, and asserts that together they cover `EntryPoint::ALL`, the table
//! generated from the shaders. A new entry point joins that table when the shaders are
//! regenerated, and this test fails until a test that dispatches it is listed here. The set was
//! chosen to cover every entry point with few, quick tests (a few seconds on lavapipe); each
//! must still dispatch something, so the list cannot silently rot.

use std::collections::BTreeMap;

use tailor::gpu::{record_entries, EntryPoint};

use crate::{adam, batchnorm, conv, elementwise, embed, gemm, knn, linear, loss, pool, shaders};

macro_rules! tests {
    ($($m:ident::$f:ident),* $(,)?) => {
        &[$(($m::$f as fn(), concat!(stringify!($m), "::", stringify!($f)))),*]
    };
}

/// Kernel tests that together dispatch every reachable entry point.
const COVERING: &[(fn(), &str)] = tests![
    adam::adam_matches_reference_over_steps,
    batchnorm::backward_matches_reference,
    batchnorm::forward_train_matches_reference,
    batchnorm::normalize_reproduces_forward_train_exactly,
    conv::batch_chunks_match_reference,
    conv::densenet_shapes_match_reference,
    conv::pointwise_backward_weight_as_gemm_matches_reference,
    conv::three_by_three_backward_data_tiles_are_bit_identical,
    conv::three_by_three_forward_tiles_are_bit_identical,
    conv::three_by_three_matches_reference,
    elementwise::fill_zero_clears_only_its_channel_view,
    elementwise::relu_forward_and_backward_match_reference,
    elementwise::scale_add_matches_reference,
    embed::embedding_bad_shapes_and_options_are_errors,
    embed::embedding_losses_match_reference,
    embed::normalize_matches_reference,
    embed::triplet_losses_match_reference_off_the_sphere_and_at_other_margins,
    gemm::every_operand_layout_path,
    knn::index_search_and_its_errors,
    linear::linear_on_channel_slices_matches_reference,
    loss::gamma_zero_is_plain_cross_entropy,
    pool::avg_pool_2x2_past_the_grid_limit,
    pool::avg_pool_matches_reference,
    pool::copy_channels_matches_reference,
    pool::global_avg_pool_matches_reference,
    pool::max_pool_backward_past_the_grid_limit,
    pool::max_pool_first_maximum_by_hand,
    shaders::precompile_reports_progress,
];

#[test]
fn every_entry_point_is_run_by_some_test() {
    let mut by: BTreeMap<EntryPoint, Vec<&str>> = BTreeMap::new();
    for (test, name) in COVERING {
        let ((), seen) = record_entries(test);
        assert!(!seen.is_empty(), "{name} dispatches no kernel: drop it from COVERING");
        for e in seen {
            by.entry(e).or_default().push(name);
        }
    }
    let missing: Vec<String> = EntryPoint::ALL
        .iter()
        .filter(|e| !by.contains_key(e))
        .map(|e| format!("{}::{}", e.shader().name, e.name()))
        .collect();
    assert!(
        missing.is_empty(),
        "no kernel test in COVERING runs {missing:?}: add a test that dispatches each (against its CPU reference) and list it in tests/kernels/coverage.rs"
    );
}
