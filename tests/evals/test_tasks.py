"""Task prompts follow lm-evaluation-harness; subsamples are seeded and stable."""

from __future__ import annotations

import pytest

from bastion.errors import UsageError
from bastion.evals.tasks import GenItem, MCItem, load_task, mc_generative_prompt, subsample


def test_arc_prompt_is_lm_eval_question_answer_format() -> None:
    items, datasets = load_task("arc_easy", 3, seed=7)
    item = items[0]
    assert isinstance(item, MCItem)
    assert item.context.startswith("Question: ") and item.context.endswith("\nAnswer:")
    assert all(c.startswith(" ") for c in item.continuations())
    assert datasets[0].licence == "CC-BY-SA-4.0" and datasets[0].split == "test"


def test_mmlu_prompt_is_lm_eval_default_template_with_letter_continuations() -> None:
    items, datasets = load_task("mmlu", 3, seed=2)
    item = items[0]
    assert isinstance(item, MCItem)
    assert item.context.startswith("The following are multiple choice questions (with answers) about ")
    assert "\nA. " in item.context and "\nD. " in item.context and item.context.endswith("\nAnswer:")
    assert item.continuations() == [" A", " B", " C", " D"]
    assert datasets[0].licence == "MIT" and datasets[0].split == "test"
    generative = mc_generative_prompt(item)
    assert generative.count("\nA. ") == 1 and "(A, B, C, D)" in generative  # options listed once


def test_piqa_has_two_choices_and_hellaswag_four() -> None:
    piqa, _ = load_task("piqa", 2, seed=1)
    hs, _ = load_task("hellaswag", 2, seed=1)
    assert all(len(i.choices) == 2 for i in piqa)  # type: ignore[union-attr]
    assert all(len(i.choices) == 4 for i in hs)  # type: ignore[union-attr]


def test_gsm8k_prompt_has_eight_exemplars_then_the_question() -> None:
    items, datasets = load_task("gsm8k", 1, seed=1)
    item = items[0]
    assert isinstance(item, GenItem)
    assert item.prompt.count("So the answer is") == 8
    assert item.prompt.endswith("\nAnswer:")
    assert [d.name for d in datasets] == ["gsm8k", "gsm8k_fewshot"]


def test_subsample_is_deterministic_per_seed_and_task() -> None:
    assert subsample(1000, 10, 1, "a") == subsample(1000, 10, 1, "a")
    assert subsample(1000, 10, 1, "a") != subsample(1000, 10, 2, "a")
    assert subsample(5, None, 1, "a") == [0, 1, 2, 3, 4]
    assert subsample(5, 50, 1, "a") == [0, 1, 2, 3, 4]
    with pytest.raises(UsageError):
        subsample(5, 0, 1, "a")


def test_generative_prompt_letters_each_choice() -> None:
    item = MCItem("x", "Question: q\nAnswer:", ("red", "blue"), 1, "q")
    expected = "q\nA. red\nB. blue\nAnswer with the letter of the correct option only (A, B)."
    assert mc_generative_prompt(item) == expected


def test_unknown_task_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        load_task("mmlu_pro", 1, 1)
