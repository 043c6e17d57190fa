"""Policy files: schema and syntax errors come back with the line they are on."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import NotFound, UsageError
from bastion.policy import PACKS, load_policy, read_policy
from bastion.policy.source import split_statements

BAD = """// header; a semicolon in a comment must not split
@id("ok")
permit (principal, action == Bastion::Action::"admit", resource)
when { resource.vet_verdict == "pass;still a string" };

@id("typo")
forbid (principal, action == Bastion::Action::"admit", resource)
when {
  resource.licence == "MIT"
};

@id("type")
forbid (principal, action == Bastion::Action::"admit", resource)
when { resource.params_millions > "big" };

permit (principal, action, resource) when { ) };
"""


@pytest.mark.parametrize("pack", PACKS)
def test_bundled_packs_are_valid(pack: str) -> None:
    source, problems = read_policy(pack)
    assert problems == []
    assert all(s.annotation for s in source.statements)  # every bundled statement has an @id


def test_schema_and_syntax_errors_carry_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "bad.cedar"
    f.write_text(BAD)
    _, problems = read_policy(f)
    assert [(p.line, p.statement) for p in problems] == [(9, "typo"), (12, "type"), (16, None)]
    assert "licence" in problems[0].message
    assert "expected Long" in problems[1].message
    assert problems[2].message.startswith("syntax:")


def test_load_policy_raises_usage_error_with_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.cedar"
    f.write_text(BAD)
    with pytest.raises(UsageError, match=r"bad\.cedar:9: attribute `licence`"):
        load_policy(f)


def test_unknown_action_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "p.cedar"
    f.write_text('\n\npermit (principal, action == Bastion::Action::"train", resource);\n')
    _, problems = read_policy(f)
    assert problems and problems[0].line == 3


def test_empty_policy_is_a_problem(tmp_path: Path) -> None:
    f = tmp_path / "e.cedar"
    f.write_text("// nothing here\n")
    assert read_policy(f)[1][0].message.startswith("no policy statements")


def test_missing_policy_names_the_packs() -> None:
    with pytest.raises(NotFound) as exc:
        read_policy("sovereign")
    assert "sovereign-strict" in exc.value.hint


def test_splitter_respects_strings_and_comments() -> None:
    parts = split_statements(BAD)
    assert [line for line, _ in parts] == [2, 6, 12, 16]


def test_a_wave_one_policy_naming_resources_without_an_action_scope_still_validates(tmp_path: Path) -> None:
    # Retrieval added the Document resource; statements written for models before it must not break
    # on upgrade (found by the red team: the gateway refused such a policy at reload).
    policy = tmp_path / "old.cedar"
    policy.write_text(
        'permit (principal, action, resource);\nforbid (principal, action, resource) when { resource.name == "good" };\n',
        encoding="utf-8",
    )
    source, problems = read_policy(policy)
    assert problems == [], problems
    assert len(source.statements) == 2
