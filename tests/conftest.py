"""Test-wide setup.

Without a GPU, our Triton kernels run on CPU tensors through Triton's interpreter; it must be
switched on before any kernel module is imported, so it is set here, first.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
