"""Settings files against their schemas, template fields, reference answers (issue 15 item 1).

Each bad case of the issue's "Bad suite settings" list is one collection error with one
exact line naming the file, the line and the field.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_distill.core.errors import ConfigError, SuiteError
from pytest_distill.core.settings import check, fill_enums, json_line, toml_line, yaml_line
from pytest_distill.models.registry import Registry
from pytest_distill.suite import load_suite
from pytest_distill.suite.validate import settings_docs

from helpers.chat_server import SERIAL, XDIST
from helpers.suites import write_suite

ROOT = Path(__file__).resolve().parent.parent

LIGHT = {
    "type": "function",
    "function": {
        "name": "set_light",
        "description": "Switch the lights of a room.",
        "parameters": {
            "type": "object",
            "required": ["room"],
            "properties": {"room": {"type": "string", "enum": ["kitchen", "hall"]}, "on": {"type": "boolean"}},
        },
    },
}
TOOL_JOB = {"task_description": "Control the lights.", "tools": [LIGHT]}
TOOL_ROWS = [
    {
        "question": "kitchen lights on",
        "answer": json.dumps({"name": "set_light", "parameters": {"room": "kitchen", "on": True}}),
    }
]
SQL_SETTINGS = 'scorer = "sql_execution"\n'
SQL_CONFIG = "base:\n  task: question-answering\n"
SCHEMA = "CREATE TABLE t (id INTEGER, name TEXT);\n"


def _tool_job(**function) -> dict:
    return {**TOOL_JOB, "tools": [{**LIGHT, "function": {**LIGHT["function"], **function}}]}


def _message(folder: Path) -> str:
    """The one-line error, with the folder written as S."""
    with pytest.raises(SuiteError) as info:
        load_suite(folder)
    text = str(info.value)
    assert "\n" not in text
    return text.replace(str(folder), "S")


# --- 1: template fields --------------------------------------------------------


def test_template_field_that_is_not_a_column(tmp_path):
    folder = write_suite(tmp_path / "s", settings='[prompt]\nuser_template = "Q: {question} {nosuchcol}"\n')
    assert _message(folder) == (
        "S/distill.toml:2: field 'prompt.user_template': {nosuchcol} is not a column; columns: context, question"
    )


def test_template_may_use_an_extra_column_but_not_the_answer(tmp_path):
    rows = [{"question": "rain", "answer": "weather", "source": "news"}]
    ok = write_suite(tmp_path / "ok", rows=rows, settings='[prompt]\nuser_template = "{source}: {question}"\n')
    assert load_suite(ok).settings.user_template == "{source}: {question}"
    leak = write_suite(tmp_path / "leak", rows=rows, settings='[prompt]\nuser_template = "{question} {answer}"\n')
    assert _message(leak) == (
        "S/distill.toml:2: field 'prompt.user_template': {answer} would put the reference "
        "answer in the prompt; use {question}, {context} or another column"
    )


def test_template_with_a_format_spec_that_does_not_fit_the_values(tmp_path):
    folder = write_suite(tmp_path / "s", settings='[prompt]\nuser_template = "{question:d}"\n')
    assert _message(folder).startswith(
        "S/distill.toml:2: field 'prompt.user_template': does not fill in for test.jsonl line 1: ValueError"
    )


# --- 3: config.yaml ------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("- base\n- task\n", 'S/config.yaml:1: must be a mapping, got ["base", "task"]'),
        ("classification\n", "S/config.yaml:1: must be a mapping, got 'classification'"),
        (
            "base:\n  - task: classification\n",
            'S/config.yaml:1: field \'base\': must be a mapping, got [{"task": "classification"}]',
        ),
        (
            "synthgen:\n  rounds: 2\nbase:\n  task: clasification\n",
            (
                "S/config.yaml:4: field 'base.task': unknown task type 'clasification' (did you mean 'classification'?); "
                "known: classification, tool-calling-closed-book, multi-turn-tool-calling-closed-book, question-answering, "
                "question-answering-open-book, question-answering-closed-book, information-extraction"
            ),
        ),
    ],
    ids=["list", "scalar", "base-list", "task-typo"],
)
def test_config_that_is_not_a_mapping_is_an_error_not_ignored(tmp_path, config, expected):
    assert _message(write_suite(tmp_path / "s", config=config)) == expected


def test_config_json_names_its_line(tmp_path):
    folder = write_suite(tmp_path / "s", config=None)
    (folder / "config.json").write_text('{\n  "base": {\n    "task": 7\n  }\n}\n')
    assert _message(folder) == "S/config.json:3: field 'base.task': must be a string, got 7"


# --- 5, 8, 9: distill.toml types and ranges -------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ('max_tokens = "lots"\n', "S/distill.toml:1: field 'max_tokens': must be an integer, got 'lots'"),
        ("max_tokens = 0\n", "S/distill.toml:1: field 'max_tokens': must be at least 1, got 0"),
        ('also = "token_f1"\n', "S/distill.toml:1: field 'also': must be a list, got 'token_f1'"),
        ('constrain = "no"\n', "S/distill.toml:1: field 'constrain': must be true or false, got 'no'"),
        ("[gate]\nmin_pass_rate = true\n", "S/distill.toml:2: field 'gate.min_pass_rate': must be a number, got true"),
        (
            "[gate]\nmax_error_rate = 1.5\n",
            "S/distill.toml:2: field 'gate.max_error_rate': must be a number from 0 to 1, got 1.5",
        ),
        (
            '[gate]\nmax_regression = "abc"\n',
            "S/distill.toml:2: field 'gate.max_regression': must be a number, got 'abc'",
        ),
        ("[gate]\nmax_regression = -5\n", "S/distill.toml:2: field 'gate.max_regression': must be at least 0, got -5"),
        ("gate.max_regression = -5\n", "S/distill.toml:1: field 'gate.max_regression': must be at least 0, got -5"),
        ('gate = "strict"\n', "S/distill.toml:1: field 'gate': must be a table, got 'strict'"),
    ],
    ids=[
        "max-tokens-text",
        "max-tokens-zero",
        "also-string",
        "constrain-no",
        "gate-true",
        "error-rate-range",
        "regression-text",
        "regression-negative",
        "dotted-key",
        "gate-not-table",
    ],
)
def test_settings_types_and_ranges(tmp_path, settings, expected):
    assert _message(write_suite(tmp_path / "s", settings=settings)) == expected


def test_unknown_scorer_and_unknown_key_say_did_you_mean(tmp_path):
    scorer = write_suite(tmp_path / "a", settings='also = ["token_f1", "rogue_l"]\n')
    assert _message(scorer) == (
        "S/distill.toml:1: field 'also[1]': unknown scorer 'rogue_l' (did you mean 'rouge_l'?); known: "
        "binary_tool_call, exact_match, judge, normalized_exact_match, rouge_l, sql_execution, staged_tool_call, "
        "token_f1, tool_call_equivalence"
    )
    key = write_suite(tmp_path / "b", settings='scorer = "exact_match"\n\n[gate]\nmin_pass_rte = 0.5\n')
    assert _message(key) == (
        "S/distill.toml:4: field 'gate.min_pass_rte': unknown setting (did you mean "
        "'min_pass_rate'?); known: gate.max_error_rate, gate.max_regression, gate.min_pass_rate"
    )


def test_valid_settings_are_read_as_written(tmp_path):
    folder = write_suite(
        tmp_path / "s",
        settings='also = ["token_f1"]\nconstrain = false\nmax_tokens = 8\n'
        "[gate]\nmin_pass_rate = 0.5\nmax_regression = 2\n",
    )
    settings = load_suite(folder).settings
    assert (settings.also, settings.constrain, settings.max_tokens) == (["token_f1"], False, 8)
    assert (settings.min_pass_rate, settings.max_regression) == (0.5, 2)


# --- 6, 7: tools in job_description.json ----------------------------------------


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (
            _tool_job(parameters={"type": "objekt"}),
            (
                "S/job_description.json:10: field 'tools[0].function.parameters.type': tool 'set_light': parameters is not "
                "a valid JSON Schema: 'objekt' is not a JSON Schema type (object, array, string, number, integer, boolean, "
                "null)"
            ),
        ),
        (
            _tool_job(parameters={"type": "object", "required": "room"}),
            (
                "S/job_description.json:11: field 'tools[0].function.parameters.required': tool 'set_light': parameters is "
                "not a valid JSON Schema: 'room' is not of type 'array'"
            ),
        ),
        (
            {**TOOL_JOB, "tools": [{"function": "rename_file"}]},
            "S/job_description.json:5: field 'tools[0].function': must be an object, got 'rename_file'",
        ),
        (
            {**TOOL_JOB, "tools": [{"name": 7, "parameters": {}}]},
            "S/job_description.json:5: field 'tools[0].name': must be a string, got 7",
        ),
        (
            {**TOOL_JOB, "tools": [LIGHT, {"type": "function", "function": {"description": "no name"}}]},
            "S/job_description.json:31: field 'tools[1].function.name': missing",
        ),
        (
            {"task_descripton": "typo", "tools": [LIGHT]},
            "S/job_description.json:1: field 'task_description': missing (found 'task_descripton'?)",
        ),
    ],
    ids=["type-objekt", "required-string", "function-string", "name-int", "name-missing", "key-typo"],
)
def test_bad_tools_are_collection_errors_naming_the_tool(tmp_path, job, expected):
    folder = write_suite(tmp_path / "s", job=job, rows=TOOL_ROWS, config=None)
    assert _message(folder) == expected


# --- 10: SQL references -----------------------------------------------------------


def test_sql_reference_that_does_not_compile_against_its_schema(tmp_path):
    rows = [
        {"question": SCHEMA + "How many rows?", "answer": "SELECT COUNT(*) FROM t"},
        {"question": SCHEMA + "Names?", "answer": "SELECT nme FROM t"},
    ]
    folder = write_suite(
        tmp_path / "s", job={"task_description": "Write SQL."}, config=SQL_CONFIG, settings=SQL_SETTINGS, rows=rows
    )
    assert _message(folder) == (
        "S/test.jsonl:2: field 'answer': the reference SQL does not run against the schema: no such column: nme"
    )


def test_sql_question_without_a_schema(tmp_path):
    rows = [{"question": "How many rows?", "answer": "SELECT COUNT(*) FROM t"}]
    folder = write_suite(
        tmp_path / "s", job={"task_description": "Write SQL."}, config=SQL_CONFIG, settings=SQL_SETTINGS, rows=rows
    )
    assert _message(folder) == (
        "S/test.jsonl:1: field 'question': no CREATE TABLE statement in the question or "
        "context: the sql_execution scorer needs the schema there"
    )


def test_sql_reference_that_writes_is_rejected(tmp_path):
    rows = [{"question": SCHEMA + "Drop it", "answer": "DELETE FROM t"}]
    folder = write_suite(
        tmp_path / "s", job={"task_description": "Write SQL."}, config=SQL_CONFIG, settings=SQL_SETTINGS, rows=rows
    )
    assert _message(folder) == (
        "S/test.jsonl:1: field 'answer': the reference SQL is not one query: only a "
        "SELECT or WITH statement may run, got 'DELETE'"
    )


def test_sql_schema_in_the_context_column_is_found(tmp_path):
    rows = [{"question": "How many rows?", "context": SCHEMA, "answer": "SELECT COUNT(*) FROM t"}]
    folder = write_suite(
        tmp_path / "s", job={"task_description": "Write SQL."}, config=SQL_CONFIG, settings=SQL_SETTINGS, rows=rows
    )
    assert len(load_suite(folder).examples) == 1


# --- 11: reference tool calls -----------------------------------------------------


def test_reference_call_that_violates_its_tool(tmp_path):
    rows = [
        *TOOL_ROWS,
        {"question": "garage on", "answer": json.dumps({"name": "set_light", "parameters": {"room": "garage"}})},
    ]
    folder = write_suite(tmp_path / "s", job=TOOL_JOB, rows=rows, config=None)
    assert _message(folder) == (
        "S/test.jsonl:2: field 'answer': the reference call to 'set_light' does not fit "
        "its tool: parameters.room: unknown value 'garage'; known: kitchen, hall"
    )


def test_reference_call_of_the_wrong_type(tmp_path):
    rows = [
        {"question": "on", "answer": json.dumps({"name": "set_light", "parameters": {"room": "hall", "on": "yes"}})}
    ]
    folder = write_suite(tmp_path / "s", job=TOOL_JOB, rows=rows, config=None)
    assert _message(folder) == (
        "S/test.jsonl:1: field 'answer': the reference call to 'set_light' does not fit "
        "its tool: parameters.on: must be true or false, got 'yes'"
    )


# --- models.toml -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            'provider = "openai-compatible"\nmodel = "m"\nmax_concurrency = 0\n',
            "M:5: model 'local' field 'max_concurrency': must be at least 1, got 0",
        ),
        (
            'provider = "openai-compatibel"\nmodel = "m"\n',
            (
                "M:3: model 'local' field 'provider': unknown provider 'openai-compatibel' (did you mean 'openai-compatible'?);"
                " known: anthropic, gemini, llama-cpp, openai, openai-compatible, vllm, xai"
            ),
        ),
        (
            'provider = "vllm"\nmodel = "m"\nserve_args = "--dtype float32"\n',
            "M:5: model 'local' field 'serve_args': must be a list, got '--dtype float32'",
        ),
        (
            'provider = "openai-compatible"\nmodel = "m"\nbase_url = "localhost:8000"\n',
            (
                "M:5: model 'local' field 'base_url': 'localhost:8000' does not look right (expected to match "
                "^https?://[^\\s/]+)"
            ),
        ),
        (
            'provider = "openai"\nmodel = "m"\nprice_input = -1\n',
            "M:5: model 'local' field 'price_input': must be at least 0, got -1",
        ),
        (
            'provider = "openai"\nmodel = "m"\ntemprature = 0.2\n',
            "M:5: model 'local' field 'temprature': unknown setting (did you mean 'temperature'?); known: "
            + ", ".join(
                sorted(json.loads((ROOT / "pytest_distill/models/models.schema.json").read_text())["properties"])
            ),
        ),
    ],
    ids=["concurrency", "provider-typo", "serve-args-string", "base-url", "negative-price", "key-typo"],
)
def test_models_toml_entries_are_checked(tmp_path, entry, expected):
    path = tmp_path / "models.toml"
    path.write_text("# project models\n[local]\n" + entry)
    with pytest.raises(ConfigError) as info:
        Registry(path)
    assert str(info.value) == expected.replace("M:", f"{path}:")


def test_models_toml_override_of_a_built_in_needs_no_provider(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text("[gpt-5-nano]\nprice_input = 0.06\n")
    assert Registry(path).get("gpt-5-nano").price_input == 0.06


# --- lines ---------------------------------------------------------------------------


def test_line_finders():
    text = '{\n  "a": [1,\n    {"b": {"c": 2}}],\n  "d": "x"\n}'
    assert [json_line(text, p) for p in (["a", 1, "b", "c"], ["d"], ["a", 5], ["nope"])] == [3, 4, 2, 1]
    assert toml_line("x = 1\n[gate]\n# c\nmin_pass_rate = 2\n", ["gate", "min_pass_rate"]) == 4
    assert toml_line("[gate]\nmin_pass_rate = 2\n", ["gate", "max_regression"]) == 1
    assert toml_line('["qwen3-0.6b"]\nmodel = "m"\n', ["qwen3-0.6b", "model"]) == 2
    assert yaml_line("a: 1\nbase:\n  task: x\n", ["base", "task"]) == 3


def test_core_check_fills_enums_from_the_values_given():
    """core/settings.py knows no scorer or provider: the caller passes the enum values in."""
    raw = {"type": "object", "properties": {"provider": {"type": "string", "x-enum": "providers"}}}
    schema = fill_enums(raw, {"providers": ["openai", "vllm"]})
    assert "enum" not in raw["properties"]["provider"]  # a copy: the loaded file stays as read
    assert check(schema, {"provider": "vlm"}, "a table") == (
        ["provider"],
        "unknown provider 'vlm' (did you mean 'vllm'?); known: openai, vllm",
    )
    assert check(schema, [], "a table") == ([], "must be a table, got []")
    assert check(schema, {"provider": "openai"}) is None
    with pytest.raises(ValueError, match="unknown x-enum source 'providers'"):
        fill_enums(raw, {"scorers": ["exact_match"]})


# --- the real suites stay valid --------------------------------------------------------


@pytest.mark.parametrize("folder", sorted(p.name for p in (ROOT / "suites").iterdir() if p.is_dir()))
def test_shipped_suites_validate(folder):
    assert load_suite(ROOT / "suites" / folder).examples


def test_built_in_models_validate():
    registry = Registry()
    assert all(registry.get(name) for name in registry.names())


# --- end to end: one clean collection error, serial and under xdist ------------------


@pytest.mark.parametrize("workers", [SERIAL, XDIST])
@pytest.mark.parametrize(
    ("kwargs", "line"),
    [
        (
            {"settings": '[prompt]\nuser_template = "Q: {question} {nosuchcol}"\n'},
            "distill.toml:2: field 'prompt.user_template': {nosuchcol} is not a column; columns: context, question",
        ),
        (
            {"settings": "[gate]\nmin_pass_rate = true\n"},
            "distill.toml:2: field 'gate.min_pass_rate': must be a number, got true",
        ),
        (
            {"job": _tool_job(parameters={"type": "object", "required": "room"}), "rows": TOOL_ROWS, "config": None},
            (
                "job_description.json:11: field 'tools[0].function.parameters.required': tool 'set_light': "
                "parameters is not a valid JSON Schema: 'room' is not of type 'array'"
            ),
        ),
    ],
    ids=["template", "gate-true", "tool-schema"],
)
def test_bad_settings_end_to_end(pytester, workers, kwargs, line):
    write_suite(pytester.path / "suites" / "bad", **kwargs)
    result = pytester.runpytest("suites", *workers)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret != 0
    assert f"suites/bad/{line}" in output  # not fnmatch: the [0] of a field path is a glob class
    assert "Traceback" not in output and "INTERNALERROR" not in output


# --- docs/settings.md ---------------------------------------------------------------


def test_settings_docs_are_generated_from_the_schemas():
    committed = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert committed == settings_docs(), "regenerate: python -m pytest_distill.suite.schemas --docs > docs/settings.md"


def test_settings_docs_command():
    out = subprocess.run(
        [sys.executable, "-m", "pytest_distill.suite.schemas", "--docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == settings_docs() and "| `gate.min_pass_rate` | number, 0 to 1 |" in out
