"""'verified' means every stated fact is backed by a cited primary source; licences are inherited."""

from __future__ import annotations

import pytest

from bastion.admission import Facts
from bastion.admission.attributes import catalog_attributes
from bastion.catalog import load_catalog, parse_catalog
from bastion.errors import ConfigError
from bastion.policy import Organisation, admission_decision
from bastion.policy.source import parse_source

ROW = (
    '[[model]]\nname = "Base"\ndeveloper = "Lab"\ncountry = "US"\nreleased = "2025-01"\nparams_b = 1.0\n'
    'license = "Base Licence"\nlicense_flags = ["mau_cap_700m"]\nverified = false\nsource = "https://e.org/b"\n'
)


def test_every_verified_row_carries_evidence_for_every_fact() -> None:
    rows = [e for e in load_catalog().entries if e.verified]
    assert rows, "at least the issue-17 corrections are verified"
    for e in rows:
        assert e.uncited_facts() == (), e.name
        assert all(c.url.startswith("https://") and c.quote for c in e.citations)


def test_a_verified_row_without_a_citation_for_its_licence_flags_is_refused() -> None:
    text = ROW.replace("verified = false", "verified = true") + (
        '[[model.citations]]\nfacts = ["developer", "country", "released", "params_b", "license"]\n'
        'url = "https://e.org/card"\nquote = "Lab, US, January 2025, 1B, Base Licence"\n'
    )
    with pytest.raises(ConfigError, match="no citation backs license_flags"):
        parse_catalog(text, "t.toml")
    ok = text.replace('"license"]', '"license", "license_flags"]')
    assert parse_catalog(ok, "t.toml").get("Base").verified


def _derived(binds: bool) -> str:
    base = (
        ROW
        if binds
        else ROW.replace("verified = false", "license_binds_derivatives = false\nverified = false")
    )
    return base + (
        '\n[[model]]\nname = "Child"\ndeveloper = "Other"\ncountry = "FR"\ndeveloped_in = "CN"\n'
        'released = "2025-06"\nparams_b = 1.0\nlicense = "MIT"\nbase_model = "Base"\nrelation = "fine-tune"\n'
        'verified = false\nsource = "https://e.org/c"\n'
    )


def test_a_derivative_inherits_its_bases_terms_unless_the_base_licence_releases_it() -> None:
    bound = parse_catalog(_derived(True), "t.toml").ancestry("Child")
    assert bound.licenses == ("MIT", "Base Licence") and bound.license_flags == ("mau_cap_700m",)
    free = parse_catalog(_derived(False), "t.toml").ancestry("Child")
    assert free.licenses == ("MIT",) and free.license_flags == ()


def test_policies_choose_headquarters_or_development_country() -> None:
    cat = parse_catalog(_derived(True), "t.toml")
    attrs = catalog_attributes("Child", cat, Facts("pass"))
    assert attrs.lineage_countries == ("FR", "US") and attrs.lineage_developed_in == ("CN", "US")
    org = Organisation(denied_countries=("CN",))
    for attr, allowed in [("lineage_countries", True), ("lineage_developed_in", False)]:
        text = (
            '@id("p")\npermit (principal, action == Bastion::Action::"admit", resource);\n'
            f'@id("f")\nforbid (principal, action == Bastion::Action::"admit", resource)\n'
            f"when {{ resource.{attr}.containsAny(principal.denied_countries) }};\n"
        )
        assert admission_decision(attrs, parse_source(text, "t.cedar")[0], org).allowed is allowed
