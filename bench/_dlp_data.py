"""The labelled set for bench/dlp.py, generated from the presidio-evaluator wheel at a fixed seed.

The wheel (downloaded once with ``pip download --no-deps presidio-evaluator==0.3.2``) ships
``templates.txt`` (209 sentence templates with ``{{entity}}`` slots) and
``FakeNameGenerator.com_3000.csv`` (3,000 fake identities). Templates are filled with ``faker``
(seed 42) for structured values and with identity rows for names and addresses; rows whose number is a
multiple of 5 are held out (used here, never looked at while writing the detectors). Added to it, and
written here: UK NINO/NHS samples (faker's NINOs do not follow HMRC's rules, so they are built
valid), secrets samples, and the markings and clean corpora of ``_dlp_corpus.py``.
"""

from __future__ import annotations

import csv
import io
import random
import re
import string
import subprocess
import sys
import zipfile
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from pathlib import Path

WHEEL = "presidio_evaluator-0.3.2-py3-none-any.whl"
RAW = "presidio_evaluator/data_generator/raw_data/"
SEED = 42
#: template slot -> gold type (None: filled but not scored)
SLOTS = {
    "credit_card_number": "credit_card", "iban": "iban", "ssn": "us_ssn", "email": "email",
    "phone_number": "phone", "ip_address": "ip_address",
    "person": "person", "name": "person", "name_male": "person", "name_female": "person",
    "first_name": "person", "first_name_male": "person", "first_name_female": "person",
    "first_name_nonbinary": "person", "last_name": "person", "last_name_male": "person",
    "last_name_female": "person",
    "address": "location", "street_name": "location", "city": "location", "country": "location",
}  # fmt: skip
STRUCTURED = ("credit_card", "iban", "us_ssn", "uk_nino", "uk_nhs", "email", "phone", "ip_address")


@dataclass
class Sample:
    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    source: str = "templates"


def wheel(cache: Path) -> Path:
    """The presidio-evaluator wheel, downloaded once into ``cache`` (install time, never at run time)."""
    path = cache / WHEEL
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
                        "presidio-evaluator==0.3.2"], check=True)
    return path


def _identities(zf: zipfile.ZipFile) -> list[dict[str, str]]:
    text = zf.read(RAW + "FakeNameGenerator.com_3000.csv").decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    return [r for r in rows if int(r["Number"]) % 5 == 0]  # the held-out rows


def _nino(rng: random.Random) -> str:
    first = rng.choice("ABCEGHJKLMNOPRSTWXYZ")
    second = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    while first + second in {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}:
        second = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    digits = "".join(rng.choice(string.digits) for _ in range(6))
    return f"{first}{second} {digits[:2]} {digits[2:4]} {digits[4:]} {rng.choice('ABCD')}"


def _nhs(rng: random.Random) -> str:
    while True:
        d = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(x * (10 - i) for i, x in enumerate(d)) % 11
        if check == 11:
            check = 0
        if check != 10:
            s = "".join(map(str, d)) + str(check)
            return f"{s[:3]} {s[3:6]} {s[6:]}"


def _secret(rng: random.Random, kind: str) -> str:
    alnum = string.ascii_letters + string.digits
    if kind == "aws_access_key":
        return "AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16))
    if kind == "github_token":
        return "ghp_" + "".join(rng.choice(alnum) for _ in range(36))
    if kind == "json_web_token":
        def part(raw: bytes) -> str:
            return urlsafe_b64encode(raw).decode().rstrip("=")
        sub = "".join(rng.choice(string.digits) for _ in range(10))
        sig = "".join(rng.choice(alnum + "-_") for _ in range(43))
        return part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(f'{{"sub":"{sub}"}}'.encode()) + "." + sig
    return "".join(rng.choice(alnum) for _ in range(20))


def build(cache: Path, per_template: int = 5) -> list[Sample]:
    """Every labelled sample: filled templates, NINO/NHS, secrets."""
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(SEED)
    rng = random.Random(SEED)
    with zipfile.ZipFile(wheel(cache)) as zf:
        templates = [t.strip() for t in zf.read(RAW + "templates.txt").decode("utf-8", "replace").splitlines()
                     if t.strip()]
        people = _identities(zf)
    fillers = {
        "credit_card_number": fake.credit_card_number, "iban": fake.iban, "ssn": fake.ssn, "email": fake.email,
        "phone_number": fake.phone_number,
        "ip_address": lambda: fake.ipv4() if rng.random() < 0.7 else fake.ipv6(),
    }  # fmt: skip
    samples: list[Sample] = []
    for template in templates:
        for _ in range(per_template):
            person = rng.choice(people)
            samples.append(_fill(template, fake, fillers, person))
    nino_templates = ["My National Insurance number is {v}.", "NI number: {v}", "Please update NINO {v} on file."]
    nhs_templates = ["My NHS number is {v}.", "NHS no. {v} - please check the referral.", "Patient (NHS {v}) missed"]
    for templates_, gen, kind in ((nino_templates, _nino, "uk_nino"), (nhs_templates, _nhs, "uk_nhs")):
        for i in range(60):
            value = gen(rng)
            t = templates_[i % len(templates_)]
            start = t.index("{v}")
            samples.append(Sample(t.replace("{v}", value), [(start, start + len(value), kind)], "uk"))
    secret_templates = ["My AWS key is {v}, why is it rejected?", "export GITHUB_TOKEN={v}",
                        "curl -H 'Authorization: Bearer {v}' https://api.example.com"]
    for i, kind in enumerate(["aws_access_key", "github_token", "json_web_token"] * 30):
        value = _secret(rng, kind)
        t = secret_templates[i % 3]
        start = t.index("{v}")
        samples.append(Sample(t.replace("{v}", value), [(start, start + len(value), "secret")], "secrets"))
    return samples


_SLOT = re.compile(r"\{\{(\w+)\}\}")


def _fill(template: str, fake: object, fillers: dict[str, object], person: dict[str, str]) -> Sample:
    out: list[str] = []
    spans: list[tuple[int, int, str]] = []
    pos = 0
    length = 0
    for m in _SLOT.finditer(template):
        out.append(template[pos : m.start()])
        length += m.start() - pos
        slot = m.group(1)
        value = _value(slot, fake, fillers, person)
        kind = SLOTS.get(slot)
        if kind is not None:
            spans.append((length, length + len(value), kind))
        out.append(value)
        length += len(value)
        pos = m.end()
    out.append(template[pos:])
    return Sample("".join(out), spans)


def _value(slot: str, fake: object, fillers: dict[str, object], person: dict[str, str]) -> str:
    if slot in fillers:
        return str(fillers[slot]())  # type: ignore[operator]
    names = {
        "person": f"{person['GivenName']} {person['Surname']}", "name": f"{person['GivenName']} {person['Surname']}",
        "first_name": person["GivenName"], "last_name": person["Surname"],
        "address": f"{person['StreetAddress']}, {person['City']}, {person['State']} {person['ZipCode']}",
        "city": person["City"], "country": person["CountryFull"],
    }  # fmt: skip
    if slot in names:
        return names[slot]
    if slot.startswith(("first_name", "name_")):
        return person["GivenName"] if slot.startswith("first") else f"{person['GivenName']} {person['Surname']}"
    if slot.startswith("last_name"):
        return person["Surname"]
    method = getattr(fake, slot, None)
    return str(method()) if callable(method) else slot
