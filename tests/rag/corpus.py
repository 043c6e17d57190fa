"""A realistic two-level corpus for retrieval tests: an organisation's everyday documents beside
restricted operation reports, written to disk as Markdown, text, HTML, PDF and DOCX with folder rules.

Text is generated from templates at a fixed seed; the embeddings are the real all-MiniLM-L6-v2. Every
restricted document carries rare terms nothing else contains (a codename, a surname, a grid
reference), which is what the adversarial queries ask for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from bastion import bundled
from bastion.embeddings import MiniLMEmbedder
from bastion.keys import Principal

SEED = 16
CLEARANCE = {
    "intel": "secret",
    "analysts": "official",
    "staff": "official",
    "finance": "secret",
    "ts": "top-secret",
    "legal": "official",
}
EVERYONE = ["staff", "analysts", "finance", "intel", "legal", "ts"]

# Cleared for every restricted document.
TESS = Principal("key-tess", "tess", ("*",), ("intel", "ts", "legal"))
# Readers of the everyday documents only, each missing a different condition.
BOB = Principal("key-bob", "bob", ("*",), ("staff",))  # neither cleared nor in the groups
DANA = Principal("key-dana", "dana", ("*",), ("analysts",))  # in some groups, clearance too low
FRANK = Principal("key-frank", "frank", ("*",), ("finance",))  # cleared to secret, in no group of theirs
EVE = Principal("key-eve", "eve", ("*",), ())  # no group at all: reads nothing
UNCLEARED = (BOB, DANA, FRANK, EVE)

_SYL = [
    "vor",
    "tel",
    "ux",
    "qua",
    "rtz",
    "whal",
    "ke",
    "stri",
    "bel",
    "nox",
    "dra",
    "mir",
    "zan",
    "gul",
    "phe",
    "ryn",
    "oth",
    "cal",
    "vex",
    "lum",
    "tor",
    "quil",
    "sarn",
    "ept",
]
_TOPICS = [
    ("submarine cable", "the cable landing station", "a repair vessel"),
    ("satellite ground station", "the uplink antenna", "a maintenance crew"),
    ("border radar", "the coastal radar mast", "an engineering team"),
    ("supply convoy", "the forward depot", "a logistics unit"),
    ("cyber intrusion", "the ministry mail gateway", "an incident response team"),
    ("drone procurement", "the evaluation range", "a test pilot"),
]
_EVERYDAY = [
    (
        "Canteen and coffee",
        [
            "The canteen opens at half past seven and closes after lunch.",
            "Vegetarian dishes are marked in green on the weekly menu.",
            "Coffee is free before nine; after that the machine takes staff cards.",
        ],
    ),
    (
        "Travel and expenses",
        [
            "Book trains and hotels through the travel portal at least a week ahead.",
            "Receipts are scanned into the expenses tool within thirty days.",
            "Taxis are refunded only after ten in the evening or with heavy luggage.",
        ],
    ),
    (
        "IT helpdesk",
        [
            "Password resets are done at the helpdesk on the ground floor.",
            "Laptops are patched every second Tuesday; leave them on overnight.",
            "Report a lost badge or phone to the helpdesk the same day.",
        ],
    ),
    (
        "Building and facilities",
        [
            "The loading bay is closed on Sundays for cleaning.",
            "Fire drills happen once a quarter and last about twenty minutes.",
            "Bicycles go in the basement racks, not in the corridors.",
        ],
    ),
    (
        "Annual leave",
        [
            "Staff have twenty-eight days of annual leave a year.",
            "Leave requests go to the line manager two weeks in advance.",
            "Unused days carry over up to five days into the next year.",
        ],
    ),
    (
        "Public maintenance notices",
        [
            "Cable landing stations are inspected every spring by contractors.",
            "Coastal radar masts are repainted every six years.",
            "Repair vessels dock at the east quay and report to the harbour master.",
        ],
    ),
    (
        "Procurement rules",
        [
            "Purchases above ten thousand euros need three quotes.",
            "Drone and radar equipment is bought through the central framework.",
            "Suppliers sign the code of conduct before the first order.",
        ],
    ),
    (
        "Logistics handbook",
        [
            "Convoys leave the depot at dawn and keep radio contact every hour.",
            "Fuel is logged at every stop with the vehicle number.",
            "Depots keep spare tyres for every vehicle type in the fleet.",
        ],
    ),
]


@dataclass
class Doc:
    """One generated document: where it goes, its labels, and what identifies it."""

    relpath: str
    title: str
    sentences: list[str]
    classification: str
    groups: list[str]
    restricted: bool
    rare_terms: list[str] = field(default_factory=list)

    @property
    def body(self) -> str:
        paragraphs = [" ".join(self.sentences[i : i + 3]) for i in range(0, len(self.sentences), 3)]
        return "\n\n".join(paragraphs)


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_SYL) for _ in range(n))


def _restricted(rng: random.Random, i: int, used: set[str]) -> Doc:
    while True:
        codename = _word(rng, 3).upper()
        surname = _word(rng, 2).capitalize() + "ski"
        if codename not in used and surname not in used:
            used |= {codename, surname}
            break
    grid = f"{rng.randint(10, 89)}N-{rng.randint(10, 89)}E"
    topic, place, actor = _TOPICS[i % len(_TOPICS)]
    day = rng.randint(1, 28)
    month = rng.choice(["January", "March", "May", "July", "September", "November"])
    title = f"Operation {codename.capitalize()}: {topic} assessment"
    sentences = [
        f"Operation {codename} concerns the {topic} near grid {grid}.",
        f"Colonel {surname} leads {actor} assigned to {place} from {day} {month}.",
        f"The {topic} at grid {grid} is monitored by a hidden sensor package.",
        f"{surname} reports that the sensor package transmits every {rng.randint(2, 9)} hours.",
        f"Access to {place} is through an unmarked gate on the service road.",
        f"If Operation {codename} is exposed, {actor} withdraws within {rng.randint(6, 48)} hours.",
        f"Funding for {codename} comes from a reserve line not shown in the annual budget.",
        f"The next review of Operation {codename} is due on {day} {month} with {surname} present.",
        f"Weather at {place} delayed the last rotation by {rng.randint(1, 5)} days.",
        f"Two vehicles of {actor} were replaced after the winter at grid {grid}.",
        f"Colonel {surname} asked for a second interpreter before the next phase.",
        f"Radio traffic about {codename} uses the evening schedule only.",
        f"Local contractors at {place} have not been told the purpose of the work.",
        f"A cover story describes the {topic} work as routine maintenance.",
        f"Costs of {codename} so far stand at {rng.randint(2, 90)} million euros.",
        f"The liaison officer meets {surname} at the harbour every second week.",
        "Distribution of this report is limited to the named groups.",
    ]
    kinds = [
        ("secret", ["intel"]),
        ("secret", ["intel", "analysts"]),
        ("top-secret", ["intel", "ts"]),
        ("official", ["legal"]),
    ]
    classification, groups = kinds[i % len(kinds)]
    ext = [".md", ".txt", ".html", ".pdf", ".docx", ".md"][i % 6]
    return Doc(
        f"restricted/{classification}-{'-'.join(groups)}/op-{i:02d}{ext}",
        title,
        sentences,
        classification,
        groups,
        True,
        [codename, surname, grid],
    )


def build_docs(n_restricted: int = 24) -> list[Doc]:
    """The corpus: everyday documents for everyone and ``n_restricted`` restricted reports."""
    rng = random.Random(SEED)
    docs: list[Doc] = []
    for j, (title, base) in enumerate(_EVERYDAY):
        sentences = list(base)
        for _ in range(6):
            sentences.append(rng.choice(base).replace(".", f" (section {rng.randint(1, 40)})."))
        ext = [".md", ".txt", ".html", ".pdf", ".docx"][j % 5]
        docs.append(Doc(f"everyday/doc-{j:02d}{ext}", title, sentences, "official", EVERYONE, False))
    used: set[str] = set()
    docs.extend(_restricted(rng, i, used) for i in range(n_restricted))
    return docs


def pdf_bytes(title: str, lines: list[str]) -> bytes:
    """A small valid PDF with a text layer (one line per sentence), written by hand."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 10 Tf", "12 TL", "40 800 Td"]
    for line in [title, *lines]:
        ops.append(f"({esc(line)}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Resources << /Font << /F1 4 0 R >> >>"
        b" /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Title (" + esc(title).encode("latin-1") + b") >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def docx_bytes(title: str, paragraphs: list[str]) -> bytes:
    """A real DOCX written by python-docx."""
    import io

    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.add_heading(title, level=1)
    for p in paragraphs:
        document.add_paragraph(p)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def write_doc(root: Path, doc: Doc) -> Path:
    """Write ``doc`` in the format its extension names."""
    path = root / doc.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".md":
        path.write_text(f"# {doc.title}\n\n{doc.body}\n")
    elif path.suffix == ".txt":
        path.write_text(f"{doc.title}\n\n{doc.body}\n")
    elif path.suffix == ".html":
        paras = "".join(f"<p>{p}</p>\n" for p in doc.body.split("\n\n"))
        path.write_text(
            f"<html><head><title>{doc.title}</title><style>p{{}}</style></head>"
            f"<body><h1>{doc.title}</h1>\n{paras}</body></html>\n"
        )
    elif path.suffix == ".pdf":
        path.write_bytes(pdf_bytes(doc.title, doc.sentences))
    elif path.suffix == ".docx":
        path.write_bytes(docx_bytes(doc.title, doc.body.split("\n\n")))
    return path


def write_corpus(root: Path, docs: list[Doc], *, only_unrestricted: bool = False) -> None:
    """Write the documents and one folder rule per labelled folder."""
    labels: dict[str, tuple[str, list[str]]] = {}
    for doc in docs:
        if only_unrestricted and doc.restricted:
            continue
        write_doc(root, doc)
        labels[str(Path(doc.relpath).parent)] = (doc.classification, doc.groups)
    for folder, (cls, groups) in labels.items():
        quoted = ", ".join(f'"{g}"' for g in groups)
        (root / folder / "folder.meta.toml").write_text(f'classification = "{cls}"\ngroups = [{quoted}]\n')


def config_text(db: Path, audit: bool = False) -> str:
    """A configuration for a test store: its own database, the corpus's group clearances."""
    clearance = ", ".join(f'{g} = "{lvl}"' for g, lvl in CLEARANCE.items())
    return (
        f"[audit]\nenabled = {'true' if audit else 'false'}\n[policy]\nclearance = {{ {clearance} }}\n"
        f'[rag]\npath = "{db}"\n'
    )


@lru_cache(maxsize=1)
def embedder() -> MiniLMEmbedder:
    """The bundled all-MiniLM-L6-v2, loaded once per test process."""
    return MiniLMEmbedder.load(bundled.minilm())
