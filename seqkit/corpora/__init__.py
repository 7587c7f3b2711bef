"""Real corpora: seqkit's own readers (TIMIT and the NLTK sample, LibriSpeech / Libri-Light, each a
folder with its reader, download and prepare), the field's readers (lhotse's recipes and
manifests, Kaldi data dirs: ``source`` describes their utterances, ``source_prepare`` prepares
them, ``sources`` picks the reader), the word lexicon, and the one writer of a prepared folder."""
