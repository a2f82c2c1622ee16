"""Load a suite folder in the native layout and check it, row by row.

Every problem is a SuiteError naming the file, and the line and field where known.
Nothing is dropped silently: a row either becomes an Example or stops the load.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import tomllib
from pathlib import Path
from typing import Any

import yaml

from pytest_distill.core.errors import SuiteError
from pytest_distill.suite import validate
from pytest_distill.suite.model import Example, Suite, SuiteSettings, TaskType

JOB_FILE = "job_description.json"
TEST_FILES = ("test.jsonl", "test.csv")
CONFIG_FILES = ("config.yaml", "config.yml", "config.json")
SETTINGS_FILE = "distill.toml"
INDEX_COLUMNS = ("", "Unnamed: 0", "index")


def is_suite_dir(path: Path) -> bool:
    return (path / JOB_FILE).is_file()


def find_test_file(folder: Path) -> Path | None:
    present = [folder / name for name in TEST_FILES if (folder / name).is_file()]
    if len(present) > 1:
        raise SuiteError(folder, f"both {present[0].name} and {present[1].name} exist; keep one test file")
    return present[0] if present else None


def load_suite(folder: Path, root: Path | None = None) -> Suite:
    """The suite in `folder`; with `root` (the rootdir), distill.toml files in the folders
    between it and the suite apply too (read_settings)."""
    folder = Path(folder)
    job_path = folder / JOB_FILE
    job = _read_json_document(job_path)
    validate.check_file(job_path, job)  # schema check (suite/schemas/), one error naming file, field, line
    if not isinstance(job, dict):
        raise SuiteError(job_path, "must be a JSON object")
    task_description = job.get("task_description")
    if not isinstance(task_description, str) or not task_description.strip():
        raise SuiteError(job_path, "missing or empty", field="task_description")
    classes = job.get("classes_description") or {}
    if not isinstance(classes, dict) or not all(isinstance(v, str) for v in classes.values()):
        raise SuiteError(job_path, "must be an object of label -> description", field="classes_description")
    tools = job.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, dict) and "name" in t.get("function", t) for t in tools):
        raise SuiteError(job_path, "must be a list of tools, each with a function name", field="tools")

    test_file = find_test_file(folder)
    if test_file is None:
        raise SuiteError(folder, f"no test file: expected one of {', '.join(TEST_FILES)}")
    rows = _read_rows(test_file)
    if not rows:
        raise SuiteError(test_file, "no examples: the test file is empty")

    config_task, config_source = _read_config_task(folder)
    task_type, task_source = _task_type(config_task, config_source, classes, tools, rows)
    settings = read_settings(folder / SETTINGS_FILE, root)

    suite = Suite(
        name=folder.name,
        path=folder,
        test_file=test_file,
        task_type=task_type,
        task_type_source=task_source,
        task_description=task_description.strip(),
        classes=classes,
        tools=tools,
        judge_instructions=job.get("llm_as_a_judge_instructions"),
        job=job,
        settings=settings,
    )
    if task_type == TaskType.CLASSIFICATION and not classes:
        raise SuiteError(job_path, "a classification suite needs its classes", field="classes_description")
    if task_type.is_tool_calling and not tools:
        raise SuiteError(job_path, "a tool-calling suite needs its tools", field="tools")
    suite.examples = [_example(suite, row, line, fields) for row, (line, fields) in enumerate(rows, start=1)]
    _check_duplicates(suite)
    validate.check_suite(suite)  # template fields vs columns, reference answers vs tools / SQL schema
    return suite


# --- files -------------------------------------------------------------------


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SuiteError(path, f"cannot read: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SuiteError(
            path, f"invalid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})", line=line
        ) from None


def _read_json_document(path: Path) -> Any:
    if not path.is_file():
        raise SuiteError(path, "missing")
    text = _decode(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuiteError(path, f"malformed JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line where the row starts, fields) for every data row."""
    text = _decode(path)
    return _read_jsonl(path, text) if path.suffix == ".jsonl" else _read_csv(path, text)


