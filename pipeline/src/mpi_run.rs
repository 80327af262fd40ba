//! `run` under MPI (feature `mpi`).
