"""Know where a model comes from: the provenance catalog, ancestry queries, identification, recommend."""

from bastion.catalog.catalog import Ancestry, Catalog, load_catalog, parse_catalog
from bastion.catalog.identify import Candidate, Claims, Evidence, EvidenceSource, Identification, identify
from bastion.catalog.schema import Benchmark, CatalogEntry

__all__ = [
    "Ancestry",
    "Benchmark",
    "Candidate",
    "Catalog",
    "CatalogEntry",
    "Claims",
    "Evidence",
    "EvidenceSource",
    "Identification",
    "identify",
    "load_catalog",
    "parse_catalog",
]
