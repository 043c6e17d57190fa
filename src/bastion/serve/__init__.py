"""``bastion serve``: the OpenAI-compatible gateway."""

from bastion.serve.app import Gateway, build_app
from bastion.serve.server import build_gateway, serve

__all__ = ["Gateway", "build_app", "build_gateway", "serve"]
