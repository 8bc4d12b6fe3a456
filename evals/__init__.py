"""Evaluation of Quarry on QA sets: loaders, metrics, systems side by side, reports."""

from quarry.evals.errors import DatasetError, EvalError, RunDirError
from quarry.evals.report import EvalReport
from quarry.evals.runner import EvalConfig, EvalProgress, arun_eval, load_config, run_eval
from quarry.evals.types import CorpusDoc, Dataset, QAItem

__all__ = [
    "CorpusDoc",
    "Dataset",
    "DatasetError",
    "EvalConfig",
    "EvalError",
    "EvalProgress",
    "EvalReport",
    "QAItem",
    "RunDirError",
    "arun_eval",
    "load_config",
    "run_eval",
]
