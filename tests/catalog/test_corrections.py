"""Issue 17's corrected facts, each pinned to the primary source it was read from."""

from __future__ import annotations

from bastion.admission import Facts, Subject, decide
from bastion.admission.attributes import catalog_attributes
from bastion.admission.recommend import recommend
from bastion.catalog import load_catalog
from bastion.policy import Organisation, load_policy


def test_k_exaone_grants_commercial_use() -> None:
    # github LG-AI-EXAONE/K-EXAONE LICENSE §2.1: "... for commercial and non-commercial purposes";
    # derivative names "shall begin with K-EXAONE"; the Agreement is distributed alongside;
    # §2.2: commercial distribution or sublicensing "requires separate agreement with Licensor".
    e = load_catalog().get("K-EXAONE 236B-A23B")
    assert "non_commercial" not in e.license_flags
    assert {"naming_requirement", "notice_required", "commercial_redistribution_by_agreement"} <= set(
        e.license_flags
    )
    assert e.verified and not e.uncited_facts()
    assert any("§2.1" in c.quote and "LICENSE" in c.url for c in e.citations)


def test_k_exaone_is_admissible_where_commercial_use_is_required() -> None:
    # sovereign-strict forbids non-commercial licences; KR is not on the bundled deny list.
    cat = load_catalog()
    org = Organisation.load()
    decision = decide(Subject.assumed("K-EXAONE 236B-A23B", org), load_policy("sovereign-strict"), org, cat).decision
    assert decision.allowed, decision.to_json()
    rec = recommend("sovereign-strict", 300, benchmark="MMLU-Pro", organisation=org, catalog=cat)
    admitted = {r.name for g in rec.groups for r in g.admissible}
    assert "K-EXAONE 236B-A23B" in admitted


def test_r1_distill_llama_rows_carry_metas_terms() -> None:
    # DeepSeek-R1 README, License: "DeepSeek-R1-Distill-Llama-8B is derived from Llama3.1-8B-Base and
    # is originally licensed under Llama3.1 license" (and -70B from Llama3.3-70B-Instruct, Llama3.3).
    cat = load_catalog()
    for name, licence in [
        ("DeepSeek-R1-Distill-Llama-8B", "Llama 3.1 Community License"),
        ("DeepSeek-R1-Distill-Llama-70B", "Llama 3.3 Community License"),
    ]:
        e = cat.get(name)
        assert e.license == licence
        assert {"mau_cap_700m", "acceptable_use_policy", "naming_requirement"} <= set(e.license_flags)
        attrs = catalog_attributes(name, cat, Facts("unknown"))
        assert licence in attrs.lineage_licenses and "mau_cap_700m" in attrs.license_flags


def test_hunyuan_a13b_territory_flow_down_and_notice() -> None:
    # github Tencent-Hunyuan/Hunyuan-A13B LICENSE §1.l (Territory excludes EU, UK, South Korea),
    # §3d (Notice text file), §5a (use restrictions passed on as an enforceable provision).
    e = load_catalog().get("Hunyuan-A13B-Instruct")
    assert {"eu_excluded", "territory_restricted", "use_restrictions_flow_down", "notice_required"} <= set(
        e.license_flags
    )
    assert e.verified


def test_nemotron_super_carries_the_llama_naming_requirement() -> None:
    # Card of nvidia/Llama-3_3-Nemotron-Super-49B-v1(-FP8): "Llama 3.3 Community License Agreement.
    # Built with Llama."
    assert "naming_requirement" in load_catalog().get("Llama-3.3-Nemotron-Super-49B-v1").license_flags


def test_minilm_l6_is_mit_uploaded_2021_05() -> None:
    # huggingface.co/nreimers/MiniLM-L6-H384-uncased model card: "License: MIT".
    e = load_catalog().get("MiniLM-L6-H384-uncased")
    assert (e.license, e.released) == ("MIT", "2021-05")


def test_minimax_m1_is_continued_pretraining_of_text_01() -> None:
    # arXiv 2506.13585: "developed based on our previous MiniMax-Text-01 model"; continual
    # pretraining on 7.5T tokens, then SFT and RL.
    e = load_catalog().get("MiniMax-M1-80k")
    assert (e.base_model, e.relation) == ("MiniMax-Text-01", "continued-pretraining")


def test_foreign_bases_reach_the_lineage() -> None:
    cat = load_catalog()
    assert cat.ancestry("K2-Think").countries == ("AE", "CN")
    assert cat.ancestry("A.X 4.0").countries == ("KR", "CN")
    assert "Qwen License" in cat.ancestry("A.X 4.0").licenses
    assert cat.ancestry("Sarvam-M").countries == ("IN", "FR")


def test_at_least_40_releases_from_issue_17_are_catalogued() -> None:
    cat = load_catalog()
    for name in [
        "Qwen3.5-35B-A3B",
        "Qwen3.5-122B-A10B",
        "GLM-5",
        "GLM-4.6",
        "Kimi-K2-Thinking",
        "Kimi-K2.5",
        "MiniMax-M2",
        "MiniMax-M2.1",
        "DeepSeek-V3.2",
        "gpt-oss-safeguard-20b",
        "Qwen3-Coder-480B-A35B-Instruct",
        "Qwen3-Next-80B-A3B-Instruct",
        "Seed-OSS-36B-Instruct",
        "Olmo 3 32B Think",
        "Solar-Open-100B",
        "A.X K1",
        "A.X 4.0",
        "EuroLLM-22B-Instruct",
        "Sarvam-M",
        "Sarvam-105B",
        "K2-Think",
    ]:
        assert cat.get(name).name == name
    assert len(cat.entries) >= 114 + 40
