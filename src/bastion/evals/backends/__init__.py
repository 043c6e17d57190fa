"""Evaluation targets: an embedded llama.cpp model or an OpenAI-compatible endpoint."""

from bastion.evals.backends.base import Backend, Generation, TargetInfo
from bastion.evals.backends.http import OpenAIBackend
from bastion.evals.backends.llama import LlamaBackend

__all__ = ["Backend", "Generation", "LlamaBackend", "OpenAIBackend", "TargetInfo"]
