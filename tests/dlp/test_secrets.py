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


#: a line for many detect-secrets plugins, and lines of prose, code and near misses
LINES = [
    "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
    'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
    "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc and rk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "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",
    "npm token: npm_abcdefghijklmnopqrstuvwxyz0123456789",
    "pypi-AgEIcHlwaS5vcmcCJGE2YjE3ZDY0LTk2ZjQtNGU0Ny1hMzk1LWE5NWY5OTc1ZWE0MAACJXsicGVybWlzc2lvbnMi",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "postgres://admin:s3cr3tpw@db.internal:5432/app",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "AccountKey=lJzRc1YdHaAA2KCNJJ1tkYwF/+mKK6Ygw0NGe170Xu592euJv2wYUtBlV8z+qnlcNQSnIYVTkLZ6xlJa3QUwgw==",
    "SK0123456789abcdef0123456789abcdef twilio AC0123456789abcdef0123456789abcdef",
    "mailchimp 0123456789abcdef0123456789abcdef-us12",
    "discord MTIzNDU2Nzg5MDEyMzQ1Njc4.XXXXXX.abcdefghijklmnopqrstuvwxyz0",
    "sq0atp-abcdefghijklmnopqrstuv sq0csp-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP",
    "AIzaSyD-abcdefghijklmnopqrstuvwxyz012345",
    "glpat-abcdefghijklmnopqrst",
    "sk-proj-abcdefghijklmnopqrstT3BlbkFJabcdefghijklmnopqrst",
    "artifactory AKCp5abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456",
    'password = "hunter2hunter2"',
    "Please summarise the attached report and list the three main risks for the board.",
    "def f(x):\n    return {'a': x, \"b\": 'AKIA' + 'IOSFODNN7EXAMPLE'}",
    "AKIA short, ghp_ too short, sk_live_ nothing, xoxb- nothing, eyJ nothing",
    "",
    " ",
]


def test_the_one_search_per_group_never_hides_a_pattern_that_matches() -> None:
    from bastion.dlp.secrets import SecretDetector

    detector = SecretDetector()
    for line in LINES:
        for (kind, rx, _), group in zip(detector._patterns, detector._groups, strict=True):
            prefilter = detector._prefilters[group]
            if rx.search(line) is not None:
                assert prefilter is None or prefilter.search(line) is not None, (kind, line)


def test_findings_are_the_same_with_and_without_the_prefilter() -> None:
    from bastion.dlp.normalise import normalise
    from bastion.dlp.secrets import SecretDetector

    fast, slow = SecretDetector(), SecretDetector()
    slow._prefilters = [None] * len(slow._prefilters)
    found = 0
    for text in [*LINES, "\n".join(LINES), KEY]:
        view = normalise(text)
        assert fast.detect(view) == slow.detect(view), text
        found += len(slow.detect(view))
    assert found > 20  # the corpus does exercise the patterns
