"""Settings checked against a JSON Schema, and said in words a user can act on.

Pure: no pytest, no file reading. The callers (suite/validate.py, models/schema.py) load
their schemas and files and turn a problem into their own error; this module finds the
first problem of parsed data, words it, finds the line of a field in the file's text, and
fills the enums a schema takes from the code (`"x-enum": "scorers"`) from values passed in,
so a schema file cannot drift from the code.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

# (field path parts, message): ("tools", 2, "function", "name") and "must be a string, got 3"
Problem = tuple[list[Any], str]

# --- schemas --------------------------------------------------------------------


def fill_enums(schema: Any, enums: Mapping[str, Sequence[str]]) -> Any:
    """A copy of `schema` where every node with `"x-enum": SOURCE` gets `"enum": enums[SOURCE]`."""
    if isinstance(schema, dict):
        filled = {k: fill_enums(v, enums) for k, v in schema.items()}
        if "x-enum" in filled:
            source = filled["x-enum"]
            if source not in enums:
                raise ValueError(f"unknown x-enum source {source!r}; given: {', '.join(sorted(enums))}")
            filled["enum"] = list(enums[source])
        return filled
    if isinstance(schema, list):
        return [fill_enums(v, enums) for v in schema]
    return schema


def check(
    schema: Mapping[str, Any] | Draft202012Validator, data: Any, object_word: str = "an object"
) -> Problem | None:
    """The first problem of `data` against `schema` (a schema or a validator made from one,
    for a caller that checks many values against one schema), or None.

    `object_word` is what the file calls an object: "a table" (TOML), "a mapping" (YAML).
    """
    validator = schema if isinstance(schema, Draft202012Validator) else Draft202012Validator(schema)
    errors = list(validator.iter_errors(data))
    return describe(best_match(errors), object_word) if errors else None


# --- field paths and lines ------------------------------------------------------


def field_path(parts: Iterable[Any]) -> str:
    """("tools", 2, "function", "name") -> "tools[2].function.name"."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_at(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def json_line(text: str, parts: list[Any]) -> int | None:
    """The line of the key (or element) at `parts` in a JSON document, or of the deepest
    part that exists (a missing key is reported at its parent)."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")

    def skip(pos: int) -> int:
        return ws.match(text, pos).end()  # type: ignore[union-attr]  # \s* always matches

    def walk(pos: int, rest: list[Any], line: int) -> int:
        pos = skip(pos)
        if not rest or pos >= len(text):
            return line
        want, opener = rest[0], text[pos]
        if opener == "{" and isinstance(want, str):
            pos = skip(pos + 1)
            while pos < len(text) and text[pos] == '"':
                key_pos = pos
                key, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
                pos = skip(skip(pos) + 1)  # past ':'
                if key == want:
                    return walk(pos, rest[1:], _line_at(text, key_pos))
                _, pos = decoder.raw_decode(text, pos)
                pos = skip(pos)
                if pos < len(text) and text[pos] == ",":
                    pos = skip(pos + 1)
        elif opener == "[" and isinstance(want, int):
            pos, index = skip(pos + 1), 0
            while pos < len(text) and text[pos] != "]":
                if index == want:
                    return walk(pos, rest[1:], _line_at(text, pos))
                _, pos = decoder.raw_decode(text, pos)
                pos, index = skip(pos), index + 1
                if pos < len(text) and text[pos] == ",":
                    pos = skip(pos + 1)
        return line

    try:
        return walk(0, list(parts), 1)
    except (ValueError, IndexError):
        return None


def yaml_line(text: str, parts: list[Any]) -> int | None:
    """The line of the key (or element) at `parts` in a YAML document, or of the deepest
    part that exists."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line: int | None = node.start_mark.line + 1 if node is not None else None
    for part in parts:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


_TOML_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _toml_key(name: str) -> str:
    return re.escape(name) if re.fullmatch(r"[A-Za-z0-9_-]+", name) else rf"""["']{re.escape(name)}["']"""


def _toml_table_name(header: str) -> list[str]:
    return [p.strip().strip("\"'") for p in re.findall(r"""\s*(?:"[^"]*"|'[^']*'|[^.]+)\s*""", header)]


def toml_line(text: str, parts: list[Any]) -> int | None:
    """The line setting the key at `parts` (a [table] then key = ..., or dotted keys), or
    the table's header when the key is not there."""
    keys = [p for p in parts if isinstance(p, str)]
    lines = text.splitlines()
    table: list[str] = []
    best: int | None = None
    for number, raw in enumerate(lines, start=1):
        header = _TOML_HEADER.match(raw)
        if header and "=" not in raw.split("#")[0]:
            table = _toml_table_name(header.group(1))
            if table and table == keys[: len(table)] and best is None:
                best = number  # the table's header, unless its key turns up below
            continue
        if not keys or table != keys[: len(table)]:
            continue
        rest = keys[len(table) :]
        for depth in range(len(rest), 0, -1):
            dotted = r"\s*\.\s*".join(_toml_key(k) for k in rest[:depth])
            if re.match(rf"^\s*{dotted}\s*=", raw):
                if depth == len(rest):
                    return number
                best = best or number
    return best


