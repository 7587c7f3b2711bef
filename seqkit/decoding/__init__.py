"""Decoding: greedy and beam search for CTC and transducer models, alignment, evaluation."""

from seqkit.decoding.greedy import ctc_greedy, transducer_greedy

__all__ = ["ctc_greedy", "transducer_greedy"]
