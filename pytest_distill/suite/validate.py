"""Check the suite settings files against the JSON Schemas shipped beside this module
(suite/schemas/), and the parts of a suite only its rows can check (prompt template
fields, reference answers).

Every problem is one SuiteError naming the file, the field path (`gate.min_pass_rate`,
`tools[2].function.parameters.type`) and the line where the text shows one, so a bad
folder is a collection error, never a traceback or a silent default. The schema checking,
wording and line finding are core/settings.py's; the enums the code owns (scorer names,
task types) are filled in from the code when a schema is loaded. models.toml entries are
checked by models/schema.py.

`python -m pytest_distill.suite.schemas --docs` prints docs/settings.md.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from pytest_distill.core import settings
from pytest_distill.core.errors import SuiteError
from pytest_distill.core.settings import did_you_mean, field_path
from pytest_distill.models import schema as models_schema
from pytest_distill.suite.model import Suite, TaskType

SCHEMA_DIR = Path(__file__).with_name("schemas")

# schema name -> file
SCHEMAS = {
    "distill.toml": SCHEMA_DIR / "distill.toml.json",
    "job_description.json": SCHEMA_DIR / "job_description.json",
    "config": SCHEMA_DIR / "config.json",
}


def _enums() -> dict[str, Sequence[str]]:
    # Imported here, not at the top: scoring imports suite.model, so importing scoring
    # first would run suite/__init__ -> loader -> this module before SCORERS exists.
    from pytest_distill.scoring import SCORERS

    return {"scorers": sorted(SCORERS), "task_types": [t.value for t in TaskType]}


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema of suite settings file `name` (a key of SCHEMAS), enums filled in."""
    raw = json.loads(SCHEMAS[name].read_text(encoding="utf-8"))
    schema: dict[str, Any] = settings.fill_enums(raw, _enums())
    Draft202012Validator.check_schema(schema)
    return schema


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name))


