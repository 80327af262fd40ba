//! The communicator a stage runs on: one process ([`SingleComm`], the default) or an MPI
//! communicator (cargo feature `mpi`). Stages only ever see `&dyn Comm`, so the pipeline
//! runner can hand each task a sub-communicator and the binaries hand them the world.
//!
//! Messages are byte buffers: callers serialise their own data (fixed layouts, little endian)
//! so results can be combined on the root in a fixed rank order.

/// Collective operations a stage may use. Every rank of the communicator must call the same
/// collectives in the same order.
pub trait Comm: Send + Sync {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Blocks until every rank arrives.
    fn barrier(&self);
    /// Root's `buf` is copied to every rank.
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>);
    /// Gathers each rank's `data` on `root`, in rank order; `None` on the other ranks.
    fn gather_bytes(&self, root: usize, data: &[u8]) -> Option<Vec<Vec<u8>>>;
    /// True on every rank iff `ok` is true on every rank. Use before any collective that a
    /// failed rank would skip, so one bad task cannot hang the others.
    fn all_ok(&self, ok: bool) -> bool;

    /// Whether this rank is the root (rank 0).
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// A communicator of one process.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleComm;

impl Comm for SingleComm {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn barrier(&self) {}
    fn broadcast_bytes(&self, _root: usize, _buf: &mut Vec<u8>) {}
    fn gather_bytes(&self, _root: usize, data: &[u8]) -> Option<Vec<Vec<u8>>> {
        Some(vec![data.to_vec()])
    }
    fn all_ok(&self, ok: bool) -> bool {
        ok
    }
}

/// The contiguous share of `n` items that `rank` of `size` ranks owns: a fixed split, so
/// the assignment (and hence the output) does not depend on timing.
pub fn share(n: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let size = size.max(1);
    let base = n / size;
    let extra = n % size;
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    start..(start + len).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_once() {
        for n in 0..20 {
            for size in 1..6 {
                let mut all: Vec<usize> = (0..size).flat_map(|r| share(n, r, size)).collect();
                all.sort();
                assert_eq!(all, (0..n).collect::<Vec<_>>());
            }
        }
    }
}
