"""``bastion hash / sign / verify / signing-key`` end to end, as an operator runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import model_signing as ms
import pytest
from typer.testing import CliRunner

from bastion.bundled import minilm
from bastion.cli.main import app
from bastion.hashing import manifest_of

runner = CliRunner()


def bastion(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI entry point (errors are rendered by main(), as for a user)."""
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "all-MiniLM-L6-v2"
    shutil.copytree(minilm(), root)
    return root


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    result = runner.invoke(app, ["signing-key", "generate", "-o", str(tmp_path / "keys"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["curve"] == "secp256r1" and Path(doc["private_key"]).stat().st_mode & 0o777 == 0o600
    return tmp_path / "keys"


def test_hash_prints_sha256sum_lines_that_sha256sum_accepts(model: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["hash", str(model)])
    assert result.exit_code == 0, result.output
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(result.stdout)
    check = subprocess.run(["sha256sum", "-c", str(sums)], cwd=model, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == len(manifest_of(model).files)


def test_hash_json_is_one_document_with_the_root_digest(model: Path) -> None:
    result = runner.invoke(app, ["hash", str(model), "--json", "--algorithm", "blake2b", "--no-cache"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["root_digest"] == manifest_of(model, hash_type="blake2b").root_digest()
    assert doc["serialization"]["hash_type"] == "blake2b"


def test_sign_inside_the_folder_then_verify_with_bastion_and_model_signing(model: Path, keys: Path) -> None:
    sig = model / "model.sig"
    signed = runner.invoke(app, ["sign", str(model), "--key", str(keys / "signing-key.pem"), "-o", str(sig)])
    assert signed.exit_code == 0, signed.output
    verified = bastion("verify", model, "--sig", sig, "--key", keys / "signing-key.pub.pem", "--json")
    assert verified.returncode == 0, verified.stderr
    doc = json.loads(verified.stdout)
    assert doc["verified"] is True and doc["files"] == len(manifest_of(model).files) - 1  # minus model.sig
    ms.verifying.Config().use_elliptic_key_verifier(public_key=keys / "signing-key.pub.pem").verify(
        model, sig
    )


def test_tampered_model_exits_8_naming_the_file(model: Path, keys: Path, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    assert bastion("sign", model, "--key", keys / "signing-key.pem", "-o", sig).returncode == 0
    with (model / "model.safetensors").open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\xff")
    human = bastion("verify", model, "--sig", sig, "--key", keys / "signing-key.pub.pem")
    assert human.returncode == 8
    assert "changed: model.safetensors" in human.stderr and "Traceback" not in human.stderr
    as_json = bastion("verify", model, "--sig", sig, "--key", keys / "signing-key.pub.pem", "--json")
    assert as_json.returncode == 8
    assert json.loads(as_json.stdout)["error"]["code"] == "integrity_error"


def test_certificate_mode_from_the_cli(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "signing"))  # the test PKI builder
    from tests.signing.signing_pki import make_pki

    pki = make_pki(tmp_path / "pki")
    sig = tmp_path / "model.sig"
    signed = bastion("sign", model, "--key", pki.leaf_key, "--cert", pki.chain, "-o", sig, "--json")
    assert signed.returncode == 0, signed.stderr
    assert json.loads(signed.stdout)["mode"] == "certificate"
    verified = bastion("verify", model, "--sig", sig, "--cert-chain", pki.root)
    assert verified.returncode == 0, verified.stderr
    assert "CN=org model signer" in verified.stdout


def test_verify_needs_exactly_one_trust_anchor(model: Path, tmp_path: Path) -> None:
    result = bastion("verify", model, "--sig", tmp_path / "x.sig")
    assert result.returncode == 2 and "exactly one of --key or --cert-chain" in result.stderr


def test_unreadable_inputs_are_clear_errors_not_tracebacks(model: Path, keys: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.sig"
    junk.write_text("{not json")
    bad_sig = bastion("verify", model, "--sig", junk, "--key", keys / "signing-key.pub.pem")
    assert bad_sig.returncode == 3 and "junk.sig is not JSON" in bad_sig.stderr
    missing = bastion("hash", tmp_path / "nowhere")
    assert missing.returncode == 5 and "does not exist" in missing.stderr
    for r in (bad_sig, missing):
        assert "Traceback" not in r.stderr


def test_help_explains_each_command() -> None:
    for cmd, words in [
        (["hash", "--help"], ["--algorithm", "--shard-size", "--no-cache"]),
        (["sign", "--help"], ["--key", "--cert", "--output"]),
        (["verify", "--help"], ["--sig", "--key", "--cert-chain"]),
        (["signing-key", "generate", "--help"], ["0600", "--curve"]),
    ]:
        result = runner.invoke(app, cmd, env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert all(w in result.stdout for w in words), (cmd, result.stdout)


def test_readme_documents_every_signing_command_and_option() -> None:
    import typer.main

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Hash, sign and verify models", 1)[1].split("\n## ", 1)[0]
    group = typer.main.get_command(app)
    commands = {
        "hash": group.commands["hash"],  # type: ignore[attr-defined]
        "sign": group.commands["sign"],  # type: ignore[attr-defined]
        "verify": group.commands["verify"],  # type: ignore[attr-defined]
        "signing-key generate": group.commands["signing-key"].commands["generate"],  # type: ignore[attr-defined]
    }
    for name, cmd in commands.items():
        assert f"bastion {name}" in section, name
        for param in cmd.params:
            longest = max((o for o in param.opts if o.startswith("--")), default=None, key=len)
            if longest and longest not in ("--json", "--name"):
                assert longest in section, f"README does not document {name} {longest}"


def test_hash_output_cannot_carry_terminal_escapes_from_file_names(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "a\x1b[2Kfake.bin").write_text("x")
    result = runner.invoke(app, ["hash", str(root), "--no-cache"])
    assert result.exit_code == 0
    assert "\x1b" not in result.stdout and "a\\x1b[2Kfake.bin" in result.stdout
