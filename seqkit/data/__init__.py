"""Phone sets, corpora and what training reads from them.

Corpus readers (TIMIT, the NLTK TIMIT sample, LibriSpeech / Libri-Light with a lexicon, the
synthesized corpus) and their downloads; ``prepare`` turns any of them into manifests and feature
statistics; feature stores and batching feed training.
"""
