"""Know where a model comes from: the provenance catalog, ancestry queries, identification, recommend."""

from bastion.catalog.catalog import Ancestry, Catalog, load_catalog, parse_catalog, reload_catalog
from bastion.catalog.identify import Candidate, Claims, Evidence, EvidenceSource, Identification, identify
from bastion.catalog.schema import Benchmark, CatalogEntry, Citation
from bastion.catalog.update import UpdateDiff, apply_update, plan_update, sign_update, verify_update

__all__ = [
    "Ancestry",
    "Benchmark",
    "Candidate",
    "Catalog",
    "CatalogEntry",
    "Citation",
    "Claims",
    "Evidence",
    "EvidenceSource",
    "Identification",
    "UpdateDiff",
    "apply_update",
    "identify",
    "load_catalog",
    "parse_catalog",
    "plan_update",
    "reload_catalog",
    "sign_update",
    "verify_update",
]
