"""Cross the air gap: a signed transfer bundle that installs Bastion, its models and data offline.

``create_bundle`` (connected side) -> one canonical tar with a signed manifest of every file;
``verify_file`` (offline, every byte); ``install_bundle`` (verify, venv from the wheelhouse with no
index, models through vet -> admit). ``offline_verify`` is the same verifier with no Bastion import,
shipped in each bundle for its bootstrap script.
"""

from bastion.bundle.create import Created, ModelSpec, create_bundle
from bastion.bundle.install import Installed, ModelOutcome, install_bundle
from bastion.bundle.offline_verify import BundleRefused, Verified
from bastion.bundle.verify import read_trusted_key, verify_file

__all__ = [
    "BundleRefused",
    "Created",
    "Installed",
    "ModelOutcome",
    "ModelSpec",
    "Verified",
    "create_bundle",
    "install_bundle",
    "read_trusted_key",
    "verify_file",
]
