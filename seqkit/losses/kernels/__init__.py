"""Triton GPU kernels for the losses; imported lazily, only on the Triton path."""
