"""Licence facts corrected while verifying issue 17's non-Chinese rows, each pinned to the text it was read from."""

from __future__ import annotations

from bastion.admission import Facts
from bastion.admission.attributes import catalog_attributes
from bastion.catalog import load_catalog


def test_exaone_4_licence_carries_its_naming_notice_and_compete_clauses() -> None:
    # github LG-AI-EXAONE/EXAONE-4.0 LICENSE ("EXAONE AI Model License Agreement 1.2 - NC"): §2.1c a modified
    # Model "must include "EXAONE" at the beginning of its name"; §2.1d distribute "with a copy of this
    # Agreement"; §3.1 no commercial use and no use "to develop or improve any models that compete".
    cat = load_catalog()
    for name in ("EXAONE 4.0 1.2B", "EXAONE 4.0 32B"):
        e = cat.get(name)
        assert e.license == "EXAONE AI Model License Agreement 1.2 - NC"
        assert {"non_commercial", "no_competing_models", "naming_requirement", "notice_required"} <= set(
            e.license_flags
        )
        assert e.verified and any("§2.1c" in c.quote and c.url.endswith("/LICENSE") for c in e.citations)
    # transformers docs/source/en/model_doc/exaone4.md: "| Max sequence length | 131,072 | 65,536 |"
    assert (cat.get("EXAONE 4.0 32B").context, cat.get("EXAONE 4.0 1.2B").context) == (131072, 65536)


def test_gemma_3_terms_require_a_notice_file_and_flow_down() -> None:
    # Gemma Terms of Use §3.1: use restrictions as "an enforceable provision in any agreement"; "All
    # Distributions ... must be accompanied by a "Notice" text file". Gemma 4 moved to Apache-2.0.
    cat = load_catalog()
    for name in ("Gemma 3 270M", "Gemma 3 270M IT"):
        e = cat.get(name)
        assert {"notice_required", "use_restrictions_flow_down", "acceptable_use_policy"} <= set(
            e.license_flags
        )
        assert e.verified
    for name in ("Gemma 4 31B", "Gemma 4 26B A4B"):
        e = cat.get(name)
        assert (e.license, e.license_flags) == ("Apache-2.0", ())
    assert cat.get("Gemma 4 26B A4B").active_params_b == 3.8


def test_nvidia_open_model_license_requires_a_notice_file() -> None:
    # NVIDIA Open Model License §3.1: "include the following attribution notice within a "Notice" text
    # file"; §10 Delaware law, Santa Clara County courts (hence country US).
    cat = load_catalog()
    for name in ("NVIDIA-Nemotron-Nano-9B-v2", "Llama-3.3-Nemotron-Super-49B-v1"):
        e = cat.get(name)
        assert "notice_required" in e.license_flags and e.verified
        assert any("§10" in c.quote for c in e.citations if "country" in c.facts)


def test_nemotron_super_sees_the_llama_terms_along_its_lineage() -> None:
    # Card: "a derivative of Meta Llama-3.3-70B-Instruct"; "Additional Information: Llama 3.3 Community
    # License Agreement. Built with Llama." The Llama 3.3 licence reaches Cedar through the lineage.
    attrs = catalog_attributes("Llama-3.3-Nemotron-Super-49B-v1", load_catalog(), Facts("unknown"))
    assert "Llama 3.3 Community License" in attrs.lineage_licenses
    assert {"mau_cap_700m", "naming_requirement"} <= set(attrs.license_flags)


def test_gated_terms_on_apache_models_are_flagged() -> None:
    # Apertus card: gated "Apertus LLM Acceptable Use Policy (1.0 | September 1, 2025)"; K2-Think card:
    # "By downloading, using, or interacting with this model, you ... agree to ... Prohibited Uses".
    cat = load_catalog()
    for name in ("Apertus-70B-Instruct-2509", "Apertus-8B-Instruct-2509", "K2-Think"):
        e = cat.get(name)
        assert e.license == "Apache-2.0" and "acceptable_use_policy" in e.license_flags and e.verified


def test_contexts_no_primary_source_states_are_not_recorded() -> None:
    # gpt-oss-safeguard README/card, the K2-Think card and the Olmo 3 7B Instruct card state no context
    # length; the values recorded from memory (or from a base model's card) were removed, not guessed.
    cat = load_catalog()
    for name in ("gpt-oss-safeguard-120b", "gpt-oss-safeguard-20b", "K2-Think", "Olmo 3 7B Instruct"):
        e = cat.get(name)
        assert e.context is None and e.verified
    assert cat.get("gpt-oss-safeguard-20b").base_model == "gpt-oss-20b"


