"""Decoding: greedy and beam search for CTC and transducer models, alignment, evaluation.

Internal: the public way in is :func:`seqkit.load` and :class:`seqkit.Recognizer`, built on
these modules; their names may change without notice.

The search and alignment functions take tensors (and a model with the
:class:`~seqkit.decoding.protocol.TransducerLike` methods); :mod:`seqkit.decoding.recognize`
(audio in, timed phones out, typed as in :mod:`seqkit.decoding.results`) and
:mod:`seqkit.decoding.evaluate` (PER reports) build on them and are imported from their modules.
"""

from seqkit.decoding.align import (
    Alignment,
    Segment,
    ctc_align,
    ctc_path_alignment,
    transducer_align,
    transducer_lattice,
)
from seqkit.decoding.beam import (
    BeamHypothesis,
    ctc_beam_search,
    transducer_beam_search,
    transducer_beam_search_batched,
)
from seqkit.decoding.greedy import ctc_greedy, transducer_greedy
from seqkit.decoding.ngram import PhoneNgram, estimate_ngram, load_ngram, save_ngram
from seqkit.decoding.protocol import TransducerLike

__all__ = [
    "Alignment",
    "BeamHypothesis",
    "PhoneNgram",
    "Segment",
    "TransducerLike",
    "ctc_align",
    "ctc_beam_search",
    "ctc_greedy",
    "ctc_path_alignment",
    "estimate_ngram",
    "load_ngram",
    "save_ngram",
    "transducer_align",
    "transducer_beam_search",
    "transducer_beam_search_batched",
    "transducer_greedy",
    "transducer_lattice",
]
