"""Capability tasks, each defined as lm-evaluation-harness defines it (v0.4 task YAMLs).

Multiple-choice tasks are scored by log-likelihood: the model's summed log-probability of each
continuation ``target_delimiter + choice`` given the context; ``acc`` takes the argmax of the raw sums,
``acc_norm`` divides each sum by the choice's length in characters first (lm-eval's ``acc_norm``:
``len(choice)`` without the delimiter). Where lm-eval's leaderboard figure for a task is ``acc_norm`` we
use it as the primary metric; both are always stored.

* ``arc_easy``/``arc_challenge`` (lm-eval ``arc_easy.yaml``): ``"Question: {question}\\nAnswer:"``,
  choices ``choices.text``, delimiter ``" "``, 0-shot; AI2 ARC test split.
* ``hellaswag`` (``hellaswag.yaml``): ``query`` = ``preprocess(activity_label + ": " + ctx_a + " " +
  ctx_b.capitalize())`` and preprocessed endings, delimiter ``" "``, 0-shot; validation split (the test
  labels are not public, as in lm-eval).
* ``piqa`` (``piqa.yaml``): ``"Question: {goal}\\nAnswer:"``, choices ``[sol1, sol2]``, 0-shot;
  validation split (as in lm-eval).
* ``gsm8k`` generative, lm-eval ``gsm8k-cot`` style with the 8 Wei et al. exemplars in
  ``Question:/Answer:`` form: greedy, at most 256 new tokens, ``until`` ``["Question:", "</s>",
  "<|im_end|>", "\\n\\n"]``; scored by :func:`bastion.evals.scoring.gsm8k_extract`.

For chat-only upstreams (no prompt log-probs) multiple-choice items are asked generatively
(:func:`mc_generative_prompt`) and parsed strictly; such scores are stored with ``scoring="generative"``
and are not comparable with log-likelihood scores, which the report says.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from bastion.errors import UsageError, did_you_mean
from bastion.evals.data import Dataset, load_dataset

GSM8K_UNTIL = ("Question:", "</s>", "<|im_end|>", "\n\n")
GSM8K_MAX_TOKENS = 256
LETTERS = "ABCDEFGH"


@dataclass(frozen=True)
class MCItem:
    """A multiple-choice item: the context and each continuation exactly as scored."""

    id: str
    context: str
    choices: tuple[str, ...]  # bare choice texts (length normalisation uses these)
    gold: int
    question: str  # for the generative fallback
    delimiter: str = " "

    def continuations(self) -> list[str]:
        """The strings whose log-likelihood is scored: delimiter + choice."""
        return [self.delimiter + c for c in self.choices]


@dataclass(frozen=True)
class GenItem:
    """A generative item: the full prompt and the reference answer."""

    id: str
    prompt: str
    answer: str


@dataclass(frozen=True)
class TaskSpec:
    """Static description of a task."""

    name: str
    kind: str  # "mc" or "gen"
    primary: str  # metric name
    chance: float  # expected accuracy of random guessing (for the report)


TASKS: dict[str, TaskSpec] = {
    "arc_easy": TaskSpec("arc_easy", "mc", "acc_norm", 0.25),
    "arc_challenge": TaskSpec("arc_challenge", "mc", "acc_norm", 0.25),
    "hellaswag": TaskSpec("hellaswag", "mc", "acc_norm", 0.25),
    "piqa": TaskSpec("piqa", "mc", "acc_norm", 0.5),
    "mmlu": TaskSpec("mmlu", "mc", "acc", 0.25),
    "gsm8k": TaskSpec("gsm8k", "gen", "exact_match_flex", 0.0),
}
CORE = ("arc_easy", "arc_challenge", "hellaswag", "piqa", "mmlu", "gsm8k")


def _mc_item(task: str, rec: dict[str, Any]) -> MCItem:
    if task == "mmlu":
        # lm-eval ``mmlu`` (default template, 0-shot): the subject header, the question, lettered
        # options, "Answer:"; the continuations are " A" .. " D" and the metric is plain acc.
        subject = rec["subject"].replace("_", " ")
        options = "".join(f"{LETTERS[i]}. {c}\n" for i, c in enumerate(rec["choices"]))
        context = (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
                   f"{rec['question'].strip()}\n{options}Answer:")
        letters = tuple(LETTERS[: len(rec["choices"])])
        # The generative fallback needs the option texts; the question carries them (see below).
        question = f"{rec['question'].strip()}\n{options}".rstrip()
        return MCItem(rec["id"], context, letters, int(rec["gold"]), question)
    if task == "hellaswag":
        return MCItem(rec["id"], rec["query"], tuple(rec["choices"]), int(rec["gold"]), rec["query"])
    if task == "piqa":
        return MCItem(rec["id"], f"Question: {rec['goal']}\nAnswer:", tuple(rec["choices"]),
                      int(rec["gold"]), rec["goal"])
    return MCItem(rec["id"], f"Question: {rec['question']}\nAnswer:", tuple(rec["choices"]),
                  int(rec["gold"]), rec["question"])


def mc_generative_prompt(item: MCItem) -> str:
    """The question with lettered options, asking for the letter only (parsed by ``parse_letter``)."""
    if item.choices == tuple(LETTERS[: len(item.choices)]):
        # Letter-answer tasks (MMLU) already list their lettered options in the question.
        return (f"{item.question}\n"
                f"Answer with the letter of the correct option only ({', '.join(item.choices)}).")
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
    return (f"{item.question}\n{options}\n"
            f"Answer with the letter of the correct option only ({', '.join(LETTERS[:len(item.choices)])}).")


def subsample(n: int, limit: int | None, seed: int, task: str) -> list[int]:
    """Indices of the items to run: all (``limit`` None) or a seeded sample, stable per task and seed."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit <= 0:
        raise UsageError(f"--limit must be positive, got {limit}", hint="Use --limit 100, or omit it.")
    # A string seed is hashed by random.Random deterministically (sha512), independent of PYTHONHASHSEED.
    # Not for security: a reproducible sample is the point.
    return sorted(random.Random(f"{seed}:{task}").sample(range(n), limit))  # noqa: S311


def load_task(task: str, limit: int | None, seed: int) -> tuple[list[MCItem] | list[GenItem], list[Dataset]]:
    """Items of ``task`` (subsampled) and the data sets they came from (for provenance)."""
    if task not in TASKS:
        raise UsageError(
            f"unknown task {task!r}", hint=did_you_mean(task, list(TASKS), f"Tasks: {', '.join(TASKS)}.")
        )
    ds = load_dataset(task)
    idx = subsample(len(ds.records), limit, seed, task)
    if TASKS[task].kind == "mc":
        return [_mc_item(task, ds.records[i]) for i in idx], [ds]
    shots = load_dataset("gsm8k_fewshot")
    prefix = shots.records[0]["prefix"]
    items = [GenItem(str(ds.records[i]["id"]), f"{prefix}Question: {ds.records[i]['question']}\nAnswer:",
                     str(ds.records[i]["short_answer"])) for i in idx]
    return items, [ds, shots]
