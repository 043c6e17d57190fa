"""What a failover costs in capability: the eval runner through the gateway, on primary and fallbacks.

The same task, items (``limit``, ``seed``) and scoring run against every deployment of the route as the
gateway serves it (the drill's key, ``/v1`` of the gateway), so the difference is what a client would
lose when the fallback answers. Scoring is generative for all of them: log-likelihood scoring needs
prompt log-probabilities that an upstream may not return, and two scorings are not comparable.

A route could quietly answer "the primary" from a fallback while the primary is down, which would make
the difference zero; before each run one request checks who answers (``x-bastion-model``), and a
deployment answered by another is reported as not measured rather than measured wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from bastion.errors import BastionError
from bastion.evals.backends.http import OpenAIBackend
from bastion.evals.runner import RunOptions, run_eval

PROBE = [{"role": "user", "content": "Reply with one word: ready?"}]


@dataclass(frozen=True)
class EvalPlan:
    """Which task, how many items, which sample of them."""

    task: str
    limit: int
    seed: int = 1234


def _who_answers(client: httpx.Client, model: str) -> str:
    r = client.post("/chat/completions", json={"model": model, "messages": PROBE, "max_tokens": 1})
    return r.headers.get("x-bastion-model", "") if r.status_code == 200 else f"HTTP {r.status_code}"


def _measure(base: str, api_key: str, model: str, plan: EvalPlan, client: httpx.Client) -> dict[str, Any]:
    answered = _who_answers(client, model)
    if answered != model:
        return {"model": model, "measured": False, "reason": f"answered by {answered or 'nobody'}"}
    try:
        backend = OpenAIBackend(base + "/v1", api_key=api_key, model=model)
        run, _ = run_eval(backend, RunOptions(tasks=(plan.task,), limit=plan.limit, seed=plan.seed,
                                              scoring="generative"))
    except BastionError as exc:
        return {"model": model, "measured": False, "reason": exc.message}
    s = run.summaries[0]
    return {"model": model, "measured": True, "metric": s.metric, "value": round(s.value, 4), "n": s.n,
            "ci95": [round(s.ci_low, 4), round(s.ci_high, 4)], "digest": run.target.get("digest"),
            "run": run.id}


def capability_cost(base: str, api_key: str, primary: str, fallbacks: list[str], plan: EvalPlan,
                    timeout: float = 300.0) -> dict[str, Any]:
    """The eval of ``primary`` and of each fallback through the gateway, and each fallback's difference."""
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base + "/v1", headers=headers, timeout=timeout,
                      follow_redirects=False) as client:
        first = _measure(base, api_key, primary, plan, client)
        others = [_measure(base, api_key, name, plan, client) for name in fallbacks]
    for other in others:
        if first["measured"] and other["measured"]:
            other["difference"] = round(other["value"] - first["value"], 4)
    return {"task": plan.task, "limit": plan.limit, "seed": plan.seed, "scoring": "generative",
            "primary": first, "fallbacks": others}
