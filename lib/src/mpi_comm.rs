//! The [`Comm`] trait over MPI (rsmpi), cargo feature `mpi`: the world communicator for the
//! binaries, and sub-communicators for the pipeline runner's task groups.
//!
//! MPI is initialised once per process ([`world`]; `mpi::initialize()` returns `None` the
//! second time, reference/platform.md §5), kept in a process-wide cell, and finalised by
//! [`finalize`] (statics are never dropped, so nothing else would).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::*;
use mpi::Count;

use crate::comm::Comm;

/// A communicator of MPI processes.
pub struct MpiComm {
    comm: SimpleCommunicator,
}

// SAFETY: MPI is initialised with MPI_THREAD_SERIALIZED (or better) in `world()`; a `Comm`
// is used by one thread at a time (the stage's control thread), which that level allows
// from any thread.
unsafe impl Send for MpiComm {}
// SAFETY: as above; collectives are never issued concurrently on one communicator.
unsafe impl Sync for MpiComm {}

struct UniverseCell(Universe);
// SAFETY: the universe is only created, asked for its world, and dropped (MPI_Finalize)
// under the mutex below.
unsafe impl Send for UniverseCell {}

static UNIVERSE: Mutex<Option<UniverseCell>> = Mutex::new(None);
static TRIED: AtomicBool = AtomicBool::new(false);

/// The MPI world (initialising MPI on first use), or `None` if MPI cannot be initialised or
/// was finalised. Run without mpirun, this is a world of one process (a singleton).
pub fn world() -> Option<MpiComm> {
    let mut u = UNIVERSE.lock().unwrap_or_else(|e| e.into_inner());
    if !TRIED.swap(true, Ordering::SeqCst) {
        *u = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .map(|(univ, _)| UniverseCell(univ));
    }
    u.as_ref().map(|c| MpiComm { comm: c.0.world() })
}

/// Finalises MPI (every rank must, or mpirun reports an abnormal exit). Drop every
/// [`MpiComm`] first; afterwards [`world`] returns `None`.
pub fn finalize() {
    let mut u = UNIVERSE.lock().unwrap_or_else(|e| e.into_inner());
    TRIED.store(true, Ordering::SeqCst);
    drop(u.take());
}

impl MpiComm {
    /// Wraps an existing communicator.
    pub fn new(comm: SimpleCommunicator) -> Self {
        MpiComm { comm }
    }

    /// The underlying rsmpi communicator (for point-to-point messages).
    pub fn raw(&self) -> &SimpleCommunicator {
        &self.comm
    }

    /// Collective over this communicator: ranks with the same `color` form a new
    /// communicator, ordered by `key` (ties by rank here); `None` for a negative color
    /// (the rank joins no group).
    pub fn split(&self, color: i32, key: i32) -> Option<MpiComm> {
        let c = if color < 0 {
            Color::undefined()
        } else {
            Color::with_value(color)
        };
        self.comm
            .split_by_color_with_key(c, key)
            .map(|comm| MpiComm { comm })
    }

    /// Not collective over this communicator: only the ranks listed in `members` (ranks of
    /// this communicator, in the order of the new ranks) call it, and they form a
    /// communicator of their own (MPI_Comm_create_group). The runner uses it to make a task
    /// group from idle workers while the others keep working.
    pub fn subgroup(&self, members: &[i32]) -> Option<MpiComm> {
        let group = self.comm.group().include(members);
        self.comm
            .split_by_subgroup(&group)
            .map(|comm| MpiComm { comm })
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }
    fn size(&self) -> usize {
        self.comm.size() as usize
    }
    fn barrier(&self) {
        self.comm.barrier();
    }
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) {
        let root = self.comm.process_at_rank(root as i32);
        let mut len = buf.len() as u64;
        root.broadcast_into(&mut len);
        buf.resize(len as usize, 0);
        if len > 0 {
            root.broadcast_into(&mut buf[..]);
        }
    }
    fn gather_bytes(&self, root: usize, data: &[u8]) -> Option<Vec<Vec<u8>>> {
        // An empty slice's pointer is dangling, 0x1 for bytes, which is OpenMPI's
        // MPI_IN_PLACE: a rank with nothing to send would be an MPI_ERR_ARG in MPI_Gatherv.
        // Zero-length views of a real buffer have real addresses.
        let dummy = [0u8; 1];
        let data = if data.is_empty() { &dummy[..0] } else { data };
        let root_proc = self.comm.process_at_rank(root as i32);
        let len = data.len() as Count;
        if self.comm.rank() as usize == root {
            let n = self.comm.size() as usize;
            let mut counts: Vec<Count> = vec![0; n];
            root_proc.gather_into_root(&len, &mut counts[..]);
            let displs: Vec<Count> = counts
                .iter()
                .scan(0, |acc, &c| {
                    let d = *acc;
                    *acc += c;
                    Some(d)
                })
                .collect();
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            // One spare byte so the receive buffer is never a dangling (MPI_IN_PLACE) pointer.
            let mut all = vec![0u8; total + 1];
            {
                let mut part = PartitionMut::new(&mut all[..total], &counts[..], &displs[..]);
                root_proc.gather_varcount_into_root(data, &mut part);
            }
            Some(
                counts
                    .iter()
                    .zip(&displs)
                    .map(|(&c, &d)| all[d as usize..(d + c) as usize].to_vec())
                    .collect(),
            )
        } else {
            root_proc.gather_into(&len);
            root_proc.gather_varcount_into(data);
            None
        }
    }
    fn all_ok(&self, ok: bool) -> bool {
        let mine = i32::from(ok);
        let mut all = 0i32;
        self.comm
            .all_reduce_into(&mine, &mut all, SystemOperation::logical_and());
        all != 0
    }
}

/// Runs `f` with the MPI world (a singleton without mpirun), or with [`crate::SingleComm`]
/// when MPI cannot be initialised; finalises MPI afterwards.
pub fn with_world<R>(f: impl FnOnce(&dyn Comm) -> R) -> R {
    let r = match world() {
        Some(w) => f(&w),
        None => f(&crate::SingleComm),
    };
    finalize();
    r
}