def _read_jsonl(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteError(path, f"malformed JSON: {exc.msg} (column {exc.colno})", line=number) from None
        if not isinstance(value, dict):
            raise SuiteError(path, f"each line must be a JSON object, got {type(value).__name__}", line=number)
        rows.append((number, value))
    return rows


def _read_csv(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return []
        drop_index = header[0].strip() in INDEX_COLUMNS and len(header) > 1
        names = header[1:] if drop_index else header
        for column in names:
            if not column.strip():
                raise SuiteError(path, "a column has no name in the header", line=1)
        if len(set(names)) != len(names):
            raise SuiteError(path, f"duplicate column names in the header: {names}", line=1)
        rows = []
        start = reader.line_num + 1
        for record in reader:
            if not any(cell.strip() for cell in record):
                start = reader.line_num + 1
                continue
            if len(record) != len(header):
                raise SuiteError(path, f"row has {len(record)} fields, the header has {len(header)}", line=start)
            values = record[1:] if drop_index else record
            rows.append((start, dict(zip(names, values))))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise SuiteError(path, f"malformed CSV: {exc}", line=reader.line_num) from None
    return rows


def _read_config_task(folder: Path) -> tuple[str | None, Path | None]:
    for name in CONFIG_FILES:
        path = folder / name
        if not path.is_file():
            continue
        text = _decode(path)
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except json.JSONDecodeError as exc:
            raise SuiteError(path, f"malformed JSON: {exc.msg}", line=exc.lineno) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise SuiteError(
                path, f"malformed YAML: {getattr(exc, 'problem', exc)}", line=mark.line + 1 if mark else None
            ) from None
        validate.check_file(path, data, text=text)  # schema check: a list/scalar config or bad base.task
        base = (data or {}).get("base") if isinstance(data, dict) else None
        task = base.get("task") if isinstance(base, dict) else None
        if task is not None and not isinstance(task, str):
            raise SuiteError(path, "must be a string", field="base.task")
        return task, path
    return None, None


def _task_type(config_task, config_source, classes, tools, rows) -> tuple[TaskType, str]:
    if config_task is not None:
        try:
            return TaskType(config_task), f"{config_source.name} base.task"
        except ValueError:
            known = ", ".join(t.value for t in TaskType)
            raise SuiteError(
                config_source, f"unknown task type '{config_task}'; known: {known}", field="base.task"
            ) from None
    if classes:
        return TaskType.CLASSIFICATION, "inferred: job_description.json has classes_description"
    if tools:
        first = rows[0][1].get("question") if rows else None
        if isinstance(_maybe_json(first), list):
            return TaskType.MULTI_TURN_TOOL_CALLING, "inferred: tools, and questions are chat message lists"
        return TaskType.TOOL_CALLING, "inferred: job_description.json has tools"
    if rows and "context" in rows[0][1]:
        return TaskType.QA_OPEN_BOOK, "inferred: the test file has a context column"
    return TaskType.QUESTION_ANSWERING, "inferred: no classes, tools or context"


_SETTINGS_KEYS = {"models", "scorer", "also", "constrain", "judge", "max_tokens"}
_GATE_KEYS = {"min_pass_rate", "max_error_rate", "max_regression"}
_PROMPT_KEYS = {"system", "user_template"}
_TABLES = ("gate", "prompt")  # merged per key across the files, like the top-level keys


def settings_files(folder: Path, root: Path | None) -> list[Path]:
    """The distill.toml files that apply to the suite in `folder`, farthest first: one in each
    folder from `root` (the rootdir) down to the suite's own. Without a root, or for a suite
    outside it: the suite's own file only."""
    folder = Path(folder)
    chain = [folder]
    if root is not None:
        inside, top = folder.resolve(), Path(root).resolve()
        chain += [p for p in inside.parents if p == top or top in p.parents]
    return [d / SETTINGS_FILE for d in reversed(chain) if (d / SETTINGS_FILE).is_file()]


def _read_settings_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(_decode(path))
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(path, f"invalid TOML: {exc}") from None
    validate.check_file(path, data)  # schema check: types, ranges, scorer names, unknown keys
    gate = data.get("gate", {})
    prompt = data.get("prompt", {})
    top = {k: v for k, v in data.items() if k not in _TABLES}
    for table, known, label in (
        (top, _SETTINGS_KEYS, ""),
        (gate, _GATE_KEYS, "gate."),
        (prompt, _PROMPT_KEYS, "prompt."),
    ):
        if not isinstance(table, dict):
            raise SuiteError(path, "must be a table", field=label.rstrip("."))
        unknown = set(table) - known
        if unknown:
            raise SuiteError(
                path,
                f"unknown setting; known: {', '.join(label + k for k in sorted(known))}",
                field=label + sorted(unknown)[0],
            )
    for key in ("min_pass_rate", "max_error_rate"):
        value = gate.get(key)
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
            raise SuiteError(path, f"must be a number between 0 and 1, got {value!r}", field=f"gate.{key}")
    return data


def read_settings(path: Path, root: Path | None = None) -> SuiteSettings:
    """The suite's settings from `path` (its distill.toml) and, with `root`, every distill.toml
    in the folders between the rootdir and the suite: the nearest file wins per key
    (`gate.*` and `prompt.*` keys each on their own)."""
    settings = SuiteSettings()
    files = settings_files(path.parent, root) if root is not None else ([path] if path.is_file() else [])
    if not files:
        return settings
    merged: dict[str, Any] = {}  # dotted key ("gate.min_pass_rate") -> value
    for file in files:  # farthest first: nearer files overwrite
        for key, value in _read_settings_file(file).items():
            if key in _TABLES:
                for sub, sub_value in value.items():
                    merged[f"{key}.{sub}"] = sub_value
                    settings.origins[f"{key}.{sub}"] = file
            else:
                merged[key] = value
                settings.origins[key] = file
    settings.source = files[-1]
    settings.models = list(merged["models"]) if "models" in merged else None
    settings.scorer = merged.get("scorer")
    settings.also = list(merged.get("also", []))
    settings.constrain = bool(merged.get("constrain", True))
    settings.judge = merged.get("judge")
    settings.max_tokens = merged.get("max_tokens")
    settings.min_pass_rate = merged.get("gate.min_pass_rate")
    settings.max_error_rate = merged.get("gate.max_error_rate")
    settings.max_regression = merged.get("gate.max_regression")
    settings.system_prompt = merged.get("prompt.system")
    settings.user_template = merged.get("prompt.user_template")
    return settings


# --- rows --------------------------------------------------------------------


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in ("{", "[", '"'):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _example(suite: Suite, row: int, line: int, fields: dict[str, Any]) -> Example:
    path = suite.test_file
    for name in ("question", "answer"):
        if name not in fields:
            present = ", ".join(fields) or "none"
            raise SuiteError(path, f"missing (columns present: {present})", line=line, field=name)
        value = fields[name]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise SuiteError(path, "empty", line=line, field=name)
    question: Any = fields["question"]
    if not isinstance(question, (str, list)):
        raise SuiteError(
            path, f"must be text or a list of chat messages, got {type(question).__name__}", line=line, field="question"
        )
    if suite.task_type == TaskType.MULTI_TURN_TOOL_CALLING or isinstance(question, list):
        question = _messages(path, line, _maybe_json(question), suite)
    context = fields.get("context")
    if context is not None and not isinstance(context, str):
        context = json.dumps(context, ensure_ascii=False)
    answer = _answer(suite, line, fields["answer"])
    return Example(suite=suite, row=row, line=line, question=question, answer=answer, context=context, fields=fields)


def _messages(path: Path, line: int, value: Any, suite: Suite) -> list[dict[str, Any]] | str:
    if isinstance(value, str) and suite.task_type != TaskType.MULTI_TURN_TOOL_CALLING:
        return value
    if isinstance(value, str):  # a single-turn question inside a multi-turn suite
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise SuiteError(path, "must be a JSON list of chat messages", line=line, field="question")
    for index, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise SuiteError(
                path, f"message {index} needs a role of system, user, assistant or tool", line=line, field="question"
            )
        for call in message.get("tool_calls") or []:
            fn = call.get("function", call) if isinstance(call, dict) else None
            if not isinstance(fn, dict) or "name" not in fn:
                raise SuiteError(
                    path, f"message {index} has a tool call without a function name", line=line, field="question"
                )
    if value[-1]["role"] != "user":
        raise SuiteError(path, "the last message must be the user's", line=line, field="question")
    return value


def _answer(suite: Suite, line: int, raw: Any) -> Any:
    path = suite.test_file
    if suite.task_type == TaskType.CLASSIFICATION:
        label = _maybe_json(raw) if isinstance(raw, str) else raw
        if isinstance(label, dict) and len(label) == 1:
            label = next(iter(label.values()))
        if not isinstance(label, str):
            raise SuiteError(path, f"a classification answer must be a label, got {raw!r}", line=line, field="answer")
        label = label.strip()
        if label not in suite.classes:
            close = difflib.get_close_matches(label, list(suite.classes), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise SuiteError(
                path,
                f"'{label}' is not one of the {len(suite.classes)} classes in job_description.json{hint}",
                line=line,
                field="answer",
            )
        return label
    if suite.task_type.is_tool_calling:
        value = _maybe_json(raw) if isinstance(raw, str) else raw
        if isinstance(value, str) and value.strip()[:1] in ("{", "["):  # meant as JSON: say why it isn't
            try:
                json.loads(value)
            except json.JSONDecodeError as exc:
                raise SuiteError(
                    path,
                    f"the answer is not valid JSON: {exc.msg} (column {exc.colno}) in {value[:80]!r}",
                    line=line,
                    field="answer",
                ) from None
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            calls = value
        elif isinstance(value, dict):
            calls = [value]
        else:
            raise SuiteError(
                path,
                f"a tool-calling answer must be a JSON object "
                f'{{"name": ..., "parameters": ...}}, got {str(raw)[:80]!r}',
                line=line,
                field="answer",
            )
        parsed = []
        for call in calls:
            fn = call.get("function", call)
            name = fn.get("name")
            params = fn.get("parameters", fn.get("arguments", {}))
            params = _maybe_json(params)
            if not isinstance(name, str) or not isinstance(params, dict):
                raise SuiteError(path, 'each call needs "name" and "parameters" (an object)', line=line, field="answer")
            if suite.tool(name) is None:
                known = ", ".join(t.get("function", t)["name"] for t in suite.tools)
                raise SuiteError(
                    path, f"calls '{name}', which is not among the tools ({known})", line=line, field="answer"
                )
            parsed.append({"name": name, "parameters": params})
        return parsed[0] if len(parsed) == 1 else parsed
    # free text: a JSON string answer is unwrapped, an object kept as it is
    value = _maybe_json(raw) if isinstance(raw, str) and raw.strip().startswith('"') else raw
    return value


def _check_duplicates(suite: Suite) -> None:
    seen: dict[str, Example] = {}
    for example in suite.examples:
        key = json.dumps([example.question, example.context], sort_keys=True, ensure_ascii=False)
        first = seen.get(key)
        if first is None:
            seen[key] = example
            continue
        if json.dumps(first.answer, sort_keys=True) == json.dumps(example.answer, sort_keys=True):
            message = f"duplicate row: same question and answer as line {first.line}"
        else:
            message = f"duplicate question with a different answer than line {first.line}"
        raise SuiteError(suite.test_file, message, line=example.line, field="question")
