"""Real corpora, one folder each with its reader, download and prepare (TIMIT and the NLTK
sample, LibriSpeech / Libri-Light), the word lexicon, and the one writer of a prepared folder."""
