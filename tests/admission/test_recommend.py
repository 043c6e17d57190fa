"""recommend: admissible models ranked per benchmark + setting, next to the best refused one."""

from __future__ import annotations

import pytest

from bastion.admission.recommend import recommend
from bastion.errors import UsageError
from bastion.policy import Organisation

ORG = Organisation(denied_countries=("CN",), trusted_signers=("org-key",))


def test_sovereign_policy_cost_on_mmlu_pro_in_deepseeks_own_evaluation() -> None:
    rec = recommend("sovereign-strict", 700, benchmark="MMLU-Pro", organisation=ORG)
    group = next(g for g in rec.groups if g.setting == "EM, DeepSeek evaluation")
    assert group.admissible[0].name == "Llama 3.1 405B Instruct"
    assert group.best_refused is not None and group.best_refused.name == "DeepSeek-R1"
    assert group.best_refused.deciding == ("sovereign.denied-country-in-lineage",)
    assert group.gap == pytest.approx(84.0 - 73.3)


def test_groups_never_mix_settings() -> None:
    rec = recommend("permissive", 1000, task="reasoning", organisation=ORG)
    for g in rec.groups:
        assert g.benchmark in ("GPQA Diamond", "GPQA")
        names = [r.name for r in g.admissible] + ([g.best_refused.name] if g.best_refused else [])
        assert len(names) == len(set(names))
    settings = [(g.benchmark, g.setting) for g in rec.groups]
    assert len(settings) == len(set(settings))


def test_size_limit_excludes_larger_models() -> None:
    rec = recommend("permissive", 10, benchmark="GPQA Diamond", organisation=ORG)
    group = next(g for g in rec.groups if g.setting == "pass@1, DeepSeek evaluation")
    assert {r.name for r in group.admissible} == {
        "DeepSeek-R1-Distill-Qwen-1.5B",
        "DeepSeek-R1-Distill-Qwen-7B",
        "DeepSeek-R1-Distill-Llama-8B",
    }
    assert group.best_refused is None and group.gap is None


def test_unknown_task_and_benchmark_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown task"):
        recommend("permissive", 10, task="poetry")
    with pytest.raises(UsageError, match="no catalog entry has a figure"):
        recommend("permissive", 10, benchmark="Vibes")
