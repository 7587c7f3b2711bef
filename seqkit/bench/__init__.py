"""Benchmarks that time seqkit against its peers; rows of numbers, never printed here."""
