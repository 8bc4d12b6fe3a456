"""Evaluation of Quarry on QA sets: loaders, metrics, systems side by side, reports."""

from evals.errors import DatasetError, EvalError, RunDirError
from evals.report import EvalReport
from evals.runner import EvalConfig, EvalProgress, arun_eval, load_config, run_eval
from evals.types import CorpusDoc, Dataset, QAItem

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
