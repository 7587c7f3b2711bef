"""Variable-length rows cut out of one flat array: the shape of a split's features and labels.

One tensor per utterance costs object overhead that grows with the corpus; one flat array plus
offsets costs only its data. :class:`RaggedRows` is the indexing both
:class:`seqkit.data.feature_store.FeatureStore` and :class:`seqkit.data.batching.PackedTargets`
share; each says how a row's span becomes a tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import numpy as np
import torch


class RaggedRows(Sequence[torch.Tensor]):
    """Row ``i`` is ``flat[offsets[i]:offsets[i + 1]]``, made a tensor by :meth:`row`.

    Args:
        lengths: items (frames, labels) per row.
    """

    def __init__(self, lengths: Sequence[int]) -> None:
        self.lengths = [int(n) for n in lengths]
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])

    def row(self, start: int, end: int) -> torch.Tensor:
        """The tensor of the flat span ``[start, end)``."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.lengths)

    @overload
    def __getitem__(self, index: int) -> torch.Tensor: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[torch.Tensor]: ...

    def __getitem__(self, index: int | slice) -> torch.Tensor | Sequence[torch.Tensor]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        index %= len(self)
        return self.row(int(self.offsets[index]), int(self.offsets[index + 1]))