def test_command_a_reasoning_is_non_commercial_under_cohere_terms() -> None:
    # Card: "License: CC-BY-NC, requires also adhering to Cohere Lab's Acceptable Use Policy";
    # cohere.com/saas-agreement: principal place of business 171 John Street, Toronto.
    e = load_catalog().get("Command A Reasoning (08-2025)")
    assert (e.license, e.country, e.params_b) == ("CC-BY-NC", "CA", 111.0)
    assert {"non_commercial", "acceptable_use_policy"} <= set(e.license_flags)


def test_nemotron_3_rows_name_the_nemotron_licence_and_stay_unverified_without_its_text() -> None:
    # Cards: "Governing Terms: Use of this model is governed by the NVIDIA Nemotron Open Model License";
    # Super: "Total Parameters | 120B (12B active)", "Release Date | March 11, 2026". The Nemotron licence
    # text was not readable offline, so neither row may claim its flags are known.
    cat = load_catalog()
    for name in ("NVIDIA Nemotron 3 Nano 30B-A3B", "NVIDIA Nemotron 3 Super 120B-A12B"):
        e = cat.get(name)
        assert e.license == "NVIDIA Nemotron Open Model License"
        assert not e.verified and "license_flags" in e.uncited_facts()
    super_ = cat.get("NVIDIA Nemotron 3 Super 120B-A12B")
    assert (super_.params_b, super_.active_params_b, super_.released) == (120.0, 12.0, "2026-03")


def test_trinity_large_preview_context_comes_from_the_card_not_a_hosted_endpoint() -> None:
    # huggingface.co/arcee-ai/Trinity-Large-Preview: "Context length after extension | 512k";
    # docs.arcee.ai: "support for 512K inference (hosted at 128k)". The hosted 128k/131K is not the model's.
    e = load_catalog().get("Trinity-Large-Preview")
    assert e.context == 512 * 1024
    assert any("512k" in c.quote and "context" in c.facts for c in e.citations)
    assert not e.verified  # licence (Apache-2.0 vs later OpenMDW-1.1), release month and seat still uncited
    assert {"license", "license_flags", "country"} <= set(e.uncited_facts())


def test_jamba_flags_stay_unknown_until_the_licence_text_is_read() -> None:
    # The Jamba Open Model License clauses were not found in any stored source (see the row's note); an
    # empty flag list there means "unknown", so the row may not claim verification.
    for name in ("Jamba 1.5 Mini", "Jamba 1.5 Large"):
        e = load_catalog().get(name)
        assert e.license == "Jamba Open Model License"
        assert not e.verified and "license_flags" in e.uncited_facts()


def test_smollm3_is_verified_on_its_headquarters_without_guessing_where_it_was_built() -> None:
    # huggingface.co/terms-of-service: "Hugging Face, Inc. a Delaware corporation"; no primary source says
    # where SmolLM3 was built (the team's Paris office is hearsay), so developed_in stays unset.
    e = load_catalog().get("SmolLM3-3B")
    assert e.verified and (e.country, e.developed_in, e.made_in) == ("US", None, "US")
    assert any("Delaware corporation" in c.quote for c in e.citations if "country" in c.facts)


def test_command_a_is_verified_from_its_card_with_the_256k_context_in_binary_k() -> None:
    # Card: "Model Size: 111 billion parameters", "Context length: 256K" (configured in HF for 128K),
    # "License: CC-BY-NC , requires also adhering to Cohere Lab's Acceptable Use Policy".
    e = load_catalog().get("Command A (c4ai-command-a-03-2025)")
    assert e.verified and (e.params_b, e.context, e.license) == (111.0, 262144, "CC-BY-NC")
    assert {"non_commercial", "acceptable_use_policy"} <= set(e.license_flags)


def test_mistral_large_3_sizes_are_reconciled_by_the_card_and_the_instruct_row_is_verified() -> None:
    # Instruct card: "41B active parameters and 675B total parameters"; "A Granular MoE Language Model with
    # 673B params and 39B active" + "A 2.5B Vision Encoder"; "license: apache-2.0"; base_model the Base.
    # mistral.ai/terms: registered offices at 15 rue des Halles, 75001 Paris.
    cat = load_catalog()
    e = cat.get("Mistral Large 3 675B Instruct (2512)")
    assert e.verified and (e.params_b, e.active_params_b, e.context) == (675.0, 41.0, 262144)
    assert (e.license, e.license_flags, e.base_model) == ("Apache-2.0", (), "Mistral Large 3 (2512)")
    base = cat.get("Mistral Large 3 (2512)")
    assert not base.verified and "license" in base.uncited_facts()  # the Base card itself was not read
    assert all(c.url == "https://mistral.ai/terms" for c in base.citations if "country" in c.facts)
