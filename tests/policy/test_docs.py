"""Every attribute the Cedar schema offers policy writers is documented in the README."""

from __future__ import annotations

import re
from pathlib import Path

from bastion.policy import schema_text

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_schema_attribute_and_action_is_in_the_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    attributes = set(re.findall(r"^\s+(\w+):\s", schema_text(), re.MULTILINE))
    actions = {"admit", "chat", "completion", "embedding", "retrieve"}
    undocumented = sorted(a for a in attributes | actions if f"`{a}`" not in readme)
    assert undocumented == []
