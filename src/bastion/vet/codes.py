"""Every finding code vet can emit, with what it means. Codes are stable: scripts and policies match them."""

from __future__ import annotations

CODES: dict[str, str] = {
    "STRUCTURE_INVALID": "the file claims a format (magic or name) but its structure is malformed or crafted",
    "FILE_SYMLINK": "a symbolic link in the model folder (not followed); fail with --strict",
    "FILE_UNKNOWN_BINARY": "a binary that is no model format Bastion reads and does not parse as a pickle; "
    "fail with --strict",
    "FILE_BUDGET_EXCEEDED": "reading the file needs more work than the per-artifact bound (opcodes, memo "
    "entries, archive members, decompressed bytes, nesting); reading stopped",
    "PICKLE_DANGEROUS_GLOBAL": "a pickle imports or calls a name that runs code, does I/O or unpickles",
    "PICKLE_UNKNOWN_CALL": "a pickle calls (REDUCE/INST/OBJ) a name outside the tensor-checkpoint allowlist",
    "PICKLE_UNKNOWN_GLOBAL": "a pickle imports or constructs a name off the allowlist (fail: "
    "map/filter/partial and other higher-order calls can run any referenced name)",
    "PICKLE_MALFORMED": "a pickle stream cannot be fully parsed (truncated, unknown opcode, trailing data)",
    "PICKLE_UNRESOLVED_GLOBAL": "STACK_GLOBAL takes its module or name from a value computed at load time",
    "PICKLE_UNRESOLVED_CALL": "a pickle calls a value computed at load time, not an imported name",
    "PICKLE_EXTENSION_CODE": "EXT1/EXT2/EXT4 import through copyreg's registry, unresolvable statically",
    "PICKLE_ATTRIBUTE_OVERWRITE": "BUILD sets attributes on an imported name (ShadowPickle-style overwrite)",
    "PICKLE_FORMAT": "info: pickle-based weights; every import was checked, safetensors is preferable",
    "TEMPLATE_UNPARSEABLE": "a chat template Jinja cannot parse",
    "TEMPLATE_DUNDER_ACCESS": "a chat template reads dunder/private/reflective attributes (SSTI path)",
    "TEMPLATE_COMPUTED_ACCESS": "a chat template looks up an attribute, item, filter or test by a name "
    "computed at render time (only numeric subscripts may be computed)",
    "TEMPLATE_UNKNOWN_FILTER": "a chat template uses a filter or test that is not one of Jinja's built-ins",
    "TEMPLATE_GADGET": "a chat template reaches into cycler/joiner/namespace/lipsum/self (sandbox escape)",
    "TEMPLATE_IMPORT": "a chat template uses import, from-import, include or extends",
    "TEMPLATE_CONTENT_GATED": "a branch keyed on a trigger word in message content writes a system/role turn",
    "TEMPLATE_HIDDEN_INSTRUCTION": "template text injects an instruction ('ignore previous instructions')",
    "TEMPLATE_LINK": "template text inserts a URL into the conversation",
    "TEMPLATE_INVISIBLE_UNICODE": "bidi or tag characters (fail), zero-width characters (warn) in a template",
    "TOKEN_INVISIBLE_UNICODE": "invisible or bidi characters in a special token",
    "REMOTE_CODE_AUTO_MAP": "auto_map: loaders import custom code with trust_remote_code; fail with --strict",
    "REMOTE_CODE_FILES": "the folder ships Python files a loader may run; fail with --strict",
}
