"""Fused Triton training kernels and their launchers (GPU; CPU under TRITON_INTERPRET=1)."""
