"""Training: recipes (config), the loop (trainer), its schedule, run log, plots and workers."""

from seqkit.training.config import DataConfig, RecipeConfig, TrainConfig, load_recipe
from seqkit.training.runlog import EpochRecord, RunRecord, StepRecord, read_run_log
from seqkit.training.trainer import TrainSummary, train

__all__ = [
    "DataConfig",
    "EpochRecord",
    "RecipeConfig",
    "RunRecord",
    "StepRecord",
    "TrainConfig",
    "TrainSummary",
    "load_recipe",
    "read_run_log",
    "train",
]
