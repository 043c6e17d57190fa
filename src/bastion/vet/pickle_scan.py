"""Allowlist-first policy for the names a pickle imports and calls.

Only what a plain tensor checkpoint needs passes: torch's tensor/parameter rebuild helpers and storage
classes, ``collections.OrderedDict``, numpy array and dtype reconstruction, and a handful of inert
builtins. Every other imported name is ``fail``, whether the pickle calls it or only references it:
a referenced name is one step from a call, because higher-order callables (``builtins.map``/``filter``/
``sorted``/``iter``, ``functools.partial``/``reduce``, ``itertools.starmap``, ``operator.methodcaller``
...) call whatever they are handed, and an allowlisted ``list(...)`` that consumes a ``map`` runs it.
``map(pydoc.pipepager, ...)`` built with NEWOBJ once passed as a mere warning. Names known to run code,
touch files or the network, unpickle, or call their arguments get the ``PICKLE_DANGEROUS_GLOBAL`` code
so a reviewer sees why; the verdict is the same.

Why the allowlist itself is closed: with every import checked, the only callables a stream can reach
are allowlisted names and values that allowlisted calls return, and none of those returns a callable
(the rebuild helpers return tensors, storages, arrays, dtypes and containers). Calling anything else
(``REDUCE`` on a computed value) is reported by the reader as an unresolved call.
"""

from __future__ import annotations

from bastion.formats.pickle_ops import GlobalRef, PickleAnalysis
from bastion.vet.findings import Finding, Severity

_TORCH_REBUILD = {
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_nested_tensor",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_wrapper_subclass",
}
_TORCH_STORAGES = {
    f"{t}Storage"
    for t in (
        "Float",
        "Double",
        "Half",
        "BFloat16",
        "Long",
        "Int",
        "Short",
        "Char",
        "Byte",
        "Bool",
        "ComplexFloat",
        "ComplexDouble",
        "QInt8",
        "QUInt8",
        "QInt32",
        "QUInt4x2",
        "QUInt2x4",
    )
}
_TORCH_DTYPES = {
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "complex64",
    "complex128",
    "float8_e4m3fn",
    "float8_e5m2",
}

#: (module, name) pairs a tensor checkpoint legitimately imports.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {("torch._utils", n) for n in _TORCH_REBUILD}
    | {("torch", n) for n in _TORCH_STORAGES | _TORCH_DTYPES | {"Size", "device", "Tensor"}}
    | {
        ("torch.storage", "UntypedStorage"),
        ("torch.storage", "TypedStorage"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch.nn.parameter", "Parameter"),
        ("collections", "OrderedDict"),
        ("copyreg", "_reconstructor"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.dtypes", "Float32DType"),
        ("numpy.dtypes", "Float64DType"),
        ("numpy.dtypes", "Int64DType"),
        ("_codecs", "encode"),  # numpy bytes under protocol 2: encode(str, 'latin1'), inert
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("builtins", "int"),
        ("builtins", "float"),
        ("builtins", "bool"),
        ("builtins", "str"),
        ("builtins", "bytes"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "range"),
    }
)

#: Modules whose every name is dangerous: process, code, import, file, network and unpickling gadgets.
DANGEROUS_MODULES = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "importlib",
    "runpy",
    "pip",
    "pty",
    "socket",
    "webbrowser",
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "cloudpickle",
    "joblib",
    "marshal",
    "shutil",
    "ctypes",
    "code",
    "codeop",
    "asyncio",
    "multiprocessing",
    "bdb",
    "pdb",
    "pkgutil",
    "inspect",
    "types",
    "operator",
    "functools",
    "itertools",
    "copyreg",
    "atexit",
    "contextlib",
    "concurrent",
    "sched",
    "codecs",
    "ftplib",
    "http",
    "urllib",
    "requests",
    "httpx",
    "smtplib",
    "telnetlib",
    "tempfile",
    "timeit",
    "trace",
    "cProfile",
    "profile",
    "doctest",
    "idlelib",
    "lib2to3",
    "venv",
    "ensurepip",
    "distutils",
    "setuptools",
    "platform",
    "uuid",
    "_io",
    "io",
    "glob",
    "zipimport",
    "signal",
    "threading",
    "_thread",
    "gc",
    "weakref",
    "site",
    "sysconfig",
    "shelve",
    "dbm",
    "sqlite3",
    "xmlrpc",
    "logging",
    "torch.hub",
    "torch.utils.collect_env",
    "torch.jit",
    "torch.serialization",
    "torch.load",
    "torch._dynamo",
    "torch.fx",
    "torch.package",
    "torch.ops",
    "torch.library",
    "numpy.testing",
    "numpy.load",
    "numpy.f2py",
    "numpy.distutils",
    "mlflow",
    "yaml",
    "IPython",
    "keras",
    "tensorflow",
    "pandas.io",
    "nt",
    "_posixsubprocess",
    "_osx_support",
    "_aix_support",
)
#: Builtins that evaluate, import, reflect or touch files.
DANGEROUS_BUILTINS = {
    "eval",
    "exec",
    "compile",
    "getattr",
    "setattr",
    "delattr",
    "__import__",
    "open",
    "globals",
    "locals",
    "vars",
    "breakpoint",
    "input",
    "help",
    "memoryview",
    "type",
    "super",
    "classmethod",
    "staticmethod",
    "property",
    "print",
    "exit",
    "quit",
    "apply",
    "execfile",
    "file",
    "reload",
}


