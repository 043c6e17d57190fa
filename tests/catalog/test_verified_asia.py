"""Issue 17: Chinese and other Asian releases checked against primary sources, corrections pinned to them."""

from __future__ import annotations

from bastion.catalog import load_catalog

#: rows brought to ``verified = true`` from the developers' own READMEs, LICENSEs and reports
VERIFIED = [
    "Qwen3.5-397B-A17B",
    "Qwen3.5-122B-A10B",
    "Qwen3.5-35B-A3B",
    "Qwen3.5-27B",
    "Qwen3-Next-80B-A3B-Instruct",
    "Qwen3-Next-80B-A3B-Thinking",
    "Qwen3-Coder-480B-A35B-Instruct",
    "Qwen3-235B-A22B-Instruct-2507",
    "DeepSeek-R1-Distill-Llama-8B",
    "DeepSeek-R1-Distill-Llama-70B",
    "DeepSeek-V3.2-Exp",
    "GLM-4.5",
    "GLM-4.5-Air",
    "GLM-4.6",
    "GLM-4.7",
    "GLM-4.7-Flash",
    "GLM-5",
    "Yi-34B",
    "Yi-1.5-34B-Chat",
    "Yi-Coder-9B-Chat",
    "InternLM3-8B-Instruct",
    "InternLM2.5-7B-Chat",
    "InternLM2.5-20B-Chat",
    "Intern-S1",
    "Intern-S2-Preview",
    "Kimi-K2-Base",
    "Kimi-K2-Instruct",
    "Kimi-K2.5",
    "MiniMax-M1-80k",
    "MiniMax-M2",
    "LongCat-Flash-Chat",
]


def test_the_rows_checked_against_primary_sources_are_verified_with_evidence() -> None:
    cat = load_catalog()
    for name in VERIFIED:
        e = cat.get(name)
        assert e.verified and e.uncited_facts() == (), name
        assert e.evidence and "read 2026-11-30" in e.evidence, name


def test_r1_distill_llama_rows_need_metas_notice_and_state_no_context() -> None:
    # meta-llama/llama-models models/llama3_1/LICENSE §1.b.i "provide a copy of this Agreement",
    # §1.b.iii attribution notice "within a 'Notice' text file"; the DeepSeek-R1 README states no
    # context length for the distilled models (131072 was read from a config, not a source).
    cat = load_catalog()
    for name in ["DeepSeek-R1-Distill-Llama-8B", "DeepSeek-R1-Distill-Llama-70B"]:
        e = cat.get(name)
        assert "notice_required" in e.license_flags and e.context is None
        assert any("llama-models" in c.url and "license_flags" in c.facts for c in e.citations)


def test_internlm25_weights_are_apache_since_january_2025() -> None:
    # github InternLM/InternLM commit f9a1f26 (2025-01-15): "Code and model weights are licensed under
    # Apache-2.0." replaced the application form for commercial use.
    e = load_catalog().get("InternLM2.5-7B-Chat")
    assert (e.license, e.license_flags) == ("Apache-2.0", ())


def test_contexts_no_primary_source_states_are_left_unset() -> None:
    # Qwen3.5 README (serving commands) states 262144 for the 35B and 397B only; the Qwen3-Next,
    # Yi-1.5 and InternLM3 sources read state none.
    cat = load_catalog()
    for name in [
        "Qwen3-Next-80B-A3B-Instruct",
        "Qwen3-Next-80B-A3B-Thinking",
        "Yi-1.5-34B-Chat",
        "InternLM3-8B-Instruct",
    ]:
        assert cat.get(name).context is None, name
    assert cat.get("Qwen3.5-35B-A3B").context == 262144


def test_chinese_bases_under_other_chinese_labels_reach_the_lineage() -> None:
    # Intern-S1 README: "Built upon a 235B MoE language model (Qwen3)"; Intern-S2-Preview: "continued
    # pretrained from Qwen3.5"; Yi-1.5 README: "continuously pre-trained on Yi".
    cat = load_catalog()
    assert [e.name for e in cat.ancestry("Intern-S1").chain] == ["Intern-S1", "Qwen3-235B-A22B"]
    assert [e.name for e in cat.ancestry("Intern-S2-Preview").chain] == [
        "Intern-S2-Preview",
        "Qwen3.5-35B-A3B",
    ]
    assert cat.get("Yi-1.5-34B-Chat").base_model == "Yi-34B"
    assert cat.ancestry("Intern-S1").licenses == ("Apache-2.0",)


def test_minimax_m1_continued_pretraining_is_cited_from_the_report_itself() -> None:
    # MiniMax_M1_tech_report.pdf §2.1 in github MiniMax-AI/MiniMax-M1 (previously a third-party summary).
    e = load_catalog().get("MiniMax-M1-80k")
    assert any("tech_report" in c.url and "7.5T" in c.quote for c in e.citations)


