//! spx-pipeline: runs a YAML dependency graph of spx stages locally, under MPI, as Slurm job
//! arrays or as a Makefile (see README "Running a night").
