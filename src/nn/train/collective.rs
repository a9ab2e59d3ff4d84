//! Processes that train one model together (MPI ranks, see [`crate::mpi`]): what a trainer needs
//! of them. Each process trains its replicas on its own devices; once a step's gradients are
//! averaged over those, they are summed over the processes here, and every process takes the
//! same optimiser step.

use crate::error::Result;

/// The collective operations data parallelism across processes needs. Every process calls each
/// of them in the same order; each returns the same result on every process.
pub trait Collective: Send + Sync {
    /// This process's index, 0 for the one that writes checkpoints and reports.
    fn rank(&self) -> usize;
    /// How many processes train together.
    fn size(&self) -> usize;
    /// Sums `values` over the processes, in place.
    fn sum_f32(&self, values: &mut [f32]) -> Result<()>;
    /// Sums `values` over the processes, in place.
    fn sum_f64(&self, values: &mut [f64]) -> Result<()>;
    /// Every process's `value`, by rank.
    fn gather_u64(&self, value: u64) -> Result<Vec<u64>>;
    /// Rank 0's `flag`, on every process.
    fn broadcast_flag(&self, flag: bool) -> Result<bool>;
    /// Stops every process with exit code `code`: what a process that fails does, so that the
    /// others do not wait for it in the next collective.
    fn abort(&self, code: i32) -> !;
}

/// One process alone: the identity, for tests and for code written once for both cases.
pub struct Alone;

impl Collective for Alone {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn sum_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        Ok(vec![value])
    }
    fn broadcast_flag(&self, flag: bool) -> Result<bool> {
        Ok(flag)
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
