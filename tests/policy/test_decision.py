"""Cedar admission decisions of each bundled pack on real catalog entries."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bastion.admission.attributes import Facts, catalog_attributes
from bastion.catalog import load_catalog
from bastion.policy import PACKS, ArtifactAttributes, Organisation, admission_decision

ORG = Organisation(denied_countries=("CN", "RU"), trusted_signers=("org-key",))


def attrs(name: str, vet_verdict: str = "pass", signer: str = "org-key", **kw: Any) -> ArtifactAttributes:
    facts = Facts(vet_verdict, tuple(kw.pop("finding_codes", ())), signer)
    return catalog_attributes(name, load_catalog(), facts, **kw)


def ids(decision: object) -> list[str]:
    return [r.id for r in decision.reasons]  # type: ignore[attr-defined]


def test_distill_llama_denied_under_sovereign_because_of_its_cn_developer_not_base() -> None:
    d = admission_decision(attrs("DeepSeek-R1-Distill-Llama-8B"), "sovereign-strict", ORG)
    assert not d.allowed and ids(d) == ["sovereign.denied-country-in-lineage"]


def test_us_model_on_a_cn_base_is_denied_transitively() -> None:
    a = attrs("Cogito v2.1 671B")
    assert a.developer_country == "US" and "CN" in a.lineage_countries
    d = admission_decision(a, "sovereign-strict", ORG)
    assert not d.allowed and ids(d) == ["sovereign.denied-country-in-lineage"]


def test_distill_llama_allowed_when_only_the_base_country_is_listed() -> None:
    # The Llama distill's base is American: deny the US and it is refused through its ancestor alone.
    us_only = Organisation(denied_countries=("US",), trusted_signers=("org-key",))
    assert not admission_decision(attrs("DeepSeek-R1-Distill-Llama-8B"), "sovereign-strict", us_only).allowed
    assert admission_decision(attrs("DeepSeek-R1-Distill-Qwen-7B"), "sovereign-strict", us_only).allowed


def test_qwen_distill_has_two_cn_ancestors_and_is_denied() -> None:
    a = attrs("DeepSeek-R1-Distill-Qwen-7B")
    assert a.lineage == ("DeepSeek-R1-Distill-Qwen-7B", "Qwen2.5-Math-7B", "Qwen2.5-7B")
    assert not admission_decision(a, "sovereign-strict", ORG).allowed


def test_sovereign_admits_the_bundled_smollm2_signed_and_clean() -> None:
    d = admission_decision(attrs("SmolLM2-135M-Instruct"), "sovereign-strict", ORG)
    assert d.allowed and ids(d) == ["sovereign.admit-identified-signed-clean"]
    assert d.reasons[0].line > 0


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"signer": ""}, "unsigned"),
        ({"signer": "someone-else"}, "signed by a key the organisation does not trust"),
        ({"vet_verdict": "warn"}, "vet warned"),
        ({"finding_codes": ("PICKLE_GLOBAL",)}, "vet had findings"),
        ({"match_confidence": 40}, "identification too weak"),
    ],
)
def test_sovereign_denies_what_is_not_strictly_clean(change: dict[str, object], why: str) -> None:
    d = admission_decision(attrs("SmolLM2-135M-Instruct", **change), "sovereign-strict", ORG)
    assert not d.allowed, why
    assert "no permit statement matched" in d.note


def test_enterprise_refuses_custom_licence_anywhere_in_lineage() -> None:
    # Labelled MIT by DeepSeek, but its Llama base keeps the Llama licence.
    d = admission_decision(attrs("DeepSeek-R1-Distill-Llama-8B"), "enterprise", ORG)
    assert not d.allowed and ids(d) == []
    assert admission_decision(attrs("DeepSeek-R1-Distill-Qwen-7B"), "enterprise", ORG).allowed


def test_enterprise_refuses_non_commercial_and_needs_a_vet_pass() -> None:
    d = admission_decision(attrs("Command A (c4ai-command-a-03-2025)"), "enterprise", ORG)
    assert not d.allowed and ids(d) == ["enterprise.no-non-commercial"]
    assert not admission_decision(attrs("Mistral-7B-v0.1", vet_verdict="unknown"), "enterprise", ORG).allowed
    assert admission_decision(attrs("Mistral-7B-v0.1"), "enterprise", ORG).allowed


def test_permissive_admits_anything_but_a_vet_fail() -> None:
    assert admission_decision(attrs("DeepSeek-R1", signer=""), "permissive", ORG).allowed
    d = admission_decision(attrs("Gemma 3 270M", vet_verdict="fail"), "permissive", ORG)
    assert not d.allowed and ids(d) == ["permissive.vet-fail"]


def test_organisation_file_is_validated(tmp_path: object) -> None:
    from pathlib import Path

    from bastion.errors import ConfigError

    p = Path(str(tmp_path)) / "org.toml"
    p.write_text('denied_countries = ["China"]\n')
    with pytest.raises(ConfigError, match="bad country codes"):
        Organisation.load(p)
    p.write_text('denied_countries = ["CN"]\ntrusted_signers = ["k1"]\n')
    assert Organisation.load(p) == Organisation(("CN",), ("k1",))


# What admission builds for an artifact no catalog entry matched: everything but vet and signer unknown.
UNKNOWN = ArtifactAttributes(name="my-model.gguf", vet_verdict="pass", signer="org-key")


@pytest.mark.parametrize("pack", PACKS)
def test_every_pack_denies_an_artifact_of_unknown_identity(pack: str) -> None:
    d = admission_decision(UNKNOWN, pack, ORG)
    assert not d.allowed, f"{pack} admits an artifact of unknown identity, licence and lineage"


@pytest.mark.parametrize(
    ("pack", "statement"),
    [
        ("permissive", "permissive.unknown-identity"),
        ("enterprise", "enterprise.unknown-licence-or-lineage"),
        ("sovereign-strict", "sovereign.unknown-lineage"),
    ],
)
def test_the_denial_of_an_unknown_artifact_names_the_unknown(pack: str, statement: str) -> None:
    assert statement in ids(admission_decision(UNKNOWN, pack, ORG))


def test_enterprise_refuses_a_known_lineage_whose_licences_are_unknown() -> None:
    # containsAll over an empty set is true: an artifact whose lineage has no licence must not pass.
    known = attrs("SmolLM2-135M-Instruct")
    assert admission_decision(known, "enterprise", ORG).allowed
    blank = dataclasses.replace(known, license="", lineage_licenses=())
    d = admission_decision(blank, "enterprise", ORG)
    assert not d.allowed and ids(d) == ["enterprise.unknown-licence-or-lineage"]
