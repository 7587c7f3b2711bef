"""The embedded corpus: seeded sentences, their pronunciations, voice engines speaking them, and
the speakers made from those voices, written in TIMIT's layout (``seqkit data synth``)."""
