"""Experiment tracking: metric loggers (JSONL, TensorBoard, wandb, MLflow) and a progress bar."""

from __future__ import annotations

from lmforge.tracking.loggers import (
    METRICS_FILE,
    RUN_CONFIG_FILE,
    VALID_BACKENDS,
    JsonlLogger,
    Logger,
    MlflowLogger,
    MultiLogger,
    TensorBoardLogger,
    WandbLogger,
    build_loggers,
    flatten_config,
)
from lmforge.tracking.progress import ProgressBar

__all__ = [
    "METRICS_FILE",
    "RUN_CONFIG_FILE",
    "VALID_BACKENDS",
    "JsonlLogger",
    "Logger",
    "MlflowLogger",
    "MultiLogger",
    "ProgressBar",
    "TensorBoardLogger",
    "WandbLogger",
    "build_loggers",
    "flatten_config",
]