def test_rows_missing_one_primary_fact_stay_unverified_and_say_which() -> None:
    # GLM-5.1: no zai-org card stating its weights licence could be read; MiMo-V2-Flash: the weights repository's
    # LICENSE was not read (GitHub repo: Apache-2.0, third-party card copies: MIT); StepFun and ByteDance: no
    # primary source read (repository, terms on an https page, filing) names where the developer is headquartered.
    cat = load_catalog()
    for name, missing in [
        ("GLM-5.1", "license"),
        ("MiMo-V2-Flash", "license"),
        ("Step3", "country"),
        ("Seed-OSS-36B-Instruct", "country"),
    ]:
        e = cat.get(name)
        assert not e.verified, name
        assert missing in e.uncited_facts(), name


def test_headquarters_come_from_the_developers_own_documents_and_the_licensing_entity_is_noted() -> None:
    # Moonshot: Kimi Help Center (github MoonshotAI/kimi-help-center) names Beijing Moonshot AI Technology Co., Ltd.
    # as the API's invoicing entity, while the English platform terms contract with Moonshot AI PTE. LTD.
    # (Singapore). MiniMax: the M1 repository's documented system prompt names 上海稀宇科技有限公司; its model
    # licence for MiniMax-Text-01 is under Singapore law. Meituan: its HKEX interim report's head office is Beijing.
    cat = load_catalog()
    expected = {
        "Kimi-K2-Instruct": ("kimi-help-center", "Beijing Moonshot AI Technology Co., Ltd.", "Singapore"),
        "MiniMax-M2": ("MiniMax-M1", "上海稀宇科技有限公司", "Singapore"),
        "LongCat-Flash-Chat": ("Meituan", "Beijing 100102", "Cayman"),
    }
    for name, (where, words, licensing) in expected.items():
        e = cat.get(name)
        assert (e.country, e.developed_in) == ("CN", None), name
        (cite,) = [c for c in e.citations if "country" in c.facts]
        assert where in cite.url and words in cite.quote, name
        assert e.note and licensing in e.note, name


def test_deepseek_v32_is_a_fine_tune_of_the_v32_exp_base_not_continued_pretraining_of_v31() -> None:
    # Hugging Face deepseek-ai/DeepSeek-V3.2 README front matter: "base_model: deepseek-ai/DeepSeek-V3.2-Exp-Base",
    # "base_model_relation: finetune" (V3.2-Exp-Base is not catalogued; its sibling V3.2-Exp stands in).
    cat = load_catalog()
    e = cat.get("DeepSeek-V3.2")
    assert (e.base_model, e.relation) == ("DeepSeek-V3.2-Exp", "fine-tune")
    assert [a.name for a in cat.ancestry("DeepSeek-V3.2").chain][:3] == ["DeepSeek-V3.2", "DeepSeek-V3.2-Exp", "DeepSeek-V3.1"]


def test_glm_weights_licences_come_from_zai_orgs_own_cards_not_from_copies() -> None:
    # Hugging Face zai-org/GLM-4.7-Flash (main) and zai-org/GLM-5 README front matter "license: mit", each line
    # blamed to the card's own first commit; the GitHub repositories' LICENSE (Apache-2.0) covers code only.
    cat = load_catalog()
    for name in ["GLM-4.7-Flash", "GLM-5"]:
        e = cat.get(name)
        (cite,) = [c for c in e.citations if "license" in c.facts]
        assert cite.url.startswith(f"https://huggingface.co/zai-org/{name}/") and "license: mit" in cite.quote
        assert (e.license, e.license_flags) == ("MIT", ())


def test_minimax_m2_licences_are_read_from_their_own_repositories() -> None:
    # github MiniMax-AI/MiniMax-M2.1 LICENSE: Modified MIT, display "MiniMax M2.1" in any commercial product;
    # MiniMax-AI/MiniMax-M2.5 LICENSE-MODEL (added 2026-03-06): MiniMax Model License, Notice file, copy of the
    # Agreement with derivatives, Prohibited Uses Policy, Singapore law. MiniMax-M2's LICENSE became a Modified MIT
    # on 2025-11-13 (commit 8bbd67e: above 100M MAU or US$30M ARR, display "MiniMax M2"). All three were plain MIT.
    cat = load_catalog()
    m2 = cat.get("MiniMax-M2")
    assert (m2.license, m2.license_flags) == ("Modified MIT", ("attribution_required", "mau_cap_100m"))
    assert m2.verified and any("100 million monthly active users" in c.quote for c in m2.citations)
    m21, m25 = cat.get("MiniMax-M2.1"), cat.get("MiniMax-M2.5")
    assert (m21.license, m21.license_flags) == ("Modified MIT", ("attribution_required",))
    assert m25.license == "MiniMax Model License"
    assert set(m25.license_flags) == {"acceptable_use_policy", "notice_required", "use_restrictions_flow_down"}
    assert any(c.url.endswith("MiniMax-M2.5/blob/main/LICENSE-MODEL") for c in m25.citations)
    for e in (m21, m25):
        assert not e.verified and set(e.uncited_facts()) == {"params_b", "active_params_b"}, e.name
