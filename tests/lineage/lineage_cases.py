"""Names of the models made by scripts/lineage_models.py, shared by the lineage tests."""

from scripts.lineage_models import DERIVED, UNRELATED

__all__ = ["DERIVED", "UNRELATED"]
