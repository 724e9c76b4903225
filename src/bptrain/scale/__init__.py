"""Past one process: data-parallel training on MPI (`parallel`) and sweeps (`sweep/`)."""
