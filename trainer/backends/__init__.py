"""The four backends and their contract (backend.py: Chunk in, ChunkResult out):
reference (the semantics), torch, numba and triton. Imports spec and kernels/."""
