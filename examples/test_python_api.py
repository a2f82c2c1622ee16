"""Hand-written tests with pytest-distill's Python API (docs/python-api.md).

Run from the repository root, on the embedded model (or any --model):

    pytest examples/test_python_api.py --model smollm2-135m

Each test is one kind of check a team writes beside its suites. On a 135M-parameter model
some of them miss (a wrong answer, reported as FAILED and counted as a miss); none of them
errors unless the model or the judge fails.
"""

from pytest_distill import (
    Completion,
    OutputConstraint,
    ToolCall,
    assert_exact_match,
    assert_judged,
    assert_tool_call_equivalent,
    examples,
)

YES_NO = ("yes", "no")


def test_one_tricky_prompt(distill_model):
    """A regression test for one prompt, on a model named in the test (any models.toml entry)."""
    model = distill_model("smollm2-135m")
    reply = model.respond(
        "Is Paris the capital of France? Answer yes or no.",
        max_tokens=16,  # room for the JSON a constrained provider may wrap the label in
        constraint=OutputConstraint(kind="choice", choices=YES_NO),
    )
    assert_exact_match(reply, "yes", labels=YES_NO)


def test_free_text_judged(distill_model):
    """A free-text answer graded by the run's judge (--judge; the embedded model by default)."""
    reply = distill_model("smollm2-135m").respond("What is the capital of France? Answer in one word.", max_tokens=8)
    assert_judged(reply, question="What is the capital of France?", reference="Paris")


def test_every_model_answers(distill_model, distill_model_name):
    """Once per --model: a property every model's answer must have."""
    reply = distill_model(distill_model_name).respond("Say hello.", max_tokens=8)
    assert reply.usage.output_tokens > 0


@examples("suites/trec", limit=1)
def test_question_type(distill_model, distill_example):
    """A suite's examples x --model, scored with the classification rules."""
    reply = distill_model.respond(distill_example)
    assert_exact_match(reply, distill_example.answer, labels=distill_example.suite.classes)


@examples("suites/smart-home", limit=1)
def test_smart_home_call(distill_model, distill_example):
    """Tool calls compared with the equivalence rules (defaults, types, order of calls)."""
    reply = distill_model.respond(distill_example)
    assert_tool_call_equivalent(reply, distill_example.answer, tools=distill_example.suite.tools)


def test_a_reply_you_already_have():
    """The assertions need no model: here a recorded reply, and a plain assert that pytest
    explains with the equivalence scorer's words when it fails."""
    reply = Completion(text="", tool_calls=[ToolCall("toggle_lights", {"room": "kitchen", "state": "on"})])
    expected = {"name": "toggle_lights", "parameters": {"room": "kitchen", "state": "on"}}
    assert_tool_call_equivalent(reply, expected)
    assert reply.tool_calls[0] == ToolCall("toggle_lights", {"room": "kitchen", "state": "on"})
