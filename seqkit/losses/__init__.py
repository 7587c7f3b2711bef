"""CTC and RNN-transducer losses: our own Triton GPU kernels and native CPU paths.

The signatures mirror ``torch.nn.functional.ctc_loss`` and ``torchaudio.functional.rnnt_loss``
(switching costs one import). ``backend="auto"`` runs the Triton kernels on CUDA tensors and the
CPU path otherwise; ``backend="triton"`` also runs on CPU tensors under ``TRITON_INTERPRET=1``.
:mod:`seqkit.losses.backends` makes that choice for both losses.
"""

from seqkit.losses.ctc import ctc_loss
from seqkit.losses.transducer import transducer_loss

__all__ = ["ctc_loss", "transducer_loss"]
