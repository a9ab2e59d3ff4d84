//! Training across processes and machines over MPI (cargo feature `mpi`): the engine HPC
//! clusters and Slurm launch (`mpirun -np 2 tailor train … --distributed mpi`). One process per
//! rank, each with its own devices; a step's gradients are summed over the ranks with
//! `MPI_Allreduce` (see [`crate::nn::train::Collective`]).
//!
//! Failures stop every rank: MPI's default error handler aborts the job when a collective fails
//! or a rank dies, and a rank that hits an error of its own calls [`Mpi::abort`] after saying
//! it, so that no rank waits forever in a collective. Checkpoints are written by rank 0 alone,
//! atomically, so the last one stays whole.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

use crate::error::{Error, Result};
use crate::nn::train::Collective;

/// MPI's world communicator; MPI is finalised when this is dropped.
pub struct Mpi {
    world: SimpleCommunicator,
    /// The thread that initialised MPI: the only one that may call it (MPI_THREAD_SINGLE).
    owner: std::thread::ThreadId,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

// SAFETY: every method that touches MPI first checks that it runs on `owner`, the thread that
// initialised MPI, and fails otherwise; so MPI is only ever called from one thread, as
// MPI_THREAD_SINGLE requires, wherever the `Mpi` value itself is moved or shared.
unsafe impl Send for Mpi {}
unsafe impl Sync for Mpi {}

impl Mpi {
    /// Initialises MPI (once per process).
    pub fn init() -> Result<Mpi> {
        let universe = mpi::initialize()
            .ok_or_else(|| Error::Invalid("MPI was already initialised in this process, or could not be".into()))?;
        Ok(Mpi { world: universe.world(), owner: std::thread::current().id(), _universe: universe })
    }

    fn on_owner(&self) -> Result<()> {
        if std::thread::current().id() != self.owner {
            return Err(Error::Invalid("MPI is called only from the thread that initialised it".into()));
        }
        Ok(())
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn sum_f32(&self, values: &mut [f32]) -> Result<()> {
        self.on_owner()?;
        let send = values.to_vec();
        self.world.all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }

    fn sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.on_owner()?;
        let send = values.to_vec();
        self.world.all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }

    fn gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        self.on_owner()?;
        let mut out = vec![0u64; self.size()];
        self.world.all_gather_into(&value, &mut out[..]);
        Ok(out)
    }

    fn broadcast_flag(&self, flag: bool) -> Result<bool> {
        self.on_owner()?;
        let mut v = flag as u8;
        self.world.process_at_rank(0).broadcast_into(&mut v);
        Ok(v != 0)
    }

    /// Stops every rank of the job (after this rank said why). From another thread than MPI's,
    /// only this process exits.
    fn abort(&self, code: i32) -> ! {
        if self.on_owner().is_err() {
            std::process::exit(code);
        }
        self.world.abort(code)
    }
}
