"""Suite folders: formats, task-type inference, and every kind of bad input."""

from __future__ import annotations

import json

import pytest

from pytest_distill.core.errors import SuiteError
from pytest_distill.suite import TaskType, load_suite

from helpers.suites import TOPIC_ROWS, write_suite


def test_jsonl_classification(tmp_path):
    suite = load_suite(write_suite(tmp_path / "topics"))
    assert suite.name == "topics"
    assert suite.task_type == TaskType.CLASSIFICATION
    assert suite.task_type_source == "config.yaml base.task"
    assert [e.answer for e in suite.examples] == [a for _, a in TOPIC_ROWS]
    assert [e.row for e in suite.examples] == [1, 2, 3, 4, 5, 6]
    assert suite.examples[2].id == "0003"
    assert suite.examples[2].line == 3


def test_csv_with_index_column_multiline_fields_and_extra_columns(tmp_path):
    raw = (
        ",question,answer,reasoning\n"
        '0,"Rain, then sun.",weather,short\n'
        '1,"A recipe:\nmix, bake, ""enjoy""",food,two lines\n'
        "2,The drummer was great,music,\n"
    )
    suite = load_suite(write_suite(tmp_path / "s", fmt="csv", raw_test=raw))
    assert [e.question for e in suite.examples] == [
        "Rain, then sun.",
        'A recipe:\nmix, bake, "enjoy"',
        "The drummer was great",
    ]
    assert [e.line for e in suite.examples] == [2, 3, 5]
    assert suite.examples[0].fields["reasoning"] == "short"
    assert "" not in suite.examples[0].fields  # the unnamed index column is dropped


def test_answers_as_json_strings_and_objects(tmp_path):
    rows = [{"question": "q1", "answer": '"sports"'}, {"question": "q2", "answer": {"label": "food"}}]
    suite = load_suite(write_suite(tmp_path / "s", rows=rows))
    assert [e.answer for e in suite.examples] == ["sports", "food"]


