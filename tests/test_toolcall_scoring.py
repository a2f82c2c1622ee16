"""Tool-call scoring: reading calls out of replies, every normalization rule and its
negative, the three scorers, schema validation, miss messages, and properties."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_distill.models.base import Completion, ToolCall
from pytest_distill.scoring.toolcalls import (
    Call,
    binary_tool_call,
    extract_calls,
    normalize,
    reference_calls,
    staged_tool_call,
    tool_call_equivalence,
)


def _fn(name: str, properties: dict, required: list[str] = ()) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": name,
            "parameters": {"type": "object", "properties": properties, "required": list(required)},
        },
    }


TOOLS = [
    _fn(
        "set_thermostat",
        {
            "temperature": {"type": "integer", "minimum": 60, "maximum": 85},
            "mode": {"type": "string", "enum": ["heat", "cool", "auto"], "default": "auto"},
        },
        ["temperature"],
    ),
    _fn(
        "search",
        {
            "query": {"type": "string"},
            "limit": {"type": "integer", "default": 10},
            "exact": {"type": "boolean", "default": False},
            "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "rooms": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "filter": {
                "type": "object",
                "properties": {
                    "lang": {"type": "string", "default": "en"},
                    "year": {"type": "integer"},
                },
            },
            "note": {"type": ["string", "null"]},
        },
        ["query"],
    ),
    _fn("ping", {}),
]


def call(name: str, **parameters) -> dict:
    return {"name": name, "parameters": parameters}


def text(name: str, **parameters) -> str:
    return json.dumps({"name": name, "arguments": parameters})


# --- reading calls out of replies -------------------------------------------------------

KITCHEN = Call("toggle", {"room": "kitchen"})

EXTRACTION = [
    ("native tool_calls", Completion(text="", tool_calls=[ToolCall("toggle", {"room": "kitchen"})]), [KITCHEN]),
    (
        "native, arguments as a JSON string",
        Completion(text="", tool_calls=[ToolCall("toggle", '{"room": "kitchen"}')]),
        [KITCHEN],
    ),
    ("JSON text with parameters", '{"name": "toggle", "parameters": {"room": "kitchen"}}', [KITCHEN]),
    ("JSON text with arguments", '{"name": "toggle", "arguments": {"room": "kitchen"}}', [KITCHEN]),
    (
        "arguments as a JSON string in text",
        json.dumps({"name": "toggle", "arguments": '{"room": "kitchen"}'}),
        [KITCHEN],
    ),
    (
        "OpenAI wire format",
        json.dumps({"type": "function", "function": {"name": "toggle", "arguments": '{"room": "kitchen"}'}}),
        [KITCHEN],
    ),
    (
        "an assistant message",
        json.dumps(
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "1", "type": "function", "function": {"name": "toggle", "arguments": '{"room": "kitchen"}'}}
                ],
            }
        ),
        [KITCHEN],
    ),
    (
        "fenced code block",
        'Here you go:\n```json\n{"name": "toggle", "parameters": {"room": "kitchen"}}\n```\nDone.',
        [KITCHEN],
    ),
    ("unterminated fence", '```\n{"name": "toggle", "parameters": {"room": "kitchen"}}', [KITCHEN]),
    ("Hermes/Qwen tags", '<tool_call>\n{"name": "toggle", "arguments": {"room": "kitchen"}}\n</tool_call>', [KITCHEN]),
    (
        "two tags",
        '<tool_call>{"name": "toggle", "arguments": {"room": "kitchen"}}</tool_call>\n'
        '<tool_call>{"name": "ping", "arguments": {}}</tool_call>',
        [KITCHEN, Call("ping", {})],
    ),
    (
        "thinking first",
        '<think>maybe {"name": "ping", "arguments": {}}?</think>\n'
        '<tool_call>{"name": "toggle", "arguments": {"room": "kitchen"}}</tool_call>',
        [KITCHEN],
    ),
    ("prose around JSON", 'Sure! {"name": "toggle", "parameters": {"room": "kitchen"}} should do it.', [KITCHEN]),
    ("a wrapper object", '{"function_call": {"name": "toggle", "arguments": {"room": "kitchen"}}}', [KITCHEN]),
    (
        "JSON lines",
        '{"name": "toggle", "parameters": {"room": "kitchen"}}\n{"name": "ping", "parameters": {}}',
        [KITCHEN, Call("ping", {})],
    ),
    (
        "a list of calls",
        '[{"name": "toggle", "parameters": {"room": "kitchen"}}, {"name": "ping"}]',
        [KITCHEN, Call("ping", {})],
    ),
    ("a dict", {"name": "toggle", "parameters": {"room": "kitchen"}}, [KITCHEN]),
    ("a ToolCall", ToolCall("toggle", {"room": "kitchen"}), [KITCHEN]),
    (
        "arguments that are not JSON",
        Completion(text="", tool_calls=[ToolCall("toggle", "{room: kitchen")]),
        [Call("toggle", "{room: kitchen")],
    ),
    ("no call: prose", "I turned on the kitchen lights.", []),
    ("no call: JSON that is not a call", '{"room": "kitchen"}', []),
    ("no call: empty", "", []),
    ("no call: None", None, []),
]


@pytest.mark.parametrize(("reply", "calls"), [c[1:] for c in EXTRACTION], ids=[c[0] for c in EXTRACTION])
def test_extract_calls(reply, calls):
    assert extract_calls(reply).calls == calls


def test_no_call_says_why_and_whether_there_was_json():
    prose = extract_calls("I turned on the lights.")
    assert not prose.found_json and "no JSON in the reply" in prose.problem
    not_a_call = extract_calls('{"room": "kitchen"}')
    assert not_a_call.found_json and "holds no" in not_a_call.problem
    assert not extract_calls("70").found_json  # a bare number is no structure
    cut = extract_calls('{"name": "set_thermostat", "parameters": {"temperature": 7')
    assert not cut.calls and "invalid or unfinished JSON" in cut.problem


# --- every normalization rule, and its negative -------------------------------------------

RULES = [
    # (rule, expected, reply, equivalent?)
    ("identical", call("set_thermostat", temperature=70), text("set_thermostat", temperature=70), True),
    (
        "key order ignored",
        call("search", query="q", limit=5),
        '{"name": "search", "arguments": {"limit": 5, "query": "q"}}',
        True,
    ),
    (
        "omitted default equals explicit default",
        call("set_thermostat", temperature=70),
        text("set_thermostat", temperature=70, mode="auto"),
        True,
    ),
    (
        "explicit default equals omitted default",
        call("set_thermostat", temperature=70, mode="auto"),
        text("set_thermostat", temperature=70),
        True,
    ),
    (
        "omitted default != another value",
        call("set_thermostat", temperature=70),
        text("set_thermostat", temperature=70, mode="heat"),
        False,
    ),
    ("omitted without default != given", call("search", query="q", tags=["a"]), text("search", query="q"), False),
    ("given != omitted without default", call("search", query="q"), text("search", query="q", score=0.5), False),
    ("integer from a string", call("set_thermostat", temperature=70), text("set_thermostat", temperature="70"), True),
    (
        "integer from an integral float",
        call("set_thermostat", temperature=70),
        text("set_thermostat", temperature=70.0),
        True,
    ),
    (
        "integer from an integral float string",
        call("set_thermostat", temperature=70),
        text("set_thermostat", temperature="70.0"),
        True,
    ),
    (
        "integer: not from a fraction",
        call("set_thermostat", temperature=70),
        text("set_thermostat", temperature=70.5),
        False,
    ),
    (
        "integer: not from words",
        call("set_thermostat", temperature=70),
        text("set_thermostat", temperature="seventy"),
        False,
    ),
    ("integer: not from a boolean", call("search", query="q", limit=1), text("search", query="q", limit=True), False),
    (
        "integer: a different number",
        call("set_thermostat", temperature=70),
        text("set_thermostat", temperature=71),
        False,
    ),
    ("boolean from 'true'", call("search", query="q", exact=True), text("search", query="q", exact="true"), True),
    (
        "boolean from 'False' equals the default",
        call("search", query="q"),
        text("search", query="q", exact="False"),
        True,
    ),
    ("boolean: not from 1", call("search", query="q", exact=True), text("search", query="q", exact=1), False),
    ("boolean: not from 'yes'", call("search", query="q", exact=True), text("search", query="q", exact="yes"), False),
    ("number from a string", call("search", query="q", score=0.5), text("search", query="q", score="0.5"), True),
    ("number: 1 equals 1.0", call("search", query="q", score=1), text("search", query="q", score=1.0), True),
    ("number: 0.5 != 0.25", call("search", query="q", score=0.5), text("search", query="q", score=0.25), False),
    ("string from a number", call("search", query="2024"), text("search", query=2024), True),
    (
        "string: case counts",
        call("set_thermostat", temperature=70, mode="heat"),
        text("set_thermostat", temperature=70, mode="Heat"),
        False,
    ),
    ("string: whitespace counts", call("search", query="q"), text("search", query="q "), False),
    (
        "array order counts",
        call("search", query="q", tags=["a", "b"]),
        text("search", query="q", tags=["b", "a"]),
        False,
    ),
    (
        "uniqueItems array: order ignored",
        call("search", query="q", rooms=["a", "b"]),
        text("search", query="q", rooms=["b", "a"]),
        True,
    ),
    (
        "array from a JSON string",
        call("search", query="q", tags=["a", "b"]),
        text("search", query="q", tags='["a", "b"]'),
        True,
    ),
    (
        "nested default filled",
        call("search", query="q", filter={"year": 2020}),
        text("search", query="q", filter={"year": "2020", "lang": "en"}),
        True,
    ),
    (
        "nested default != another value",
        call("search", query="q", filter={"year": 2020}),
        text("search", query="q", filter={"year": 2020, "lang": "fr"}),
        False,
    ),
    ("an absent object is not an empty one", call("search", query="q"), text("search", query="q", filter={}), False),
    (
        "object from a JSON string",
        call("search", query="q", filter={"year": 2020}),
        text("search", query="q", filter='{"year": 2020}'),
        True,
    ),
    ("type list: null", call("search", query="q", note=None), text("search", query="q", note=None), True),
    ("type list: null != 'none'", call("search", query="q", note=None), text("search", query="q", note="none"), False),
    (
        "extra parameter",
        call("set_thermostat", temperature=70),
        text("set_thermostat", temperature=70, fan=True),
        False,
    ),
    ("other function", call("set_thermostat", temperature=70), text("search", query="70"), False),
    ("unknown function", call("ping"), text("pong"), False),
    ("required parameter missing", call("set_thermostat", temperature=70), text("set_thermostat"), False),
    ("schema bound broken", call("set_thermostat", temperature=70), text("set_thermostat", temperature=700), False),
    ("no arguments at all", call("ping"), '{"name": "ping"}', True),
    (
        "calls as a multiset: order ignored",
        [call("ping"), call("set_thermostat", temperature=70)],
        "\n".join([text("set_thermostat", temperature=70), text("ping")]),
        True,
    ),
    ("calls as a multiset: counts matter", [call("ping"), call("ping")], text("ping"), False),
    ("calls as a multiset: no extra call", [call("ping")], "\n".join([text("ping"), text("ping")]), False),
    ("garbage", call("ping"), "beep boop", False),
]


@pytest.mark.parametrize(("expected", "reply", "equivalent"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_equivalence_rules(expected, reply, equivalent):
    score = tool_call_equivalence(expected, reply, TOOLS)
    assert score.passed is equivalent, score.explanation
    assert score.value == (1.0 if equivalent else 0.0)
    assert score.explanation


def test_every_rule_has_a_positive_and_a_negative():
    outcomes = {rule.split(":")[0].split(" from ")[0].split(" ")[0]: set() for rule, *_ in RULES}
    for rule, _, _, equivalent in RULES:
        outcomes[rule.split(":")[0].split(" from ")[0].split(" ")[0]].add(equivalent)
    for family in ("integer", "boolean", "number", "string", "array", "nested", "omitted", "calls", "type"):
        assert outcomes.get(family) == {True, False}, family


# --- miss messages ----------------------------------------------------------------------

MESSAGES = [
    (
        call("search", query="bathroom"),
        text("search", query="bedroom"),
        "parameters.query: expected 'bathroom', got 'bedroom'",
    ),
    (
        call("set_thermostat", temperature=70),
        text("set_thermostat", temperature=70, mode="heat"),
        "parameters.mode: expected 'auto' (its default), got 'heat'",
    ),
    (
        call("search", query="q", exact=True),
        text("search", query="q"),
        "parameters.exact: expected True, got False (its default)",
    ),
    (call("search", query="q", tags=["a"]), text("search", query="q"), "parameters.tags: missing, expected ['a']"),
    (call("search", query="q"), text("search", query="q", score=0.5), "parameters.score: not expected, got 0.5"),
    (
        call("search", query="q", filter={"year": 2020}),
        text("search", query="q", filter={"year": 2021}),
        "parameters.filter.year: expected 2020, got 2021",
    ),
    (
        call("search", query="q", tags=["a", "b"]),
        text("search", query="q", tags=["a", "c"]),
        "parameters.tags[1]: expected 'b', got 'c'",
    ),
    (
        call("set_thermostat", temperature=70),
        text("set_thermostat", temperature=700),
        "invalid call to set_thermostat: parameters.temperature: 700 is greater than the maximum of 85",
    ),
    (
        call("set_thermostat", temperature=70),
        text("set_thermostat", temperature="warm"),
        "invalid call to set_thermostat: parameters.temperature: 'warm' is not of type 'integer'",
    ),
    (
        call("set_thermostat", temperature=70),
        text("set_thermostat"),
        "invalid call to set_thermostat: parameters: 'temperature' is a required property",
    ),
    (call("ping"), text("search", query="x"), "function: expected 'ping', got 'search': search(query='x')"),
    (
        call("ping"),
        text("pong"),
        "function: expected 'ping', got 'pong' (called 'pong', which is not among the tools (ping, search, set_thermostat))",
    ),
    (
        call("ping"),
        Completion(text="", tool_calls=[ToolCall("ping", "{oops")]),
        "the arguments of ping are not a JSON object: '{oops'",
    ),
    (call("ping"), "beep boop", "no tool call: no JSON in the reply: 'beep boop'; expected ping()"),
    (
        [call("ping"), call("set_thermostat", temperature=70)],
        "\n".join([text("ping"), text("set_thermostat", temperature=71)]),
        "call 2 (set_thermostat): parameters.temperature: expected 70, got 71",
    ),
    ([call("ping"), call("ping")], text("ping"), "missing call ping()"),
    (
        [call("ping")],
        "\n".join([text("ping"), text("set_thermostat", temperature=70)]),
        "unexpected call set_thermostat(temperature=70)",
    ),
]


@pytest.mark.parametrize(("expected", "reply", "message"), MESSAGES)
def test_a_miss_says_exactly_what_differs(expected, reply, message):
    score = tool_call_equivalence(expected, reply, TOOLS)
    assert not score.passed
    assert score.explanation == message


def test_a_pass_names_the_defaults_it_used():
    score = tool_call_equivalence(
        call("set_thermostat", temperature=70), text("set_thermostat", temperature="70"), TOOLS
    )
    assert score.passed
    assert score.explanation == "equivalent: set_thermostat(temperature='70') (defaults: parameters.mode='auto')"


def test_without_tools_there_are_no_defaults_and_no_coercion():
    assert not tool_call_equivalence(
        call("set_thermostat", temperature=70), text("set_thermostat", temperature=70, mode="auto")
    ).passed
    assert not tool_call_equivalence(
        call("set_thermostat", temperature=70), text("set_thermostat", temperature="70")
    ).passed
    assert tool_call_equivalence(
        call("set_thermostat", temperature=70), text("set_thermostat", temperature=70.0)
    ).passed


def test_a_reference_that_is_not_a_call_is_the_callers_mistake():
    with pytest.raises(ValueError, match="not valid JSON"):
        tool_call_equivalence("{nope", text("ping"), TOOLS)
    with pytest.raises(ValueError, match="not a tool call"):
        reference_calls({"room": "kitchen"})
    assert reference_calls('{"name": "ping", "parameters": {}}') == [Call("ping", {})]


def test_normalize_does_not_modify_its_input():
    arguments = {"query": "q", "filter": {"year": "2020"}}
    normalize(arguments, TOOLS[1]["function"]["parameters"])
    assert arguments == {"query": "q", "filter": {"year": "2020"}}


# --- binary and staged scorers ------------------------------------------------------------

BINARY = [
    ("identical", call("set_thermostat", temperature=70), text("set_thermostat", temperature=70), True),
    (
        "key order ignored",
        call("search", query="q", limit=5),
        '{"name": "search", "parameters": {"limit": 5, "query": "q"}}',
        True,
    ),
    ("no defaults", call("set_thermostat", temperature=70), text("set_thermostat", temperature=70, mode="auto"), False),
    ("no coercion", call("set_thermostat", temperature=70), text("set_thermostat", temperature="70"), False),
    (
        "70.0 is 70, as in Python",
        call("set_thermostat", temperature=70),
        text("set_thermostat", temperature=70.0),
        True,
    ),
    ("true is not 1", call("search", query="q", exact=True), text("search", query="q", exact=1), False),
    ("native call", call("ping"), Completion(text="", tool_calls=[ToolCall("ping", "{}")]), True),
    ("other function", call("ping"), text("search", query="q"), False),
    (
        "invalid against the schema",
        call("set_thermostat", temperature=700),
        text("set_thermostat", temperature=700),
        False,
    ),
]


@pytest.mark.parametrize(("expected", "reply", "passed"), [b[1:] for b in BINARY], ids=[b[0] for b in BINARY])
def test_binary_tool_call(expected, reply, passed):
    score = binary_tool_call(expected, reply, TOOLS)
    assert score.passed is passed, score.explanation
    assert score.value == float(passed)


STAGED = [
    ("prose", "no idea", 0.0),
    ("JSON, no call", '{"temperature": 70}', 0.25),
    ("wrong function", text("search", query="q"), 0.25),
    ("right function, wrong keys", text("set_thermostat", temperature=70, fan=True), 0.5),
    ("right keys, wrong value", text("set_thermostat", temperature=71), 0.75),
    ("right keys, invalid value", text("set_thermostat", temperature=700), 0.75),
    ("exact", text("set_thermostat", temperature="70", mode="auto"), 1.0),
]


@pytest.mark.parametrize(("reply", "value"), [s[1:] for s in STAGED], ids=[s[0] for s in STAGED])
def test_staged_tool_call(reply, value):
    score = staged_tool_call(call("set_thermostat", temperature=70), reply, TOOLS)
    assert score.value == value, score.explanation
    assert score.passed is (value == 1.0)


def test_staged_averages_over_several_calls():
    score = staged_tool_call(
        [call("ping"), call("set_thermostat", temperature=70)],
        "\n".join([text("ping"), text("set_thermostat", temperature=71)]),
        TOOLS,
    )
    assert score.value == (1.0 + 0.75) / 2
    assert staged_tool_call([call("ping")], "\n".join([text("ping"), text("ping")]), TOOLS).value == 0.5


# --- properties --------------------------------------------------------------------------

SEARCH = TOOLS[1]["function"]["parameters"]


def _integer(values):
    return values.flatmap(lambda n: st.sampled_from([n, str(n), float(n)]))


_arguments = st.fixed_dictionaries(
    {"query": st.text(max_size=5)},
    optional={
        "limit": _integer(st.integers(-5, 20)),
        "exact": st.booleans().flatmap(lambda b: st.sampled_from([b, str(b).lower()])),
        "score": st.sampled_from([0.5, "0.5", 1, 1.0, "1", 2.25]),
        "tags": st.lists(st.sampled_from("abc"), max_size=3),
        "rooms": st.lists(st.sampled_from("abc"), max_size=3, unique=True),
        "filter": st.fixed_dictionaries(
            {}, optional={"lang": st.sampled_from(["en", "fr"]), "year": _integer(st.integers(1990, 1995))}
        ),
        "note": st.sampled_from([None, "x"]),
    },
)


@settings(max_examples=200, deadline=None)
@given(_arguments, _arguments)
def test_equivalence_is_symmetric(a, b):
    forward = tool_call_equivalence(call("search", **a), text("search", **b), TOOLS)
    backward = tool_call_equivalence(call("search", **b), text("search", **a), TOOLS)
    assert forward.passed == backward.passed


@settings(max_examples=200, deadline=None)
@given(_arguments)
def test_filling_defaults_is_idempotent_and_keeps_equivalence(a):
    once = normalize(a, SEARCH)
    assert normalize(once, SEARCH) == once
    assert tool_call_equivalence(call("search", **a), text("search", **once), TOOLS).passed
    assert tool_call_equivalence(call("search", **once), text("search", **a), TOOLS).passed


@settings(max_examples=200, deadline=None)
@given(_arguments)
def test_a_call_is_equivalent_to_itself_in_any_reply_format(a):
    native = Completion(text="", tool_calls=[ToolCall("search", json.dumps(a))])
    tagged = f"<tool_call>{text('search', **a)}</tool_call>"
    for reply in (native, tagged, {"name": "search", "parameters": a}):
        assert tool_call_equivalence(call("search", **a), reply, TOOLS).passed


def test_comparison_is_fast():
    expected = call("search", query="q", filter={"year": 2020}, rooms=["b", "a"])
    reply = text("search", query="q", filter={"year": "2020", "lang": "en"}, rooms=["a", "b"], limit="10")
    tool_call_equivalence(expected, reply, TOOLS)  # warm the validator cache
    started = time.perf_counter()
    for _ in range(500):
        assert tool_call_equivalence(expected, reply, TOOLS).passed
    assert (time.perf_counter() - started) / 500 < 0.005  # measured ~0.15 ms on 2 cores
