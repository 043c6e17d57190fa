from __future__ import annotations

from pathlib import Path

import pytest

from bastion.config import load_settings
from bastion.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_serve_the_bundled_smollm2_on_loopback() -> None:
    s = load_settings(None, {})
    assert s.server.host == "127.0.0.1"
    assert [m.name for m in s.models] == ["smollm2"]
    assert s.egress.guard is True


def test_the_example_configuration_is_valid() -> None:
    s = load_settings(ROOT / "bastion.example.toml", {})
    assert {m.name for m in s.models} == {"smollm2", "gemma3", "minilm"}
    assert s.model("gemma3") is not None and s.model("gemma3").chat_format == "gemma"  # type: ignore[union-attr]


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text("[server]\nport = 9000\n")
    s = load_settings(cfg, {"BASTION_SERVER__PORT": "9100", "BASTION_EGRESS__ALLOW": "a.internal, b.internal"})
    assert s.server.port == 9100
    assert s.egress.allow == ("a.internal", "b.internal")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server\nport = 1", "not valid TOML"),
        ("[server]\nport = 'eighty'", "server.port"),
        ("[server]\nprot = 80", "server.prot"),
        ('[[models]]\nname = "x"\nbackend = "openai"', "needs url"),
        ('[[models]]\nname = "x"\npath = "a"\n[[models]]\nname = "x"\npath = "b"', "repeated: x"),
        ('[[models]]\nname = "x"\npath = "a"\nfallbacks = ["y"]', "fallback 'y'"),
        ('[[models]]\nname = "bad name!"\npath = "a"', "models.0.name"),
    ],
)
def test_invalid_configuration_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_settings(cfg, {})
    assert str(cfg) in err.value.message


def test_missing_configuration_file_says_how_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_settings(tmp_path / "nope.toml", {})
    assert "bastion.example.toml" in err.value.hint
