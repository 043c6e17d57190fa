"""Secrets are found by detect-secrets' plugins, with the whole value (or PEM block) as the span."""

from __future__ import annotations

from bastion.dlp import scan

KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAx\nabc\n-----END RSA PRIVATE KEY-----"


def spans(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in scan(text).items:
        out.setdefault(f.type, []).append(text[f.start : f.end])
    return out


def test_cloud_keys_tokens_and_assignments() -> None:
    text = (
        "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
        'password = "hunter2hunter2"\n'
        "token ghp_abcdefghijklmnopqrstuvwxyz0123456789\n"
        "Authorization: Bearer abcdef0123456789abcdef0123456789\n"
    )
    found = spans(text)
    assert found["aws_access_key"] == ["AKIAIOSFODNN7EXAMPLE"]
    assert found["secret_keyword"] == ["hunter2hunter2"]
    assert found["github_token"] == ["ghp_abcdefghijklmnopqrstuvwxyz0123456789"]
    assert found["bearer_token"] == ["abcdef0123456789abcdef0123456789"]


def test_the_whole_private_key_block_is_the_secret() -> None:
    text = f"here is my key\n{KEY}\nthanks"
    assert spans(text)["private_key"] == [KEY]


def test_jwt_and_connection_string() -> None:
    jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    found = spans(f"jwt {jwt} and postgres://admin:s3cr3tpw@db.internal:5432/app")
    assert found["json_web_token"] == [jwt]
    assert any("s3cr3tpw" in v for v in found["basic_auth_credentials"])


def test_prose_has_no_secrets() -> None:
    text = "Please summarise the attached report and list the three main risks for the board."
    assert not scan(text)
