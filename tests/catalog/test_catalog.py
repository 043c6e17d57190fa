"""Ancestry queries: full chains with every country and licence along them."""

from __future__ import annotations

import pytest

from bastion.catalog import load_catalog
from bastion.errors import NotFound


def test_distill_llama_8b_has_cn_developer_and_us_base() -> None:
    anc = load_catalog().ancestry("DeepSeek-R1-Distill-Llama-8B")
    assert [e.name for e in anc.chain] == ["DeepSeek-R1-Distill-Llama-8B", "Llama 3.1 8B"]
    assert anc.countries == ("CN", "US")
    # DeepSeek-R1 README, License: "derived from Llama3.1-8B-Base and is originally licensed under
    # Llama3.1 license" -- the row carries Meta's terms, not only the MIT label (issue 17).
    assert anc.licenses == ("Llama 3.1 Community License",)
    assert "mau_cap_700m" in anc.license_flags


def test_distill_qwen_7b_chain_goes_through_qwen_math_to_qwen_base() -> None:
    anc = load_catalog().ancestry("DeepSeek-R1-Distill-Qwen-7B")
    assert [e.name for e in anc.chain] == ["DeepSeek-R1-Distill-Qwen-7B", "Qwen2.5-Math-7B", "Qwen2.5-7B"]
    assert [e.developer for e in anc.chain][1:] == ["Alibaba Cloud (Qwen team)"] * 2
    assert anc.countries == ("CN",)


def test_us_release_on_a_chinese_base_carries_both_countries() -> None:
    assert load_catalog().ancestry("Cogito v2.1 671B").countries == ("US", "CN")


def test_lookup_by_hugging_face_repo_and_alias() -> None:
    cat = load_catalog()
    assert cat.get("deepseek-ai/DeepSeek-R1-Distill-Llama-8B").name == "DeepSeek-R1-Distill-Llama-8B"
    assert cat.get("smollm2-135m-instruct").name == "SmolLM2-135M-Instruct"


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(NotFound) as exc:
        load_catalog().get("DeepSeek-R1-Distil")
    assert "DeepSeek" in exc.value.hint


def test_select_filters_combine() -> None:
    rows = load_catalog().select(country="fr", license="apache", max_params_b=30)
    assert rows and all(e.country == "FR" and "Apache" in e.license and e.params_b <= 30 for e in rows)
