"""Know where a model comes from: the provenance catalog, ancestry queries, identification, recommend."""

from bastion.catalog.catalog import Ancestry, Catalog, load_catalog, parse_catalog
from bastion.catalog.schema import Benchmark, CatalogEntry

__all__ = ["Ancestry", "Benchmark", "Catalog", "CatalogEntry", "load_catalog", "parse_catalog"]