@pytest.mark.parametrize(
    ("job", "rows", "expected"),
    [
        (
            {"task_description": "t", "classes_description": {"a": "A"}},
            [{"question": "q", "answer": "a"}],
            TaskType.CLASSIFICATION,
        ),
        (
            {"task_description": "t", "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            [{"question": "q", "answer": '{"name": "f", "parameters": {}}'}],
            TaskType.TOOL_CALLING,
        ),
        (
            {"task_description": "t", "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            [{"question": json.dumps([{"role": "user", "content": "q"}]), "answer": '{"name": "f", "parameters": {}}'}],
            TaskType.MULTI_TURN_TOOL_CALLING,
        ),
        ({"task_description": "t"}, [{"question": "q", "answer": "a", "context": "c"}], TaskType.QA_OPEN_BOOK),
        ({"task_description": "t"}, [{"question": "q", "answer": "a"}], TaskType.QUESTION_ANSWERING),
    ],
)
def test_task_type_inferred_without_config(tmp_path, job, rows, expected):
    suite = load_suite(write_suite(tmp_path / "s", job=job, rows=rows, config=None))
    assert suite.task_type == expected
    assert suite.task_type_source.startswith("inferred")


def test_config_json_is_read(tmp_path):
    folder = write_suite(tmp_path / "s", config=None)
    (folder / "config.json").write_text('{"base": {"task": "question-answering"}}')
    assert load_suite(folder).task_type == TaskType.QUESTION_ANSWERING


def _error(folder) -> SuiteError:
    with pytest.raises(SuiteError) as info:
        load_suite(folder)
    return info.value


def test_empty_test_file(tmp_path):
    err = _error(write_suite(tmp_path / "s", raw_test=""))
    assert err.path.name == "test.jsonl" and "no examples" in str(err)


def test_malformed_json_names_the_line(tmp_path):
    raw = '{"question": "q1", "answer": "food"}\n{"question": "q2", "answer": \n'
    err = _error(write_suite(tmp_path / "s", raw_test=raw))
    assert err.line == 2 and "malformed JSON" in str(err) and "test.jsonl:2" in str(err)


def test_missing_answer_column_in_csv(tmp_path):
    err = _error(write_suite(tmp_path / "s", fmt="csv", raw_test="question,label\nhello,food\n"))
    assert err.field == "answer" and err.line == 2
    assert "columns present: question, label" in str(err)


def test_missing_field_in_jsonl(tmp_path):
    err = _error(write_suite(tmp_path / "s", raw_test='{"question": "q"}\n'))
    assert (err.line, err.field) == (1, "answer")


def test_empty_question(tmp_path):
    err = _error(write_suite(tmp_path / "s", rows=[{"question": "  ", "answer": "food"}]))
    assert (err.line, err.field) == (1, "question") and "empty" in str(err)


def test_answer_not_among_classes_suggests_the_closest(tmp_path):
    rows = [{"question": "q1", "answer": "food"}, {"question": "q2", "answer": "wether"}]
    err = _error(write_suite(tmp_path / "s", rows=rows))
    assert (err.line, err.field) == (2, "answer")
    assert "'wether' is not one of the 4 classes" in str(err) and "did you mean 'weather'" in str(err)


def test_duplicate_rows(tmp_path):
    rows = [
        {"question": "same", "answer": "food"},
        {"question": "other", "answer": "food"},
        {"question": "same", "answer": "food"},
    ]
    err = _error(write_suite(tmp_path / "s", rows=rows))
    assert err.line == 3 and "same question and answer as line 1" in str(err)


def test_duplicate_question_with_another_answer(tmp_path):
    rows = [{"question": "same", "answer": "food"}, {"question": "same", "answer": "music"}]
    err = _error(write_suite(tmp_path / "s", rows=rows))
    assert err.line == 2 and "different answer than line 1" in str(err)


def test_invalid_utf8_names_the_line(tmp_path):
    raw = b'{"question": "ok", "answer": "food"}\n{"question": "caf\xe9", "answer": "food"}\n'
    err = _error(write_suite(tmp_path / "s", raw_test=raw))
    assert err.line == 2 and "invalid UTF-8" in str(err)


def test_unreadable_job_description(tmp_path):
    folder = write_suite(tmp_path / "s")
    (folder / "job_description.json").write_text('{"task_description": "x",\n  "classes_description": {,}\n}')
    err = _error(folder)
    assert err.path.name == "job_description.json" and err.line == 2


def test_job_description_without_task_description(tmp_path):
    err = _error(write_suite(tmp_path / "s", job={"classes_description": {"a": "b"}}))
    assert err.field == "task_description"


def test_unknown_task_type(tmp_path):
    err = _error(write_suite(tmp_path / "s", config="base:\n  task: summarisation\n"))
    assert err.field == "base.task" and "unknown task type 'summarisation'" in str(err)


def test_csv_row_with_too_many_fields(tmp_path):
    err = _error(write_suite(tmp_path / "s", fmt="csv", raw_test="question,answer\na,food\nb,food,extra\n"))
    assert err.line == 3 and "3 fields" in str(err)


def test_no_test_file(tmp_path):
    folder = write_suite(tmp_path / "s")
    (folder / "test.jsonl").unlink()
    assert "no test file" in str(_error(folder))


def test_unknown_setting_in_distill_toml(tmp_path):
    err = _error(write_suite(tmp_path / "s", settings="[gate]\nmin_pass=0.5\n"))
    assert err.path.name == "distill.toml" and err.field == "gate.min_pass"


def test_gate_out_of_range(tmp_path):
    err = _error(write_suite(tmp_path / "s", settings="[gate]\nmin_pass_rate = 90\n"))
    assert err.field == "gate.min_pass_rate"


def test_multi_turn_question_must_end_with_user(tmp_path):
    job = {"task_description": "t", "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}
    question = json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}])
    err = _error(
        write_suite(
            tmp_path / "s",
            job=job,
            config="base:\n  task: multi-turn-tool-calling-closed-book\n",
            rows=[{"question": question, "answer": '{"name": "f", "parameters": {}}'}],
        )
    )
    assert err.field == "question" and "last message" in str(err)