def find_line(text: str, suffix: str, parts: list[Any]) -> int | None:
    """The line of the field at `parts` in the text of a file named *`suffix`
    (".json", ".yaml"/".yml", else TOML)."""
    if suffix == ".json":
        return json_line(text, parts)
    if suffix in (".yaml", ".yml"):
        return yaml_line(text, parts)
    return toml_line(text, parts)


# --- messages -------------------------------------------------------------------

_TYPE_WORDS = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "null": "empty",
}

# what an enum filled from the code lists, by its x-enum source
_ENUM_NOUNS = {"scorers": "scorer", "task_types": "task type", "providers": "provider"}


def _type_words(expected: Any, object_word: str) -> str:
    names = expected if isinstance(expected, list) else [expected]
    words = {**_TYPE_WORDS, "object": object_word}
    return " or ".join(words.get(n, str(n)) for n in names if n != "null")


def shown(value: Any) -> str:
    """A value as a message quotes it: JSON (a string in quotes), cut to 60 characters."""
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A hint naming the closest of `choices` ( (did you mean 'x'?)), or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def describe(error: ValidationError, object_word: str = "an object") -> Problem:
    """(field path parts, one short human message) for a jsonschema error."""
    parts = list(error.absolute_path)
    kind, value, schema = error.validator, error.instance, error.schema
    if kind == "type":
        return parts, f"must be {_type_words(error.validator_value, object_word)}, got {shown(value)}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low, high = schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum")
        if low is not None and high is not None:
            return parts, f"must be a number from {low} to {high}, got {shown(value)}"
        if "exclusiveMinimum" in schema:
            return parts, f"must be more than {low}, got {shown(value)}"
        return parts, f"must be at least {low}, got {shown(value)}"
    if kind == "enum":
        known = [str(v) for v in error.validator_value]
        hint = did_you_mean(value, known) if isinstance(value, str) else ""
        noun = _ENUM_NOUNS.get(schema.get("x-enum"), "value")
        return parts, f"unknown {noun} {shown(value)}{hint}; known: {', '.join(known)}"
    if kind == "const":
        return parts, f"must be {shown(error.validator_value)}, got {shown(value)}"
    if kind == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        extra = sorted(k for k in value if k not in known)
        prefix = field_path(parts)
        hint = did_you_mean(extra[0], known)
        listed = ", ".join((f"{prefix}." if prefix else "") + k for k in known)
        return [*parts, extra[0]], f"unknown setting{hint}; known: {listed}"
    if kind == "required":
        missing = next(k for k in error.validator_value if k not in value)
        hint = did_you_mean(missing, [k for k in value if isinstance(k, str)])
        hint = hint.replace("did you mean", "found") if hint else ""
        return [*parts, missing], f"missing{hint}"
    if kind == "minLength":
        return parts, "must not be empty"
    if kind == "pattern":
        if schema.get("pattern") == r"\S":
            return parts, "must not be empty"
        return parts, f"{shown(value)} does not look right (expected to match {error.validator_value})"
    if kind == "uniqueItems":
        return parts, f"lists the same value twice: {shown(value)}"
    return parts, str(error.message)


# --- docs -----------------------------------------------------------------------


def _doc_type(node: dict[str, Any]) -> str:
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "any")
    kinds = [k for k in (kind if isinstance(kind, list) else [kind]) if k != "null"]
    text = " or ".join(kinds)
    if "object" in kinds and isinstance(node.get("additionalProperties"), dict):
        text += f" of {_doc_type(node['additionalProperties'])}s"
    if "array" in kinds and isinstance(node.get("items"), dict):
        inner = node["items"]
        text = f"list of {_doc_type(inner)}" if "$ref" not in inner else "list (see below)"
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum")
    if low is not None and high is not None:
        text += f", {low} to {high}"
    elif "exclusiveMinimum" in node:
        text += f", > {low}"
    elif low is not None:
        text += f", ≥ {low}"
    if node.get("minLength") or node.get("pattern") == r"\S":
        text += ", not empty"
    return text


def doc_rows(schema: dict[str, Any], prefix: str = "") -> Iterable[str]:
    """One Markdown table row per field of `schema` (nested objects as dotted names):
    | `field` | type and range | required | description |."""
    required = set(schema.get("required", []))
    free = schema.get("additionalProperties")
    if "properties" not in schema and isinstance(free, dict):  # a table of free names ([groups])
        yield f"| `NAME` | {_doc_type(free)} | no | {free.get('description', '')} |"
    for name, child in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        if child.get("type") == "object" and "properties" in child:
            yield from doc_rows(child, f"{key}.")
            continue
        need = "yes" if name in required else "no"
        description = child.get("description", "").replace("|", "\\|")
        yield f"| `{key}` | {_doc_type(child)} | {need} | {description} |"
