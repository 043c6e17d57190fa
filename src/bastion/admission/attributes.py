"""Turn what is known about an artifact into the attributes a Cedar admission policy decides on.

This sits above the catalog and the policy engine: policy decides on :class:`ArtifactAttributes`
only and never reads the catalog; the catalog knows nothing of policy. Three kinds of subject:

* a catalog release (identified from the file, or named): its facts and its whole ancestry;
* a declared derivative (an in-house fine-tune of a catalog release): developer and country are the
  organisation's, the lineage is the base's, and the claim stands only as far as the weights support
  it (``lineage_evidence``);
* an unidentified artifact: unknown developer, country, licence and lineage.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.catalog import Catalog
from bastion.errors import ConfigError
from bastion.policy import ArtifactAttributes, Organisation

#: what the weights said about a declared base (``lineage.check_lineage``'s ``claim``), or that
#: no base was declared
LINEAGE_EVIDENCE = ("not-declared", "supported", "contradicted", "unsupported", "inconclusive")


@dataclass(frozen=True)
class Facts:
    """What vet and signing established (or, for a hypothetical decision, what is assumed)."""

    vet_verdict: str = "pass"
    finding_codes: tuple[str, ...] = ()
    signer: str = ""


def catalog_attributes(
    name: str, catalog: Catalog, facts: Facts, match_confidence: int = 100
) -> ArtifactAttributes:
    """Attributes of catalog entry ``name`` with its whole ancestry, plus the vet/signing facts."""
    anc = catalog.ancestry(name)
    e = anc.chain[0]
    return ArtifactAttributes(
        name=e.name,
        developer=e.developer,
        developer_country=e.country,
        lineage=tuple(x.name for x in anc.chain),
        lineage_countries=anc.countries,
        developed_in=e.made_in,
        lineage_developed_in=anc.developed_in,
        license=e.license,
        lineage_licenses=anc.licenses,
        license_flags=anc.license_flags,
        params_millions=round(e.params_b * 1000),
        active_params_millions=round(e.active_b * 1000),
        vet_verdict=facts.vet_verdict,
        finding_codes=facts.finding_codes,
        signer=facts.signer,
        match_confidence=match_confidence,
    )


def derivative_attributes(
    name: str,
    base: str,
    catalog: Catalog,
    organisation: Organisation,
    facts: Facts,
    lineage_evidence: str,
    related_to: str | None = None,
) -> ArtifactAttributes:
    """An in-house derivative of catalog release ``base``: the organisation's model on the base's lineage.

    ``lineage_evidence`` is what the weight fingerprint said about the claim. Only ``supported`` earns
    confidence; otherwise the match confidence is 0, and when the weights point at another catalog
    release (``related_to``) the lineage recorded is that one's, so country and licence tests judge
    the model the weights say it is, not the one the operator named.
    """
    if lineage_evidence not in LINEAGE_EVIDENCE:
        raise ValueError(f"lineage_evidence must be one of {LINEAGE_EVIDENCE}")
    if not organisation.country:
        raise ConfigError(
            "organisation.toml has no 'country': an in-house model's developer country is the organisation's",
            hint="Add country = \"XX\" (ISO 3166-1 alpha-2) and name = \"...\" to organisation.toml.",
        )
    lineage_of = base if lineage_evidence == "supported" or related_to is None else related_to
    anc = catalog.ancestry(lineage_of)
    b = anc.chain[0]
    return ArtifactAttributes(
        name=name,
        developer=organisation.name or organisation.id,
        developer_country=organisation.country,
        lineage=(name, *(x.name for x in anc.chain)),
        lineage_countries=tuple(dict.fromkeys((organisation.country, *anc.countries))),
        # developed in-house: where the organisation is, on top of where every ancestor was developed
        developed_in=organisation.country,
        lineage_developed_in=tuple(dict.fromkeys((organisation.country, *anc.developed_in))),
        # a fine-tune is bound by its base's licence terms, whatever label it is given in-house
        license=b.license,
        lineage_licenses=anc.licenses,
        license_flags=anc.license_flags,
        params_millions=round(b.params_b * 1000),
        active_params_millions=round(b.active_b * 1000),
        vet_verdict=facts.vet_verdict,
        finding_codes=facts.finding_codes,
        signer=facts.signer,
        match_confidence=100 if lineage_evidence == "supported" else 0,
        lineage_evidence=lineage_evidence,
    )


def unidentified_attributes(name: str, facts: Facts) -> ArtifactAttributes:
    """An artifact no catalog entry matches: everything but vet and signing is unknown."""
    return ArtifactAttributes(
        name=name, vet_verdict=facts.vet_verdict, finding_codes=facts.finding_codes, signer=facts.signer
    )
