"""The three packs' data-loss decisions: what goes to a local and to a remote model, in what form."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bastion.errors import DataLossBlocked
from bastion.policy import AccessPolicy, CedarAuthorizer, DlpContext, ModelResource


@dataclass(frozen=True)
class Key:
    key_id: str = "k1"
    name: str = "analyst"
    models: tuple[str, ...] = ("*",)
    groups: tuple[str, ...] = ()


PERSONAL = DlpContext(frozenset({"email"}), personal=1)
SECRET = DlpContext(frozenset({"aws_access_key"}), secrets=1)
MARKED = DlpContext(frozenset({"marking"}), markings=1, marking_level=2)
CAVEAT = DlpContext(frozenset({"marking"}), markings=1, marking_level=0, caveats=frozenset({"NOFORN"}))
CLOUD = ModelResource("cloud", 0, local=False)
LOCAL = ModelResource("smollm2", 0, local=True)

EXPECTED = {  # pack -> findings -> (to the remote model, to the local model)
    "permissive": {"personal": ("pseudonymise", "none"), "secret": ("pseudonymise", "none"),
                   "marked": (None, None), "caveat": ("none", "none")},
    "enterprise": {"personal": ("pseudonymise", "none"), "secret": ("redact", "none"),
                   "marked": (None, None), "caveat": (None, "none")},
    "sovereign-strict": {"personal": (None, "none"), "secret": (None, "none"),
                         "marked": (None, None), "caveat": (None, "none")},
}  # fmt: skip
CONTEXTS = {"personal": PERSONAL, "secret": SECRET, "marked": MARKED, "caveat": CAVEAT}


@pytest.mark.parametrize("pack", sorted(EXPECTED))
def test_pack_decisions(pack: str) -> None:
    policy = AccessPolicy(pack)
    for kind, (remote, local) in EXPECTED[pack].items():
        ctx = CONTEXTS[kind]
        assert policy.dlp_transform(Key(), "chat", CLOUD, ctx)[0] == remote, (pack, kind)
        assert policy.dlp_transform(Key(), "chat", LOCAL, ctx)[0] == local, (pack, kind)


def test_a_marking_within_the_ceiling_goes_to_a_cleared_model() -> None:
    policy = AccessPolicy("enterprise", {"ops": 2})
    model = ModelResource("smollm2", 2, local=True)
    assert policy.dlp_transform(Key(groups=("ops",)), "chat", model, MARKED)[0] == "none"


def test_a_block_names_the_finding_types_and_the_statement() -> None:
    auth = CedarAuthorizer(AccessPolicy("sovereign-strict"))
    with pytest.raises(DataLossBlocked) as err:
        auth.dlp_transform(Key(), "chat", CLOUD, PERSONAL)
    assert "email" in err.value.message and "dlp.remote-nothing-sensitive" in err.value.message
    assert err.value.http_status == 403 and err.value.code == "dlp_blocked"