def find_line(path: Path, parts: list[Any], text: str | None = None) -> int | None:
    """The line of the field at `parts` in the file at `path` (read unless `text` is given)."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return None
    return settings.find_line(text, path.suffix, parts)


def _tool_name(tool: Any) -> str:
    fn = tool.get("function", tool) if isinstance(tool, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    return name if isinstance(name, str) else "?"


_JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


def _tool_schema_problem(data: Any) -> settings.Problem | None:
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
                inner = f"{settings.shown(exc.instance)} is not a JSON Schema type ({', '.join(_JSON_TYPES)})"
            else:
                inner = exc.message if len(exc.message) <= 100 else exc.message[:97] + "..."
            return at, f"tool '{_tool_name(tool)}': parameters is not a valid JSON Schema: {inner}"
    return None


def problem(kind: str, data: Any) -> settings.Problem | None:
    """The first problem of parsed settings `data` against schema `kind`, or None."""
    word = "a table" if kind.endswith(".toml") else "a mapping" if kind == "config" else "an object"
    found = settings.check(_validator(kind), data, word)
    if found is None and kind == "job_description.json" and isinstance(data, dict):
        return _tool_schema_problem(data)
    return found


def check_file(path: Path, data: Any, kind: str | None = None, *, text: str | None = None) -> None:
    """Raise one SuiteError for the first problem of a parsed suite settings file."""
    kind = kind or ("config" if path.name.startswith("config.") else path.name)
    found = problem(kind, data)
    if found is None:
        return
    parts, message = found
    raise SuiteError(path, message, line=find_line(path, parts, text), field=field_path(parts) or None)


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
            raise fail(
                "{answer} would put the reference answer in the prompt; use {question}, {context} or another column"
            )
        if name in everywhere:
            continue
        lacking = next((e for e in suite.examples if name in e.fields), None)
        if lacking is not None:
            row = next(e for e in suite.examples if name not in e.fields)
            raise fail(f"{{{name}}}: the column is missing on {suite.test_file.name} line {row.line}")
        columns = sorted(everywhere - {"answer"})
        raise fail(f"{{{name}}} is not a column{did_you_mean(name, columns)}; columns: {', '.join(columns)}")
    from pytest_distill.suite.prompts import user_text

    for example in suite.examples:  # format specs ({question:d}) only fail on real values
        try:
            user_text(example)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise fail(
                f"does not fill in for {suite.test_file.name} line {example.line}: {type(exc).__name__}: {exc}"
            ) from None


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
            found = settings.check(validator, call["parameters"]) if validator is not None else None
            if found is None:
                continue
            parts, message = found
            where = field_path(["parameters", *parts])
            raise SuiteError(
                suite.test_file,
                f"the reference call to '{call['name']}' does not fit its tool: {where}: {message}",
                line=example.line,
                field="answer",
            )


def _check_reference_sql(suite: Suite) -> None:
    from pytest_distill.scoring.sql import (
        QueryRejected,
        check_statement,
        extract_sql,
        schema_statements,
    )

    for example in suite.examples:
        if not isinstance(example.answer, str):
            raise SuiteError(
                suite.test_file, "a sql_execution reference must be a SQL string", line=example.line, field="answer"
            )
        question = example.question if isinstance(example.question, str) else str(example.question)
        # the scorer looks for the schema in the question, then the context (scoring/sql.py)
        statements = schema_statements(question + ("\n\n" + example.context if example.context else ""))
        if not statements:
            raise SuiteError(
                suite.test_file,
                "no CREATE TABLE statement in the question or context: the sql_execution scorer needs the schema there",
                line=example.line,
                field="question",
            )
        conn = sqlite3.connect(":memory:")
        try:
            try:
                for statement in statements:
                    conn.execute(statement)
            except sqlite3.Error as exc:
                raise SuiteError(
                    suite.test_file, f"the schema does not run in SQLite: {exc}", line=example.line, field="question"
                ) from None
            reference = extract_sql(example.answer)
            try:
                check_statement(reference)
                conn.execute(f"EXPLAIN {reference}")  # compiles against the schema, runs nothing
            except QueryRejected as exc:
                raise SuiteError(
                    suite.test_file, f"the reference SQL is not one query: {exc}", line=example.line, field="answer"
                ) from None
            except (sqlite3.Error, sqlite3.Warning) as exc:
                raise SuiteError(
                    suite.test_file,
                    f"the reference SQL does not run against the schema: {exc}",
                    line=example.line,
                    field="answer",
                ) from None
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


def settings_docs() -> str:
    out = [
        "# Settings reference",
        "",
        "Generated from the JSON Schemas in `pytest_distill/suite/schemas/` and",
        "`pytest_distill/models/models.schema.json` by",
        "`python -m pytest_distill.suite.schemas --docs`; a test keeps this file equal to that output.",
        "Every file is checked at collection: a wrong type, a value out of range, an unknown",
        'key (with a "did you mean") is one collection error naming the file, the field and the line.',
        "Tables in TOML are shown as dotted names (`gate.min_pass_rate` is `min_pass_rate` under `[gate]`).",
        "",
    ]
    schemas = {
        **{kind: load_schema(kind) for kind in SCHEMAS},
        "models.toml": models_schema.load_schema(),
        "models.toml [groups]": models_schema.load_groups_schema(),
    }
    for kind, schema in schemas.items():
        out += [
            f"## {_DOC_TITLES[kind]}",
            "",
            schema.get("description", ""),
            "",
            "| Field | Type and range | Required | Meaning |",
            "|---|---|---|---|",
            *settings.doc_rows(schema),
            "",
        ]
        if kind == "distill.toml":
            out += [
                "`prompt.user_template` may use `{question}`, `{context}` and any column every row of the",
                "test file has; another name is a collection error.",
                "",
            ]
        if kind == "job_description.json":
            out += [
                'Each tool is `{"type": "function", "function": {"name", "description", "parameters"}}`',
                'or the bare `{"name", "description", "parameters"}`; `name` is a non-empty string and',
                "`parameters` must pass the JSON Schema (Draft 2020-12) metaschema. Every reference tool call",
                "in the test file must validate against its tool's `parameters`; with the `sql_execution`",
                "scorer every reference query must compile against the schema in its question.",
                "",
            ]
    return "\n".join(out).rstrip("\n") + "\n"
