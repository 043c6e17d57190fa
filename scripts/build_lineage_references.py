"""Build the lineage references of the bundled models (run once by `make venv`; `--force` rebuilds).

Fingerprints SmolLM2-135M-Instruct and Gemma 3 270M from the bundled GGUFs into
``~/.cache/bastion/lineage-references`` (or ``$BASTION_LINEAGE_REFS``), so every reference store
lists them and ``bastion import --base SmolLM2-135M-Instruct`` can test the claim on a fresh home.
"""

from __future__ import annotations

import sys

from bastion.lineage.shipped import build, shipped_dir


def main() -> int:
    out = shipped_dir()
    build(out, force="--force" in sys.argv)
    print(f"lineage references: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
