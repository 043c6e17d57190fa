"""The POSIX-shell bootstrap: verify and install a bundle on a machine that has only ``python3``.

Order of trust (README, "Install inside an air-gapped network"): the script pins the SHA-256 of the
verifier (``offline_verify.py``) and of the ``cryptography`` wheels it needs, so a copy of the script
obtained out of band (printed by ``bastion bundle create``) checks those with the standard library
before running any of them. Then the verifier checks the organisation's signature over the manifest
and every byte of the bundle. Only then is any wheel installed or any Bastion code run. The copy of
the script inside the bundle is covered by the signature, but cannot vouch for itself before a
verifier has run: use the printed copy (or compare its digest) when the transfer path is not trusted.
"""

from __future__ import annotations

from collections.abc import Mapping

FILE = "bootstrap.sh"
#: the wheels the verifier needs besides the standard library (cffi is imported by cryptography's
#: bindings on CPython; pycparser by cffi)
VERIFIER_WHEELS = ("cryptography", "cffi", "pycparser")

_TEMPLATE = r"""#!/bin/sh
# Bastion bundle bootstrap: verify a bundle and install it, on a machine with only python3 (>= 3.11).
#   sh bootstrap.sh BUNDLE.tar ORG-KEY.pub.pem [PREFIX] [-- bastion bundle install options]
# 1. checks offline_verify.py and the cryptography wheels against the digests pinned below (stdlib only)
# 2. verifies the organisation's signature over the manifest and every byte of the bundle
# 3. builds a temporary virtual environment from the verified wheelhouse (no index) and runs
#    'bastion bundle install', which verifies again, installs under PREFIX and admits the models
set -eu
USAGE="usage: sh bootstrap.sh BUNDLE.tar ORG-KEY.pub.pem [PREFIX] [-- OPTIONS]"
[ $# -ge 2 ] || { echo "$USAGE" >&2; exit 2; }
B=$1; K=$2; shift 2
P=${HOME:-/opt}/bastion
if [ $# -gt 0 ] && [ "$1" != "--" ]; then P=$1; shift; fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
PY=${PYTHON:-python3}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT INT TERM
# -S: no site-packages, so only the standard library and the pinned wheels are ever imported
"$PY" -S - "$B" "$T" <<'EOF'
import hashlib, io, sys, tarfile, zipfile
PINNED = {
@PINS@}
bundle, tmp = sys.argv[1:]
with tarfile.open(bundle, "r:") as tf:
    for name, want in PINNED.items():
        member = tf.getmember(name)
        data = tf.extractfile(member).read() if member.isreg() else b""
        if hashlib.sha256(data).hexdigest() != want:
            sys.exit("REFUSED: %s differs from the digest pinned in this script" % name)
        if name.endswith(".whl"):
            zipfile.ZipFile(io.BytesIO(data)).extractall(tmp + "/lib")
        else:
            open(tmp + "/offline_verify.py", "wb").write(data)
EOF
PYTHONPATH="$T/lib" "$PY" -S "$T/offline_verify.py" "$B" "$K" --unpack "$T/b" >&2
"$PY" -m venv --without-pip "$T/venv"
PIP_WHEEL=$(ls "$T"/b/wheels/pip-*.whl)
"$T/venv/bin/python" "$PIP_WHEEL/pip" install -q --disable-pip-version-check --no-index --no-compile \
  --require-hashes --find-links "$T/b/wheels" -r "$T/b/requirements.txt"
"$T/venv/bin/bastion" bundle install "$B" --trust "$K" --prefix "$P" "$@"
"""


def bootstrap_script(pins: Mapping[str, str]) -> str:
    """The bootstrap script with ``pins`` (bundle path -> SHA-256) written into it."""
    body = "".join(f"    {name!r}: {digest!r},\n" for name, digest in sorted(pins.items()))
    return _TEMPLATE.replace("@PINS@", body)
