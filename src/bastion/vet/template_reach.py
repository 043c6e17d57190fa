"""What a chat template can reach: every name it looks up must be a constant from an allow-list.

Template injection climbs from an ordinary value to Python internals by attribute and item lookups
(``x.__class__``, ``gen.gi_frame.f_builtins``), by filters that look names up (``attr``,
``map(attribute=...)``, ``selectattr``) and by ``str.format``. Spotting dunder text is not enough:
``n[d ~ "init" ~ d]`` builds the name at render time, and ``(x|map('upper')).gi_frame.f_builtins.eval``
needs no underscore at all. So the decision is by reach, over Jinja's own syntax tree, never rendering:

- a lookup key (``x.key``, ``x['key']``, an ``attribute=`` path, an ``attr`` filter argument) must be a
  constant that names no reflective member: a key that is an attribute of no object a template can hold
  (``role``, ``content``, ``tool_calls``) only ever reads the data passed in, and of the member names
  Python and Jinja objects do have (``items``, ``strip``, ``loop.index0``, ``gi_frame``, ``format``) only
  a small allow-list of inert ones passes;
- a subscript may be computed only if it is a number (``messages[loop.index0 - 1]``, ``messages[::-1]``);
- a filter or test, and the filter or test a ``map``/``select``/``reject`` call names, must be a
  constant from Jinja's built-in set, less ``attr`` with anything but an allowed constant key.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass

import jinja2
import jinja2.filters
import jinja2.runtime
import jinja2.tests
import jinja2.utils
import markupsafe
from jinja2 import nodes

#: Members of Python and Jinja objects that a template may use: string, list and dict methods that only
#: return data, and the loop, cycler, joiner, macro and range attributes.
SAFE_MEMBERS = frozenset(
    {
        *"strip lstrip rstrip split rsplit splitlines startswith endswith upper lower title".split(),
        *"capitalize".split(),
        *"casefold swapcase replace find rfind index rindex count join center ljust rjust zfill".split(),
        *"partition rpartition removeprefix removesuffix expandtabs encode decode escape unescape".split(),
        *"striptags isalnum isalpha isascii isdecimal isdigit isidentifier islower isnumeric".split(),
        *"isprintable isspace istitle isupper".split(),
        *"items keys values get copy pop popitem append extend insert remove reverse sort update".split(),
        *"setdefault clear".split(),
        *"index0 revindex revindex0 first last length depth depth0 previtem nextitem cycle changed".split(),
        *"next current reset name arguments caller catch_kwargs catch_varargs start stop step".split(),
        *"real imag numerator denominator pos sep used".split(),
    }
)
LOOP_NUMBERS = frozenset({"index", "index0", "revindex", "revindex0", "length", "depth", "depth0"})
NUMERIC_FILTERS = frozenset({"length", "count", "int", "float", "abs", "round", "wordcount"})
FILTERS = frozenset(jinja2.filters.FILTERS)
TESTS = frozenset(jinja2.tests.TESTS)
#: Filters whose keyword ``attribute`` (or first positional argument) is a lookup path.
ATTRIBUTE_FILTERS = frozenset(
    {"map", "sort", "unique", "sum", "min", "max", "groupby", "selectattr", "rejectattr"}
)
#: Filters whose first positional argument is a lookup path.
POSITIONAL_ATTRIBUTE = frozenset({"selectattr", "rejectattr", "groupby"})


def _gen() -> Iterator[int]:
    yield 0


def _reachable_members() -> frozenset[str]:
    """Public member names of every kind of object a template can hold or produce."""
    kinds: list[object] = [
        types.GeneratorType,
        types.FrameType,
        types.CodeType,
        types.TracebackType,
        types.CoroutineType,
        types.AsyncGeneratorType,
        types.FunctionType,
        types.BuiltinFunctionType,
        types.MethodType,
        types.ModuleType,
        types.MappingProxyType,
        types.SimpleNamespace,
        type,
        object,
        str,
        bytes,
        bytearray,
        dict,
        list,
        tuple,
        set,
        frozenset,
        int,
        float,
        complex,
        bool,
        range,
        slice,
        BaseException,
        markupsafe.Markup,
        jinja2.Environment,
        jinja2.Template,
        jinja2.runtime.Context,
        jinja2.runtime.LoopContext,
        jinja2.runtime.Macro,
        jinja2.runtime.Undefined,
        jinja2.runtime.TemplateReference,
        jinja2.utils.Cycler,
        jinja2.utils.Joiner,
        jinja2.utils.Namespace,
        _gen(),
    ]
    # instance attributes that dir() of a class does not list (Environment.globals, Context.parent ...)
    env = jinja2.Environment(autoescape=True)  # only inspected, never renders a chat template
    template = env.from_string("")
    kinds += [env, template, template.new_context(), jinja2.utils.Cycler(1), jinja2.utils.Joiner()]
    return frozenset(n for k in kinds for n in dir(k) if not n.startswith("_"))


REFLECTIVE_MEMBERS = _reachable_members() - SAFE_MEMBERS


def key_problem(key: object) -> str | None:
    """Why a constant lookup key is refused, or None if it only reads data or an inert member."""
    if isinstance(key, int) and not isinstance(key, bool):
        return None
    if not isinstance(key, str):
        return f"a {type(key).__name__} lookup key"
    if key.startswith("_"):
        return f"{key!r} is private or a dunder"
    if key in REFLECTIVE_MEMBERS:
        return f"{key!r} is a member of Python or Jinja objects that reaches code, frames or formatting"
    return None


@dataclass(frozen=True)
class Issue:
    """One thing the template can reach that it should not."""

    code: str  # TEMPLATE_DUNDER_ACCESS | TEMPLATE_COMPUTED_ACCESS | TEMPLATE_UNKNOWN_FILTER
    lineno: int
    message: str


class _Bindings:
    """Where each variable and namespace attribute is assigned, to decide whether it is a number."""

    def __init__(self, tree: nodes.Template) -> None:
        self.values: dict[str, list[nodes.Node | None]] = {}
        self.namespaces: set[str] = set()
        for n in tree.find_all((nodes.Assign, nodes.AssignBlock, nodes.For, nodes.Macro, nodes.With)):
            if isinstance(n, nodes.Assign):
                self._target(n.target, n.node)
                if isinstance(n.target, nodes.Name) and _is_namespace_call(n.node):
                    assert isinstance(n.node, nodes.Call)
                    self.namespaces.add(n.target.name)
                    for kw in n.node.kwargs:
                        self.values.setdefault(f"{n.target.name}.{kw.key}", []).append(kw.value)
            elif isinstance(n, nodes.For):
                ranged = isinstance(n.iter, nodes.Call) and _is_name(n.iter.node, "range")
                self._target(n.target, nodes.Const(0) if ranged else None)
            elif isinstance(n, nodes.AssignBlock):
                self._target(n.target, None)
            elif isinstance(n, nodes.With):
                for t, v in zip(n.targets, n.values, strict=False):
                    self._target(t, v)
            elif isinstance(n, nodes.Macro):
                for a in n.args:
                    self._target(a, None)

    def _target(self, target: nodes.Node, value: nodes.Node | None) -> None:
        if isinstance(target, nodes.Name):
            self.values.setdefault(target.name, []).append(value)
        elif isinstance(target, nodes.NSRef):
            self.values.setdefault(f"{target.name}.{target.attr}", []).append(value)
        elif isinstance(target, nodes.Tuple):
            for item in target.items:
                self._target(item, None)

    def numeric(self, node: nodes.Node, seen: frozenset[str] = frozenset()) -> bool:
        """True when ``node`` always evaluates to a number (int or float)."""
        if isinstance(node, nodes.Const):
            return isinstance(node.value, int | float)
        if isinstance(node, nodes.Neg | nodes.Pos):
            return self.numeric(node.node, seen)
        if isinstance(
            node, nodes.Add | nodes.Sub | nodes.Mul | nodes.Div | nodes.FloorDiv | nodes.Mod | nodes.Pow
        ):
            return self.numeric(node.left, seen) and self.numeric(node.right, seen)
        if isinstance(node, nodes.CondExpr):
            return (
                node.expr2 is not None and self.numeric(node.expr1, seen) and self.numeric(node.expr2, seen)
            )
        if isinstance(node, nodes.Filter):
            return node.name in NUMERIC_FILTERS
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
            base = node.node.name
            if base == "loop" and base not in self.values:
                return node.attr in LOOP_NUMBERS
            if base in self.namespaces:
                return self._all_numeric(f"{base}.{node.attr}", seen)
            return False
        if isinstance(node, nodes.Name):
            return self._all_numeric(node.name, seen)
        return False

    def _all_numeric(self, key: str, seen: frozenset[str]) -> bool:
        values = self.values.get(key)
        if not values or key in seen:
            return False
        return all(v is not None and self.numeric(v, seen | {key}) for v in values)


def _is_name(node: nodes.Node, name: str) -> bool:
    return isinstance(node, nodes.Name) and node.name == name


def _is_namespace_call(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Call) and _is_name(node.node, "namespace")


def _const_str(node: nodes.Node) -> str | None:
    return node.value if isinstance(node, nodes.Const) and isinstance(node.value, str) else None


def reach(tree: nodes.Template) -> list[Issue]:
    """Every lookup, filter and test in ``tree`` that reaches past the allow-list."""
    return _Reach(tree).issues


class _Reach:
    def __init__(self, tree: nodes.Template) -> None:
        self.bindings = _Bindings(tree)
        self.issues: list[Issue] = []
        for n in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Test)):
            line = n.lineno or 0
            if isinstance(n, nodes.Getattr):
                self._getattr(n, line)
            elif isinstance(n, nodes.Getitem):
                self._getitem(n, line)
            elif isinstance(n, nodes.Test):
                if n.name not in TESTS:
                    self._add(
                        "TEMPLATE_UNKNOWN_FILTER",
                        line,
                        f"template uses the test {n.name!r}, not a built-in one",
                    )
            elif isinstance(n, nodes.Filter):
                self._filter(n, line)

    def _add(self, code: str, line: int, message: str) -> None:
        self.issues.append(Issue(code, line, message))

    def _key(self, k: object, line: int, how: str) -> None:
        problem = key_problem(k)
        if problem:
            self._add("TEMPLATE_DUNDER_ACCESS", line, f"template {how}: {problem}")

    def _getattr(self, n: nodes.Getattr, line: int) -> None:
        # A namespace() object only holds the template's own values: any public name reads one of them.
        if isinstance(n.node, nodes.Name) and n.node.name in self.bindings.namespaces:
            if n.attr.startswith("_"):
                self._key(n.attr, line, f"reads namespace attribute {n.attr!r}")
            return
        self._key(n.attr, line, f"reads attribute {n.attr!r}")

    def _getitem(self, n: nodes.Getitem, line: int) -> None:
        if isinstance(n.arg, nodes.Const):
            self._key(n.arg.value, line, f"subscripts with {n.arg.value!r}")
        elif isinstance(n.arg, nodes.Slice):
            parts = [p for p in (n.arg.start, n.arg.stop, n.arg.step) if p is not None]
            if not all(self.bindings.numeric(p) for p in parts):
                self._add(
                    "TEMPLATE_COMPUTED_ACCESS",
                    line,
                    "template slices with computed values that are not numbers",
                )
        elif not self.bindings.numeric(n.arg):
            self._add(
                "TEMPLATE_COMPUTED_ACCESS",
                line,
                "template subscripts with a key computed at render time (only numbers may be computed): "
                "how a dunder name is assembled past a scanner",
            )

    def _path(self, arg: nodes.Node, line: int, how: str) -> None:
        text = _const_str(arg)
        if text is None:
            self._add(
                "TEMPLATE_COMPUTED_ACCESS", line, f"{how} takes an attribute path computed at render time"
            )
            return
        for part in text.split("."):
            self._key(int(part) if part.isdigit() else part, line, f"{how} reads {text!r}")

    def _named(self, arg: nodes.Node, allowed: frozenset[str], line: int, how: str, kind: str) -> str | None:
        text = _const_str(arg)
        if text is None:
            self._add("TEMPLATE_COMPUTED_ACCESS", line, f"{how} takes a {kind} name computed at render time")
        elif text not in allowed:
            self._add("TEMPLATE_UNKNOWN_FILTER", line, f"{how} names the {kind} {text!r}, not a built-in one")
        return text

    def _filter(self, n: nodes.Filter, line: int) -> None:
        name = n.name
        if name not in FILTERS:
            self._add(
                "TEMPLATE_UNKNOWN_FILTER", line, f"template uses the filter {name!r}, not a built-in one"
            )
            return
        # the parser makes Keyword nodes (typed as Pair in jinja2.nodes)
        kwargs: dict[str, nodes.Expr] = {str(getattr(kw, "key", "")): kw.value for kw in n.kwargs}
        if n.dyn_args is not None or n.dyn_kwargs is not None:
            self._add("TEMPLATE_COMPUTED_ACCESS", line, f"the {name!r} filter takes *args or **kwargs")
        if "attribute" in kwargs and name in ATTRIBUTE_FILTERS:
            self._path(kwargs["attribute"], line, f"the {name!r} filter")
        if name == "attr":
            if n.args:
                self._path(n.args[0], line, "the 'attr' filter")
            else:
                self._add("TEMPLATE_COMPUTED_ACCESS", line, "the 'attr' filter without a constant name")
        elif name in POSITIONAL_ATTRIBUTE and n.args:
            self._path(n.args[0], line, f"the {name!r} filter")
            if name != "groupby" and len(n.args) > 1:
                self._named(n.args[1], TESTS, line, f"the {name!r} filter", "test")
        elif name == "map" and n.args and "attribute" not in kwargs:
            inner = self._named(n.args[0], FILTERS, line, "the 'map' filter", "filter")
            if inner == "attr":
                if len(n.args) > 1:
                    self._path(n.args[1], line, "map('attr')")
                else:
                    self._add("TEMPLATE_COMPUTED_ACCESS", line, "map('attr') without a constant name")
        elif name in ("select", "reject") and n.args:
            self._named(n.args[0], TESTS, line, f"the {name!r} filter", "test")
