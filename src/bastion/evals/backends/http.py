"""OpenAI-compatible endpoint backend (Bastion's own gateway, llama-server, vLLM, Ollama ...).

Log-likelihood over HTTP needs the server to return log-probs of the *prompt* tokens
(``/v1/completions`` with ``echo: true, logprobs: 1``). Many servers return log-probs only for
generated tokens, and lm-eval then silently scores every choice 0.0, i.e. at chance
(ggml-org/llama.cpp #27174). :meth:`OpenAIBackend.preflight` therefore sends one real probe and checks
that prompt-token log-probs and character offsets come back; if not, the backend reports
``loglikelihood=False`` and the runner either scores generatively (and records it) or refuses.

Continuation log-likelihood is the sum of the prompt tokens whose ``text_offset`` starts at or after
the end of the context, so no local tokenizer is needed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bastion.errors import BackendUnavailable, IntegrityError, UsageError
from bastion.evals.backends.base import Generation, TargetInfo

PROBE = "The capital of France is Paris"
DIGEST_HEADER = "x-bastion-model-digest"


class OpenAIBackend:
    """A model behind an OpenAI-compatible HTTP API."""

    def __init__(self, base_url: str, *, api_key: str | None = None, model: str | None = None,
                 timeout: float = 120.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"--base-url {base_url!r} is not an http(s) URL",
                             hint="Example: --base-url http://127.0.0.1:8080/v1")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._info: TargetInfo | None = None
        self._header_digest: str | None = None
        listed = self._request("GET", "/models").get("data") or []
        ids = [str(m.get("id")) for m in listed if isinstance(m, dict)]
        if model is None:
            if not ids:
                raise BackendUnavailable(f"{self.base_url}/models lists no model", hint="Pass --model-name.")
            model = ids[0]
        self.model = model
        entry = next((m for m in listed if isinstance(m, dict) and m.get("id") == model), {})
        # A Bastion gateway reports the admitted weights digest; other servers do not, and then the
        # run records digest None instead of pretending to know which weights answered.
        digest = entry.get("digest") if isinstance(entry.get("digest"), str) else None
        ll = self.preflight()
        self._info = TargetInfo(kind="openai", name=model, digest=digest or self._header_digest,
                               loglikelihood=ll, chat=True,
                               detail={"base_url": self.base_url, "prompt_logprobs": ll})

    @property
    def info(self) -> TargetInfo:
        """What is being evaluated (the digest fills in once a Bastion gateway reports it)."""
        if self._info is None:
            raise BackendUnavailable("the endpoint has not been probed yet")
        return self._info

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        # The scheme was checked to be http(s) in __init__, so no file:// or custom scheme reaches here.
        req = urllib.request.Request(  # noqa: S310
            self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (scheme checked)
                payload: dict[str, Any] = json.loads(resp.read())
                self._note_digest(resp.headers.get(DIGEST_HEADER))
                return payload
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise BackendUnavailable(f"{method} {self.base_url}{path} returned HTTP {exc.code}: {detail}",
                                     hint="Check --base-url, --api-key and that the key may call this model.",
                                     ) from exc
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise BackendUnavailable(f"{method} {self.base_url}{path} failed: {exc}",
                                     hint="Is the server running and reachable?") from exc

    def _note_digest(self, digest: str | None) -> None:
        """Record the weights digest a Bastion gateway reports on every inference response.

        If it changes during a run, different weights answered part of the items: the run is refused
        rather than stored under one digest.
        """
        if not digest:
            return
        known = self._info.digest if self._info is not None else self._header_digest
        if known is not None and known != digest:
            raise IntegrityError(f"{self.base_url} answered with weights {digest}, earlier with {known}",
                                 hint="The served model changed during the evaluation; run it again.")
        self._header_digest = digest
        if self._info is not None and self._info.digest is None:
            self._info = replace(self._info, digest=digest)

    def _echo(self, prompt: str) -> dict[str, Any]:
        res = self._request("POST", "/completions", {"model": self.model, "prompt": prompt, "max_tokens": 1,
                                                     "echo": True, "logprobs": 1, "temperature": 0})
        choice = (res.get("choices") or [{}])[0]
        lp = choice.get("logprobs") or {}
        return {"text": choice.get("text", ""), "tokens": lp.get("tokens") or [],
                "token_logprobs": lp.get("token_logprobs") or [], "text_offset": lp.get("text_offset") or []}

    def preflight(self) -> bool:
        """True only if the server echoes per-token log-probs *and* offsets for the prompt itself."""
        try:
            lp = self._echo(PROBE)
        except BackendUnavailable:
            return False
        offs, lps = lp["text_offset"], lp["token_logprobs"]
        if len(offs) < 3 or len(offs) != len(lps) or not str(lp["text"]).startswith(PROBE):
            return False
        prompt_lps = [v for o, v in zip(offs, lps, strict=True) if 0 < o < len(PROBE)]
        # All-zero or missing prompt log-probs are exactly the silent-chance failure mode.
        return bool(prompt_lps) and all(isinstance(v, int | float) for v in prompt_lps) and any(
            v != 0 for v in prompt_lps)

    def loglikelihoods(self, context: str, continuations: Sequence[str]) -> list[float]:
        """One echo request per choice; sums log-probs of tokens starting inside the continuation."""
        if not self.info.loglikelihood:
            raise BackendUnavailable(
                f"{self.base_url} does not return prompt log-probs",
                hint="Use --scoring generative, or a server that supports echo+logprobs.")
        out = []
        for cont in continuations:
            full = context + cont
            lp = self._echo(full)
            total = 0.0
            for off, val in zip(lp["text_offset"], lp["token_logprobs"], strict=False):
                if len(context) <= off < len(full):
                    if val is None:
                        raise BackendUnavailable("the server returned a null log-prob inside a continuation")
                    total += float(val)
            out.append(total)
        return out

    def complete(self, prompt: str, *, max_tokens: int, stop: Sequence[str]) -> Generation:
        """Greedy ``/completions``."""
        res = self._request("POST", "/completions", {"model": self.model, "prompt": prompt,
                                                     "max_tokens": max_tokens, "temperature": 0,
                                                     "stop": list(stop)[:4] or None})
        return Generation(str(res["choices"][0].get("text") or ""),
                          int((res.get("usage") or {}).get("completion_tokens") or 0))

    def chat(self, messages: Sequence[dict[str, str]], *, max_tokens: int) -> Generation:
        """Greedy ``/chat/completions``."""
        res = self._request("POST", "/chat/completions", {"model": self.model, "messages": list(messages),
                                                          "max_tokens": max_tokens, "temperature": 0})
        msg = res["choices"][0].get("message") or {}
        return Generation(str(msg.get("content") or ""),
                          int((res.get("usage") or {}).get("completion_tokens") or 0))

    def close(self) -> None:
        """Nothing to release (one connection per request)."""
