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

/// An in-process communicator: `size` ranks as threads sharing one exchange buffer. For tests
/// of rank-count independence without MPI (and for running a stage's ranks as threads).
pub struct ThreadComm {
    rank: usize,
    size: usize,
    shared: std::sync::Arc<(std::sync::Mutex<Vec<Vec<u8>>>, std::sync::Barrier)>,
}

impl ThreadComm {
    /// The `size` ranks of one group; hand each to its own thread.
    pub fn group(size: usize) -> Vec<ThreadComm> {
        let shared = std::sync::Arc::new((
            std::sync::Mutex::new(vec![Vec::new(); size]),
            std::sync::Barrier::new(size),
        ));
        (0..size)
            .map(|rank| ThreadComm {
                rank,
                size,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Runs `f` on every rank of a `size`-rank group, one thread each; results in rank order.
    pub fn run<T: Send>(size: usize, f: impl Fn(&ThreadComm) -> T + Sync) -> Vec<T> {
        let f = &f;
        std::thread::scope(|s| {
            let hs: Vec<_> = ThreadComm::group(size)
                .into_iter()
                .map(|c| s.spawn(move || f(&c)))
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // a rank that panicked while holding the lock already fails the group
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Comm for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn barrier(&self) {
        self.shared.1.wait();
    }
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) {
        if self.rank == root {
            self.slots()[root] = buf.clone();
        }
        self.shared.1.wait();
        if self.rank != root {
            *buf = self.slots()[root].clone();
        }
        self.shared.1.wait();
    }
    fn gather_bytes(&self, root: usize, data: &[u8]) -> Option<Vec<Vec<u8>>> {
        self.slots()[self.rank] = data.to_vec();
        self.shared.1.wait();
        let out = (self.rank == root).then(|| self.slots().clone());
        // nobody overwrites a slot before the root has read them all
        self.shared.1.wait();
        out
    }
    fn all_ok(&self, ok: bool) -> bool {
        let mut flag = vec![u8::from(ok)];
        let all = self
            .gather_bytes(0, &flag)
            .map(|v| v.iter().all(|b| b == &[1]));
        if let Some(a) = all {
            flag = vec![u8::from(a)];
        }
        self.broadcast_bytes(0, &mut flag);
        flag == [1]
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thread_comm_agrees_on_errors_and_gathers_in_rank_order() {
        let got = ThreadComm::run(3, |c| {
            let all = c.all_ok(c.rank() != 1);
            let g = c.gather_bytes(0, &[c.rank() as u8]);
            let mut b = if c.is_root() { vec![7u8] } else { Vec::new() };
            c.broadcast_bytes(0, &mut b);
            (all, g, b)
        });
        assert!(got.iter().all(|(all, _, b)| !all && b == &[7]));
        assert_eq!(got[0].1, Some(vec![vec![0], vec![1], vec![2]]));
        assert!(got[1].1.is_none() && got[2].1.is_none());
        assert!(ThreadComm::run(2, |c| c.all_ok(true))
            .into_iter()
            .all(|x| x));
    }

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
