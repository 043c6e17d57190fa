"""Chat-template scanner: parse with Jinja's own parser, walk the syntax tree, never render.

Rendering a hostile template is the bug (CVE-2024-34359 in llama-cpp-python, CVE-2026-5760 in SGLang),
so the template is only lexed and parsed (``Environment.parse``) into ``jinja2.nodes``. What the template
can reach is decided in ``bastion.vet.template_reach`` (every lookup key a constant from an allow-list,
computed subscripts only for numbers, built-in filters and tests only). This walk adds: the default
globals that are gadget entry points (``cycler``, ``joiner``, ``namespace``, ``lipsum``, ``self``) when
their attributes are touched, ``import``/``include``/``extends``, content-gated branches (a test on a
message's content against a literal whose branch rewrites the system turn), dunder names held in
strings, injected instructions and links in literal text, and invisible/bidi Unicode in the source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from jinja2 import Environment, nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.ext import Extension
from jinja2.parser import Parser

from bastion.vet.findings import Finding, Severity
from bastion.vet.template_reach import reach
from bastion.vet.unicode_scan import scan_text

GADGETS = {"cycler", "joiner", "namespace", "lipsum", "self", "range", "dict", "config", "request"}
#: Globals with no use in a chat template at all.
UNUSED_GLOBALS = {
    "cycler",
    "joiner",
    "lipsum",
    "self",
    "config",
    "request",
    "url_for",
    "get_flashed_messages",
}
ROLE_MARKERS = re.compile(
    r"system|<<SYS>>|\[INST\]|<\|im_start\|>|<start_of_turn>|<\|start_header_id\|>", re.I
)
INJECTION = re.compile(
    r"ignore (all |any )?(previous|prior|above) (instructions|messages)"
    r"|disregard (the |all )?(previous|prior|above)"
    r"|do not (tell|reveal|mention) (the user|anyone)"
    r"|you must (always )?(recommend|include|insert)",
    re.I,
)
DUNDER = re.compile(r"__[A-Za-z]\w*__")
URL = re.compile(r"https?://[^\s'\"<>}]+", re.I)


class _GenerationTag(Extension):
    """transformers' ``{% generation %}...{% endgeneration %}`` block, parsed as a plain body."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _environment() -> Environment:
    # Only used for env.parse(): no loader (include/import could not resolve anyway) and no rendering.
    return Environment(extensions=["jinja2.ext.loopcontrols", _GenerationTag], autoescape=False)  # noqa: S701


_ENV = _environment()


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _mentions_content(node: nodes.Node) -> bool:
    for n in _walk(node):
        if isinstance(n, nodes.Getattr) and n.attr == "content":
            return True
        if isinstance(n, nodes.Getitem) and isinstance(n.arg, nodes.Const) and n.arg.value == "content":
            return True
        if isinstance(n, nodes.Name) and n.name == "content":
            return True
    return False


def _literal_trigger(test: nodes.Node) -> str | None:
    """The string literal a condition compares message content against, if any."""
    for n in _walk(test):
        if isinstance(n, nodes.Compare) and _mentions_content(n):
            for part in [n.expr, *(o.expr for o in n.ops)]:
                if isinstance(part, nodes.Const) and isinstance(part.value, str) and part.value.strip():
                    return part.value
        if (
            isinstance(n, nodes.Call)
            and isinstance(n.node, nodes.Getattr)
            and n.node.attr in ("startswith", "endswith", "find", "count", "__contains__")
            and _mentions_content(n.node.node)
        ):
            for a in n.args:
                if isinstance(a, nodes.Const) and isinstance(a.value, str):
                    return a.value
    return None


def _emitted_text(body: list[nodes.Node]) -> str:
    out: list[str] = []
    for stmt in body:
        for n in _walk(stmt):
            if isinstance(n, nodes.TemplateData):
                out.append(n.data)
            elif isinstance(n, nodes.Const) and isinstance(n.value, str):
                out.append(n.value)
    return " ".join(out)


def scan_template(source: str, file: str, where: str) -> list[Finding]:
    """Findings for one chat template ``source`` found in ``file`` at ``where`` (e.g. a metadata key)."""
    out = scan_text(source, file, where, "TEMPLATE_INVISIBLE_UNICODE")

    def add(code: str, sev: Severity, lineno: int, msg: str) -> None:
        out.append(Finding(code, sev, file, f"{where} line {lineno}", msg))

    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        add(
            "TEMPLATE_UNPARSEABLE",
            Severity.FAIL,
            exc.lineno or 0,
            f"chat template does not parse ({exc.message}); other loaders' parsers may read it differently",
        )
        return out
    except RecursionError:
        add("TEMPLATE_UNPARSEABLE", Severity.FAIL, 0, "chat template nests too deeply to parse")
        return out
    for issue in reach(tree):
        add(issue.code, Severity.FAIL, issue.lineno, issue.message)
    for n in _walk(tree):
        line = getattr(n, "lineno", 0) or 0
        if isinstance(n, nodes.Getattr | nodes.Getitem):
            base = n.node
            if isinstance(base, nodes.Name) and base.name in GADGETS:
                add(
                    "TEMPLATE_GADGET",
                    Severity.FAIL,
                    line,
                    f"template reaches into the Jinja global {base.name!r}, a sandbox-escape entry point",
                )
        elif isinstance(n, nodes.Name) and n.name in UNUSED_GLOBALS and n.ctx == "load":
            add(
                "TEMPLATE_GADGET",
                Severity.WARN,
                line,
                f"template uses the Jinja global {n.name!r}, which no chat template needs",
            )
        elif isinstance(n, nodes.Import | nodes.FromImport | nodes.Include | nodes.Extends):
            kind = type(n).__name__.lower()
            add(
                "TEMPLATE_IMPORT",
                Severity.FAIL,
                line,
                f"template uses {kind!r}: a chat template must be self-contained, this loads other files",
            )
        elif isinstance(n, nodes.If):
            trigger = _literal_trigger(n.test)
            if trigger is not None:
                emitted = _emitted_text(n.body) + " " + _emitted_text(n.else_)
                if ROLE_MARKERS.search(emitted):
                    add(
                        "TEMPLATE_CONTENT_GATED",
                        Severity.FAIL,
                        line,
                        f"a branch fires when message content matches {trigger!r} and then writes a "
                        f"system/role turn: a behavioural backdoor that changes the prompt on a trigger word",
                    )
        elif isinstance(n, nodes.TemplateData | nodes.Const) and isinstance(
            n.data if isinstance(n, nodes.TemplateData) else n.value, str
        ):
            text = n.data if isinstance(n, nodes.TemplateData) else str(n.value)
            dunder = DUNDER.search(text) if isinstance(n, nodes.Const) else None
            if dunder:
                add(
                    "TEMPLATE_DUNDER_ACCESS",
                    Severity.FAIL,
                    line,
                    f"template holds the dunder name {dunder.group(0)!r} in a string (for a later lookup)",
                )
            hit = INJECTION.search(text)
            if hit:
                add(
                    "TEMPLATE_HIDDEN_INSTRUCTION",
                    Severity.FAIL,
                    line,
                    f"template text injects an instruction: {hit.group(0)!r}",
                )
            m = URL.search(text)
            if m:
                add("TEMPLATE_LINK", Severity.WARN, line, f"template text inserts a link {m.group(0)!r}")
    return _dedupe(out)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for f in findings:
        key = (f.code, f.location, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
