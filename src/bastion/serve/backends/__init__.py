"""Backends that answer model requests: embedded llama.cpp, OpenAI-compatible upstreams, MiniLM."""

from bastion.serve.backends.base import Backend, BackendInfo, Cancel, Endpoint, Reply, Usage

__all__ = ["Backend", "BackendInfo", "Cancel", "Endpoint", "Reply", "Usage"]
