"""Audio front end: loading (any format soundfile reads), features, normalization, SpecAugment."""

from seqkit.audio.augment import spec_augment
from seqkit.audio.features import (
    FeatureConfig,
    FeatureStats,
    compute_features,
    compute_stats,
    read_stats,
    write_stats,
)
from seqkit.audio.load import SAMPLE_RATE, load_audio

__all__ = [
    "SAMPLE_RATE",
    "FeatureConfig",
    "FeatureStats",
    "compute_features",
    "compute_stats",
    "load_audio",
    "read_stats",
    "spec_augment",
    "write_stats",
]
