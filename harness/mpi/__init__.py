"""MPI plumbing outside the strategy: the mpiexec launcher and its shared-memory segment sweep."""
