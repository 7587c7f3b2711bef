"""Training: recipes (config), the training loop (trainer), distributed workers."""

from seqkit.training.config import DataConfig, RecipeConfig, TrainConfig, load_recipe
from seqkit.training.trainer import EpochSummary, TrainSummary, train

__all__ = [
    "DataConfig",
    "EpochSummary",
    "RecipeConfig",
    "TrainConfig",
    "TrainSummary",
    "load_recipe",
    "train",
]
