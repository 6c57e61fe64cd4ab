"""Reading a policy file: YAML text in, a validated `PolicyDocument` or a `PolicyInvalid` out.

Why the extra work over ``yaml.safe_load`` + ``model_validate``: the people who edit policy files are
compliance staff, not programmers. Every problem is reported at once, each as a dotted location
(``purposes.training.roles[1]``) with the YAML line it is on, in words rather than pydantic codes;
duplicate keys are refused (YAML would silently keep the last one, i.e. ignore a rule); and no
input, however broken, ends in a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from callvault.core.errors import FieldProblem, PolicyInvalid
from callvault.policy.schema import PolicyDocument, canonical_sha256

__all__ = ["format_location", "load_policy_file", "parse_policy_text", "policy_sha256", "policy_to_json"]

_PATTERN_HINTS = {
    r"^[a-z][a-z0-9_]*$": (
        "must be an id of lower-case letters, digits and _ starting with a letter (e.g. support_lead)"
    ),
    r"^[a-z][a-z0-9_]*(-[a-z0-9_]+)*$": (
        "must be a slug of lower-case letters, digits, _ and - (e.g. smartsimple-support)"
    ),
    r"^[A-Z]{1,3}[0-9]{1,3}[a-z]?$": "must be a requirement id such as A6 or B9",
    r"^[A-Z0-9][A-Z0-9-]{0,31}$": "must be an upper-case region id such as AU-NZ",
    r"^[A-Z0-9]{1,3}$": "must be an upper-case subdivision code such as ON or NSW",
}


def format_location(loc: tuple[str | int, ...]) -> str:
    """``("purposes", "training", "roles", 1)`` → ``purposes.training.roles[1]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: ErrorDetails) -> str:
    """A sentence for a person, not a pydantic error code."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key: not part of the policy schema (check the spelling and indentation)"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"].removeprefix("Value error, ")))
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(str(ctx.get("pattern", "")))
        return f"{err['input']!r} {hint}" if hint else err["msg"]
    if kind == "string_type":
        value = err["input"]
        if isinstance(value, bool):
            # YAML 1.1 reads yes/no/on/off (Norway's "NO", Ontario's "ON") as booleans.
            return f"must be text, but YAML read it as {str(value).lower()}; put the value in quotes"
        if isinstance(value, int | float):
            return f"must be text, got the number {value!r}; put it in quotes (e.g. \"{value}\")"
        return f"must be text, got {value!r}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "policy_reference":
        return err["msg"]
    return err["msg"]


def _key_error(err: ErrorDetails) -> bool:
    return "[key]" in err["loc"]


# ------------------------------------------------------------------------------- YAML node helpers
def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, yaml.Node | None]:
    """(key node, value node) of ``part`` under ``node``; Nones where the path does not exist in the text."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item: yaml.Node = node.value[part]
        return item, item
    return None, None


def _line_for(root: yaml.Node | None, loc: tuple[str | int, ...], *, at_key: bool) -> int | None:
    """Line (1-based) of the deepest part of ``loc`` present in the YAML.

    ``at_key``: point at the key itself (an unknown or badly spelt key) rather than its value.
    A missing key is reported on the line of the mapping that should contain it.
    """
    if root is None:
        return None
    node: yaml.Node = root
    line = root.start_mark.line + 1
    for part in (p for p in loc if p != "[key]"):
        key, value = _child(node, part)
        if key is None or value is None:
            break
        line = (key if at_key else value).start_mark.line + 1
        node = value
    return line


def _duplicate_keys(node: yaml.Node, path: tuple[str | int, ...] = ()) -> list[FieldProblem]:
    """YAML keeps the last of two equal keys without a word; for a policy that means a rule vanishes."""
    problems: list[FieldProblem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            if name in seen:
                problems.append(FieldProblem(
                    format_location((*path, name)), "key appears more than once; keep only one",
                    key.start_mark.line + 1,
                ))
            seen.add(name)
            problems.extend(_duplicate_keys(value, (*path, name)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems.extend(_duplicate_keys(item, (*path, i)))
    return problems


# ----------------------------------------------------------------------------------------- parsing
def parse_policy_text(text: str, *, source: str = "<policy>") -> PolicyDocument:
    """Validate a policy given as YAML text; raises `PolicyInvalid` listing every problem found."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        detail = exc.problem or exc.context or "cannot be parsed"
        raise PolicyInvalid(
            f"Policy {source} is not valid YAML:",
            problems=[FieldProblem("", f"YAML syntax error: {detail}{where}", line)],
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyInvalid(
            f"Policy {source} is not valid YAML:", problems=[FieldProblem("", f"YAML error: {exc}")]
        ) from None

    if not isinstance(data, dict):
        got = "an empty document" if data is None else f"a {type(data).__name__}"
        raise PolicyInvalid(
            f"Policy {source} is invalid:",
            problems=[FieldProblem(
                "", f"the policy must be a mapping of keys (policy_id: ..., roles: ...), got {got}",
                1 if root is None else root.start_mark.line + 1,
            )],
        )

    duplicates = _duplicate_keys(root) if root is not None else []
    if duplicates:
        raise PolicyInvalid(f"Policy {source} is invalid:", problems=duplicates)

    try:
        return PolicyDocument.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            at_key = err["type"] == "extra_forbidden" or _key_error(err)
            message = _message(err)
            if _key_error(err):
                message = f"key {message}"
            problems.append(FieldProblem(format_location(loc), message, _line_for(root, loc, at_key=at_key)))
        raise PolicyInvalid(f"Policy {source} is invalid:", problems=problems) from None


def load_policy_file(path: Path) -> PolicyDocument:
    """Read and validate a policy file; unreadable or non-UTF-8 files raise `PolicyInvalid` too."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolicyInvalid(f"Policy file {path} does not exist") from None
    except IsADirectoryError:
        raise PolicyInvalid(f"Policy file {path} is a directory, not a file") from None
    except OSError as exc:
        raise PolicyInvalid(f"Policy file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyInvalid(
            f"Policy file {path} is not UTF-8 text:",
            problems=[FieldProblem("", f"byte {exc.start} is not valid UTF-8; save the file as UTF-8", line)],
        ) from None
    return parse_policy_text(text, source=str(path))


# ------------------------------------------------------------------------------------- canonical form
def policy_to_json(doc: PolicyDocument) -> dict[str, Any]:
    """The effective policy as plain JSON data (dates ISO, tuples as lists): what clients discover."""
    return doc.model_dump(mode="json")


def policy_sha256(doc: PolicyDocument) -> str:
    """Hash of the canonical JSON form: comments, key order and number formatting don't change it."""
    return canonical_sha256(doc)
