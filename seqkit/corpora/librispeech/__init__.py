"""LibriSpeech and Libri-Light: layout reader, checksummed download, and ``prepare`` from word
transcripts to phone manifests."""
