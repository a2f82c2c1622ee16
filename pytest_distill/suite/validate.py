"""Check settings files against the JSON Schemas shipped beside this module, and the
parts of a suite only its rows can check (prompt template fields, reference answers).

Every problem is one SuiteError (ConfigError for models.toml) naming the file, the field
path (`gate.min_pass_rate`, `tools[2].function.parameters.type`) and the line where the
text shows one, so a bad folder is a collection error, never a traceback or a silent
default. Enums that the code owns (scorer names, task types, providers) are filled in
from the code when a schema is loaded, so the schema files cannot drift from it.

`python -m pytest_distill.suite.schemas --docs` prints docs/settings.md.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import sqlite3
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from pytest_distill.core.errors import ConfigError, SuiteError
from pytest_distill.suite.model import Suite, TaskType

SCHEMA_DIR = Path(__file__).with_name("schemas")
MODELS_SCHEMA = Path(__file__).parent.parent / "models" / "models.schema.json"
GROUPS_SCHEMA = Path(__file__).parent.parent / "models" / "groups.schema.json"

# schema name -> file; the order is the order of docs/settings.md
SCHEMAS = {
    "distill.toml": SCHEMA_DIR / "distill.toml.json",
    "job_description.json": SCHEMA_DIR / "job_description.json",
    "config": SCHEMA_DIR / "config.json",
    "models.toml": MODELS_SCHEMA,
    "models.toml [groups]": GROUPS_SCHEMA,
}


def _enum_values(source: str) -> list[str]:
    # Imported here: scoring and models sit beside suite/, and only their names are needed.
    if source == "scorers":
        from pytest_distill.scoring import SCORERS

        return sorted(SCORERS)
    if source == "task_types":
        return [t.value for t in TaskType]
    if source == "providers":
        from pytest_distill.models.registry import PROVIDERS

        return sorted(PROVIDERS)
    raise ValueError(f"unknown x-enum source {source!r}")


def _fill_enums(node: Any) -> Any:
    if isinstance(node, dict):
        filled = {k: _fill_enums(v) for k, v in node.items()}
        if "x-enum" in filled:
            filled["enum"] = _enum_values(filled["x-enum"])
        return filled
    if isinstance(node, list):
        return [_fill_enums(v) for v in node]
    return node


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    schema = _fill_enums(json.loads(SCHEMAS[name].read_text(encoding="utf-8")))
    Draft202012Validator.check_schema(schema)
    return schema


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name))


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
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
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
        rest = keys[len(table):]
        for depth in range(len(rest), 0, -1):
            dotted = r"\s*\.\s*".join(_toml_key(k) for k in rest[:depth])
            if re.match(rf"^\s*{dotted}\s*=", raw):
                if depth == len(rest):
                    return number
                best = best or number
    return best


def find_line(path: Path, parts: list[Any], text: str | None = None) -> int | None:
    if text is None:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return None
    if path.suffix == ".json":
        return json_line(text, parts)
    if path.suffix in (".yaml", ".yml"):
        return yaml_line(text, parts)
    return toml_line(text, parts)


# --- messages -----------------------------------------------------------------

_TYPE_WORDS = {"object": "an object", "array": "a list", "string": "a string", "number": "a number",
               "integer": "an integer", "boolean": "true or false", "null": "empty"}


def _type_words(expected: Any, object_word: str) -> str:
    names = expected if isinstance(expected, list) else [expected]
    words = {**_TYPE_WORDS, "object": object_word}
    return " or ".join(words.get(n, str(n)) for n in names if n != "null")


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


_ENUM_NOUNS = {"scorers": "scorer", "task_types": "task type", "providers": "provider"}


def describe(error: ValidationError, object_word: str = "an object") -> tuple[list[Any], str]:
    """(field path parts, one short human message) for a jsonschema error."""
    parts = list(error.absolute_path)
    kind, value, schema = error.validator, error.instance, error.schema
    if kind == "type":
        return parts, f"must be {_type_words(error.validator_value, object_word)}, got {_shown(value)}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low, high = schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum")
        if low is not None and high is not None:
            return parts, f"must be a number from {low} to {high}, got {_shown(value)}"
        if "exclusiveMinimum" in schema:
            return parts, f"must be more than {low}, got {_shown(value)}"
        return parts, f"must be at least {low}, got {_shown(value)}"
    if kind == "enum":
        known = [str(v) for v in error.validator_value]
        hint = _did_you_mean(value, known) if isinstance(value, str) else ""
        noun = _ENUM_NOUNS.get(schema.get("x-enum"), "value")
        return parts, f"unknown {noun} {_shown(value)}{hint}; known: {', '.join(known)}"
    if kind == "const":
        return parts, f"must be {_shown(error.validator_value)}, got {_shown(value)}"
    if kind == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        extra = sorted(k for k in value if k not in known)
        prefix = field_path(parts)
        hint = _did_you_mean(extra[0], known)
        listed = ", ".join((f"{prefix}." if prefix else "") + k for k in known)
        return parts + [extra[0]], f"unknown setting{hint}; known: {listed}"
    if kind == "required":
        missing = next(k for k in error.validator_value if k not in value)
        hint = _did_you_mean(missing, [k for k in value if isinstance(k, str)])
        hint = hint.replace("did you mean", "found") if hint else ""
        return parts + [missing], f"missing{hint}"
    if kind == "minLength":
        return parts, "must not be empty"
    if kind == "pattern":
        if schema.get("pattern") == r"\S":
            return parts, "must not be empty"
        return parts, f"{_shown(value)} does not look right (expected to match {error.validator_value})"
    if kind == "uniqueItems":
        return parts, f"lists the same value twice: {_shown(value)}"
    return parts, error.message


def _first(errors: Iterable[ValidationError]) -> ValidationError | None:
    errors = list(errors)
    return best_match(errors) if errors else None


def _tool_name(tool: Any) -> str:
    fn = tool.get("function", tool) if isinstance(tool, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    return name if isinstance(name, str) else "?"


_JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


def _tool_schema_problem(data: Any) -> tuple[list[Any], str] | None:
    """The first tool whose `parameters` is not a valid JSON Schema."""
    for index, tool in enumerate(data.get("tools") or []):
        wrapped = "function" in tool
        fn = tool["function"] if wrapped else tool
        if "parameters" not in fn:
            continue
        try:
            Draft202012Validator.check_schema(fn["parameters"])
        except SchemaError as exc:
            at = ["tools", index] + (["function"] if wrapped else []) + ["parameters"] + list(exc.absolute_path)
            if exc.absolute_path and exc.absolute_path[-1] == "type" and exc.validator == "anyOf":
                inner = f"{_shown(exc.instance)} is not a JSON Schema type ({', '.join(_JSON_TYPES)})"
            else:
                inner = exc.message if len(exc.message) <= 100 else exc.message[:97] + "..."
            return at, f"tool '{_tool_name(tool)}': parameters is not a valid JSON Schema: {inner}"
    return None


def problem(kind: str, data: Any) -> tuple[list[Any], str] | None:
    """The first problem of parsed settings `data` against schema `kind`, or None."""
    error = _first(_validator(kind).iter_errors(data))
    if error is not None:
        word = "a table" if kind.endswith(".toml") else "a mapping" if kind == "config" else "an object"
        return describe(error, word)
    if kind == "job_description.json" and isinstance(data, dict):
        return _tool_schema_problem(data)
    return None


def check_file(path: Path, data: Any, kind: str | None = None, *, text: str | None = None) -> None:
    """Raise one SuiteError for the first problem of a parsed suite settings file."""
    kind = kind or ("config" if path.name.startswith("config.") else path.name)
    found = problem(kind, data)
    if found is None:
        return
    parts, message = found
    raise SuiteError(path, message, line=find_line(path, parts, text), field=field_path(parts) or None)


def check_models_entry(path: Path, name: str, table: dict[str, Any]) -> None:
    """Raise one ConfigError for the first problem of one models.toml entry."""
    found = problem("models.toml", table)
    if found is None:
        return
    parts, message = found
    line = find_line(path, [name, *parts]) or find_line(path, ["models", name, *parts])
    where = f"{path}:{line}" if line else str(path)
    raise ConfigError(f"{where}: model '{name}' field '{field_path(parts)}': {message}")


def check_models_groups(path: Path, groups: Any) -> None:
    """Raise one ConfigError for the first problem of a models.toml [groups] table."""
    found = problem("models.toml [groups]", groups)
    if found is None:
        return
    parts, message = found
    line = find_line(path, ["groups", *parts])
    where = f"{path}:{line}" if line else str(path)
    raise ConfigError(f"{where}: [groups] field '{field_path(parts)}': {message}")


# --- what only the rows can check ---------------------------------------------


def check_suite(suite: Suite) -> None:
    """Template fields against the columns, and the reference answers against the tools
    or the SQL schema: collection errors, so scoring never meets bad data."""
    _check_template(suite)
    if suite.task_type.is_tool_calling:
        _check_reference_calls(suite)
    scorers = {suite.settings.scorer, *suite.settings.also}
    if "sql_execution" in scorers:
        _check_reference_sql(suite)


def _template_fields(template: str) -> list[str]:
    names = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            names.append(re.split(r"[.\[]", name, maxsplit=1)[0])
    return names


def _check_template(suite: Suite) -> None:
    template = suite.settings.user_template
    if not template:
        return
    path = suite.settings.file_of("prompt.user_template", suite.path / "distill.toml")
    line = find_line(path, ["prompt", "user_template"])

    def fail(message: str) -> SuiteError:
        return SuiteError(path, message, line=line, field="prompt.user_template")

    try:
        names = _template_fields(template)
    except ValueError as exc:
        raise fail(f"not a valid template: {exc} (write a literal brace as {{{{ or }}}})") from None
    if any(not n or n.isdigit() for n in names):
        raise fail("use column names in braces, e.g. {question}; {} and {0} have nothing to fill them")
    builtin = {"question", "context"}
    everywhere = set.intersection(*(set(e.fields) for e in suite.examples)) | builtin if suite.examples else builtin
    for name in names:
        if name == "answer":  # the reference would be in the prompt: every model would pass
            raise fail("{answer} would put the reference answer in the prompt; use {question}, {context} "
                       "or another column")
        if name in everywhere:
            continue
        lacking = next((e for e in suite.examples if name in e.fields), None)
        if lacking is not None:
            row = next(e for e in suite.examples if name not in e.fields)
            raise fail(f"{{{name}}}: the column is missing on {suite.test_file.name} line {row.line}")
        columns = sorted(everywhere - {"answer"})
        raise fail(f"{{{name}}} is not a column{_did_you_mean(name, columns)}; columns: {', '.join(columns)}")
    from pytest_distill.suite.prompts import user_text

    for example in suite.examples:  # format specs ({question:d}) only fail on real values
        try:
            user_text(example)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise fail(f"does not fill in for {suite.test_file.name} line {example.line}: "
                       f"{type(exc).__name__}: {exc}") from None


def _check_reference_calls(suite: Suite) -> None:
    validators: dict[str, Draft202012Validator | None] = {}
    for example in suite.examples:
        calls = example.answer if isinstance(example.answer, list) else [example.answer]
        for call in calls:
            if call["name"] not in validators:
                tool = suite.tool(call["name"])
                schema = tool.get("parameters") if tool else None
                validators[call["name"]] = Draft202012Validator(schema) if isinstance(schema, dict) else None
            validator = validators[call["name"]]
            if validator is None:
                continue
            error = _first(validator.iter_errors(call["parameters"]))
            if error is None:
                continue
            parts, message = describe(error)
            where = field_path(["parameters", *parts])
            raise SuiteError(suite.test_file, f"the reference call to '{call['name']}' does not fit its tool: "
                             f"{where}: {message}", line=example.line, field="answer")


def _check_reference_sql(suite: Suite) -> None:
    from pytest_distill.scoring.sql import (
        QueryRejected,
        check_statement,
        extract_sql,
        schema_statements,
    )

    for example in suite.examples:
        if not isinstance(example.answer, str):
            raise SuiteError(suite.test_file, "a sql_execution reference must be a SQL string",
                             line=example.line, field="answer")
        question = example.question if isinstance(example.question, str) else str(example.question)
        # the scorer looks for the schema in the question, then the context (scoring/sql.py)
        statements = schema_statements(question + ("\n\n" + example.context if example.context else ""))
        if not statements:
            raise SuiteError(suite.test_file, "no CREATE TABLE statement in the question or context: "
                             "the sql_execution scorer needs the schema there", line=example.line, field="question")
        conn = sqlite3.connect(":memory:")
        try:
            try:
                for statement in statements:
                    conn.execute(statement)
            except sqlite3.Error as exc:
                raise SuiteError(suite.test_file, f"the schema does not run in SQLite: {exc}",
                                 line=example.line, field="question") from None
            reference = extract_sql(example.answer)
            try:
                check_statement(reference)
                conn.execute(f"EXPLAIN {reference}")  # compiles against the schema, runs nothing
            except QueryRejected as exc:
                raise SuiteError(suite.test_file, f"the reference SQL is not one query: {exc}",
                                 line=example.line, field="answer") from None
            except (sqlite3.Error, sqlite3.Warning) as exc:
                raise SuiteError(suite.test_file, f"the reference SQL does not run against the schema: {exc}",
                                 line=example.line, field="answer") from None
        finally:
            conn.close()


# --- docs/settings.md -----------------------------------------------------------

_DOC_TITLES = {
    "distill.toml": "`distill.toml` (in the suite folder)",
    "job_description.json": "`job_description.json`",
    "config": "`config.yaml` / `config.json`",
    "models.toml": "`models.toml` (each `[NAME]` entry)",
    "models.toml [groups]": "`models.toml` `[groups]`",
}


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


def _doc_rows(node: dict[str, Any], prefix: str = "") -> Iterable[str]:
    required = set(node.get("required", []))
    extra = node.get("additionalProperties")
    if "properties" not in node and isinstance(extra, dict):  # a table of free names ([groups])
        yield f"| `NAME` | {_doc_type(extra)} | no | {extra.get('description', '')} |"
    for name, child in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        if child.get("type") == "object" and "properties" in child:
            yield from _doc_rows(child, f"{key}.")
            continue
        need = "yes" if name in required else "no"
        description = child.get("description", "").replace("|", "\\|")
        yield f"| `{key}` | {_doc_type(child)} | {need} | {description} |"


def settings_docs() -> str:
    out = ["# Settings reference", "",
           "Generated from the JSON Schemas in `pytest_distill/suite/schemas/` and",
           "`pytest_distill/models/models.schema.json` by",
           "`python -m pytest_distill.suite.schemas --docs`; a test keeps this file equal to that output.",
           "Every file is checked at collection: a wrong type, a value out of range, an unknown",
           "key (with a \"did you mean\") is one collection error naming the file, the field and the line.",
           "Tables in TOML are shown as dotted names (`gate.min_pass_rate` is `min_pass_rate` under `[gate]`).",
           ""]
    for kind in SCHEMAS:
        schema = load_schema(kind)
        out += [f"## {_DOC_TITLES[kind]}", "", schema.get("description", ""), "",
                "| Field | Type and range | Required | Meaning |", "|---|---|---|---|", *_doc_rows(schema), ""]
        if kind == "distill.toml":
            out += ["`prompt.user_template` may use `{question}`, `{context}` and any column every row of the",
                    "test file has; another name is a collection error.", ""]
        if kind == "job_description.json":
            out += ["Each tool is `{\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\"}}`",
                    "or the bare `{\"name\", \"description\", \"parameters\"}`; `name` is a non-empty string and",
                    "`parameters` must pass the JSON Schema (Draft 2020-12) metaschema. Every reference tool call",
                    "in the test file must validate against its tool's `parameters`; with the `sql_execution`",
                    "scorer every reference query must compile against the schema in its question.", ""]
    return "\n".join(out).rstrip("\n") + "\n"

