"""Speed, optional by nature: compiled loops (numba), Winograd convolutions, GEMM in pieces on a
fixed thread budget, BLAS thread limits, blocked im2col. The engine computes the same function
without any of it (`BPTRAIN_KERNELS=numpy`)."""
