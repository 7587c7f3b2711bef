"""TIMIT's layout (real TIMIT, the NLTK sample, synthesized output): reader, speaker lists,
the NLTK sample's download, and ``prepare``."""
