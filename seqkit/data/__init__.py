"""What training reads: phone sets, split names, manifests, feature stores and batches.

Corpora (:mod:`seqkit.corpora`) and synthesis (:mod:`seqkit.synth`) write the files read here;
nothing here knows which corpus they came from.
"""
