"""Scorers: pure functions from model outputs to per-item results, plus confidence intervals.

Every rule here is deliberately simple and written out so an auditor can check a score by hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.evals.tasks import LETTERS


@dataclass(frozen=True)
class MCResult:
    """Log-likelihood result of one multiple-choice item."""

    pred: int
    pred_norm: int
    acc: float
    acc_norm: float


def score_mc(logliks: Sequence[float], choices: Sequence[str], gold: int) -> MCResult:
    """lm-eval ``acc`` (argmax of summed log-probs) and ``acc_norm`` (divided by len(choice) in chars).

    Ties go to the lowest index, as with numpy's argmax in lm-eval.
    """
    if len(logliks) != len(choices) or not choices:
        raise ValueError("one log-likelihood per choice is required")
    pred = max(range(len(logliks)), key=lambda i: (logliks[i], -i))
    normed = [ll / max(len(c), 1) for ll, c in zip(logliks, choices, strict=True)]
    pred_norm = max(range(len(normed)), key=lambda i: (normed[i], -i))
    return MCResult(pred, pred_norm, float(pred == gold), float(pred_norm == gold))


_LETTER = re.compile(r"^\W*(?:answer\s*(?:is)?\s*:?\s*)?\(?([A-H])\b", re.IGNORECASE)


def parse_letter(text: str, n_choices: int) -> int | None:
    """Strict generative MC parse: the response must *start* with an option letter (``B``, ``(B)``,
    ``B.``, ``Answer: B``). Anything else is unparsable and counts as wrong -- never guessed."""
    m = _LETTER.match(text.strip())
    if not m:
        return None
    idx = LETTERS.index(m.group(1).upper())
    return idx if idx < n_choices else None


# lm-eval gsm8k(-cot) filters: "strict-match" takes the number after the trained answer phrase;
# "flexible-extract" takes the last number-like string in the response.
_STRICT = re.compile(r"The answer is (\-?[0-9\.\,]+)", re.IGNORECASE)
_FLEX = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
# lm-eval exact_match settings for gsm8k: regexes_to_ignore [",", "\\$", "(?s).*#### ", "\\.$"].
_IGNORE = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))


def _normalise_number(text: str) -> str:
    for rx in _IGNORE:
        text = rx.sub("", text)
    return text.strip().lower()


def gsm8k_extract(response: str) -> tuple[str | None, str | None]:
    """(strict, flexible) answers extracted from a GSM8K response, lm-eval style; None if none found."""
    strict = _STRICT.search(response)
    flex = [m.group(0) for m in _FLEX.finditer(response)]
    return (strict.group(1) if strict else None, flex[-1] if flex else None)


def gsm8k_match(extracted: str | None, gold: str) -> float:
    """1.0 if the extracted answer equals the gold answer after lm-eval's normalisation."""
    if extracted is None:
        return 0.0
    return float(_normalise_number(extracted) == _normalise_number(gold))


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (well-behaved for small n and p near 0 or 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def stderr(values: Sequence[float]) -> float:
    """Standard error of the mean with the sample standard deviation (lm-eval's ``_stderr``)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(var / n)