#: Builtins that call the callables they are given: a referenced global plus one of these is a call.
HIGHER_ORDER_BUILTINS = {"map", "filter", "sorted", "min", "max", "iter", "next", "reduce"}


def classify(module: str, name: str) -> tuple[str, str]:
    """``("allowed" | "dangerous" | "unknown", reason)`` for an imported ``module.name``."""
    if (module, name) in ALLOWED:
        return "allowed", "on the tensor-checkpoint allowlist"
    if module == "builtins" and name in HIGHER_ORDER_BUILTINS:
        return "dangerous", (
            f"builtins.{name} is higher-order: it calls the callables it is handed, so any name the "
            f"pickle references can be run through it"
        )
    if "__" in name or "__" in module:
        return "dangerous", "dunder in the imported name reaches interpreter internals"
    if "." in name:
        # find_class walks dotted names attribute by attribute (protocol 4+): "torch._utils" +
        # "os.system" would resolve to os.system through a module attribute, whatever the module.
        return "dangerous", "a dotted name walks attributes to any object reachable from the module"
    if module == "builtins":
        if name in DANGEROUS_BUILTINS:
            return "dangerous", f"builtins.{name} evaluates, imports or reflects"
        return "unknown", "builtin outside the allowlist"
    parts = module.split(".")
    for i in range(1, len(parts) + 1):  # the module itself or any package above it
        m = ".".join(parts[:i])
        if m in _DANGEROUS_SET:
            return "dangerous", f"module {m} can run code, touch files or the network, or unpickle"
    return "unknown", "not on the tensor-checkpoint allowlist"


_DANGEROUS_SET = frozenset(DANGEROUS_MODULES)


def scan_pickle(analysis: PickleAnalysis, file: str, strict: bool, where: str = "") -> list[Finding]:
    """Findings for one analysed pickle stream (``where`` names an archive member, if any).

    ``strict`` is kept for symmetry with the other scanners: every finding here already fails.
    """
    out: list[Finding] = []
    prefix = f"{where}:" if where else ""
    # One finding per imported name: the call site if the name is called, else where it is imported.
    chosen: dict[str, GlobalRef] = {}
    for g in analysis.globals:
        prev = chosen.get(g.qualname)
        if prev is None or (g.called and not prev.called):
            chosen[g.qualname] = g
    for g in chosen.values():
        kind, reason = classify(g.module, g.name)
        loc = f"{prefix}byte {g.offset} ({g.opcode})"
        if kind == "dangerous":
            verb = "calls" if g.called else "imports"
            out.append(
                Finding(
                    "PICKLE_DANGEROUS_GLOBAL",
                    Severity.FAIL,
                    file,
                    loc,
                    f"loading this pickle {verb} {g.qualname}: {reason}",
                )
            )
        elif kind == "unknown":
            if g.called and g.opcode in ("REDUCE", "INST", "OBJ"):
                out.append(
                    Finding(
                        "PICKLE_UNKNOWN_CALL",
                        Severity.FAIL,
                        file,
                        loc,
                        f"loading this pickle calls {g.qualname}, which is {reason}",
                    )
                )
            else:
                out.append(
                    Finding(
                        "PICKLE_UNKNOWN_GLOBAL",
                        Severity.FAIL,
                        file,
                        loc,
                        f"this pickle imports {g.qualname}, which is {reason}: a referenced name can be "
                        f"called through a higher-order call (map, filter, sorted, partial ...)",
                    )
                )
    messages = {
        "malformed": (
            "PICKLE_MALFORMED",
            "the pickle stream cannot be fully parsed ({d}); a loader "
            "executes opcodes in order before it notices, so an unreadable stream is not safe",
        ),
        "unresolved_global": (
            "PICKLE_UNRESOLVED_GLOBAL",
            "{d}: the imported name is only known at load time",
        ),
        "unresolved_call": ("PICKLE_UNRESOLVED_CALL", "{d}"),
        "extension_code": ("PICKLE_EXTENSION_CODE", "{d}, which cannot be resolved statically"),
        "build_on_global": ("PICKLE_ATTRIBUTE_OVERWRITE", "{d}: this can overwrite an allowlisted name"),
        "budget": ("FILE_BUDGET_EXCEEDED", "{d}; reading stopped there, so the rest was not checked"),
    }
    for a in analysis.anomalies:
        code, template = messages.get(a.kind, ("PICKLE_MALFORMED", "{d}"))
        out.append(
            Finding(code, Severity.FAIL, file, f"{prefix}byte {a.offset}", template.format(d=a.detail))
        )
    return _capped(out)


#: Findings kept per code for one stream: a crafted stream can hold 100,000 distinct names or calls.
MAX_PER_CODE = 50


def _capped(findings: list[Finding]) -> list[Finding]:
    kept: list[Finding] = []
    counts: dict[str, int] = {}
    extra: dict[str, list[Finding]] = {}
    for f in findings:
        counts[f.code] = counts.get(f.code, 0) + 1
        if counts[f.code] <= MAX_PER_CODE:
            kept.append(f)
        else:
            extra.setdefault(f.code, []).append(f)
    for code, more in extra.items():
        first = more[0]
        kept.append(
            Finding(
                code, first.severity, first.file, first.location, f"and {len(more)} more findings like these"
            )
        )
    return kept
