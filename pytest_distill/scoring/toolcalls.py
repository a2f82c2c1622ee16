"""Tool calls: read them out of any reply, normalize them with the tool's JSON schema, compare.

Equivalence rules (docs/tool-calling.md):
- same function name;
- arguments equal after normalizing both sides with the tool's JSON schema: values are
  coerced to the schema type ("70" -> 70 for an integer, "true" -> True for a boolean),
  and a parameter left out takes its schema default, so an explicit default equals an
  omission; a parameter left out that has no default stays missing;
- key order never counts; several calls are compared as a multiset.
The predicted call is validated against the schema (after coercion): an invalid call is
a miss that quotes the validation error. Pure functions: no pytest, no I/O.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_distill.scoring.base import Score

# --- reading calls out of a reply --------------------------------------------------


@dataclass(frozen=True)
class Call:
    name: str
    parameters: dict[str, Any] | str  # a str: the model's arguments were not a JSON object

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "parameters": self.parameters}


@dataclass(frozen=True)
class Extraction:
    calls: list[Call]
    found_json: bool  # the reply held valid JSON at all (the first stage of staged scoring)
    problem: str = ""  # why there is no call, for the miss message


_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S)  # reasoning models think in JSON too
_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)  # Hermes / Qwen
_FENCE = re.compile(r"```[\w+-]*[ \t]*\n?(.*?)(?:```|$)", re.S)
_DECODER = json.JSONDecoder()


def extract_calls(reply: Any) -> Extraction:
    """Every tool call in a reply: a Completion (native tool_calls, else its text), a
    ToolCall, a JSON value (dict or list) or text. No call is a result, not an error."""
    if reply is None:
        return Extraction([], False, "empty reply")
    native = getattr(reply, "tool_calls", None)
    if native:
        calls = [_call(c.name, c.arguments) for c in native]
        return Extraction(calls, all(isinstance(c.parameters, dict) for c in calls))
    if isinstance(reply, Call):
        return Extraction([reply], isinstance(reply.parameters, dict))
    if hasattr(reply, "name") and hasattr(reply, "arguments"):  # a single ToolCall
        call = _call(reply.name, reply.arguments)
        return Extraction([call], isinstance(call.parameters, dict))
    if hasattr(reply, "text"):
        reply = reply.text
    if isinstance(reply, (dict, list)):
        calls = _calls_from_value(reply)
        return Extraction(calls, True, "" if calls else 'the JSON holds no {"name", "parameters"} call')
    if not isinstance(reply, str):
        return Extraction([], False, f"cannot read a tool call from a {type(reply).__name__}")
    return _calls_from_text(reply)


def _calls_from_text(text: str) -> Extraction:
    body = _THINK.sub("", text).strip()
    if not body:
        return Extraction([], False, "empty reply")
    # Tagged and fenced calls are explicit: take them before scanning the text.
    sources = _TAG.findall(body) or _FENCE.findall(body) or [body]
    found_json = False
    calls: list[Call] = []
    for source in sources:
        for value in _json_values(source):
            found_json = found_json or isinstance(value, (dict, list))  # a bare 70 is no structure
            calls.extend(_calls_from_value(value))
    if calls:
        return Extraction(calls, True)
    if found_json:
        return Extraction([], True, f'the JSON holds no {{"name", "parameters"}} call: {_excerpt(body)}')
    if "{" in body or "[" in body:  # e.g. a call cut off by max_tokens
        return Extraction([], False, f"invalid or unfinished JSON in the reply: {_excerpt(body)}")
    return Extraction([], False, f"no JSON in the reply: {_excerpt(body)}")


def _json_values(text: str) -> Iterable[Any]:
    """The whole text as JSON, else every JSON object or array embedded in it: the scan
    goes on after a value that holds a call, and inside one that doesn't."""
    text = text.strip()
    try:
        yield json.loads(text)
        return
    except ValueError:
        pass
    position = 0
    while True:
        starts = [i for i in (text.find("{", position), text.find("[", position)) if i >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            position = start + 1
            continue
        yield value
        position = end if _calls_from_value(value) else start + 1


def _calls_from_value(value: Any) -> list[Call]:
    if isinstance(value, list):
        return [call for item in value for call in _calls_from_value(item)]
    if not isinstance(value, dict):
        return []
    if isinstance(value.get("tool_calls"), list):  # an OpenAI message
        return _calls_from_value(value["tool_calls"])
    if isinstance(value.get("function"), dict):  # OpenAI wire format {"type": "function", "function": {...}}
        return _calls_from_value(value["function"])
    if isinstance(value.get("name"), str):
        for key in ("parameters", "arguments", "args", "input"):
            if key in value:
                return [_call(value["name"], value[key])]
        if set(value) <= {"name", "type", "id"}:  # a call without arguments
            return [_call(value["name"], {})]
        return []
    # Not a call: a wrapper such as {"function_call": {...}} may hold one.
    return [call for item in value.values() if isinstance(item, (dict, list)) for call in _calls_from_value(item)]


def _call(name: str, arguments: Any) -> Call:
    if isinstance(arguments, str):  # OpenAI sends arguments as a JSON string
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return Call(name, arguments)
        arguments = parsed
    if arguments is None:
        arguments = {}
    return Call(name, arguments if isinstance(arguments, dict) else json.dumps(arguments))


def reference_calls(expected: Any) -> list[Call]:
    """The reference answer as calls: a dict, a list of dicts, their JSON text, or Calls.

    A reference that holds no call is the caller's mistake, not the model's: ValueError."""
    if isinstance(expected, str):
        try:
            expected = json.loads(expected)
        except ValueError as exc:
            raise ValueError(f"the expected tool call is not valid JSON: {exc}") from None
    calls = extract_calls(expected).calls if not isinstance(expected, str) else []
    if not calls or any(not isinstance(c.parameters, dict) for c in calls):
        raise ValueError(f'the expected answer is not a tool call {{"name", "parameters"}}: {expected!r}')
    return calls


# --- schemas -------------------------------------------------------------------------


def tool_schemas(tools: Any) -> dict[str, dict[str, Any]] | None:
    """name -> parameters schema, from an OpenAI tools list (or bare function dicts), a
    mapping of name -> schema, or anything with a `tools` attribute (a Suite). None: no tools."""
    if tools is None:
        return None
    if hasattr(tools, "tools"):
        tools = tools.tools
    if isinstance(tools, Mapping):
        return {str(k): v or {} for k, v in tools.items()}
    schemas = {}
    for tool in tools:
        fn = tool.get("function", tool)
        schemas[fn["name"]] = fn.get("parameters") or {"type": "object", "properties": {}}
    return schemas


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    import jsonschema  # imported on first use: keeps plugin start-up fast

    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema)


def validation_errors(parameters: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every way the arguments break the schema, as `parameters.path: message`."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(parameters), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{_path(['parameters', *e.absolute_path])}: {e.message}" for e in errors]


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [k for k in kind if isinstance(k, str)]
    if "properties" in schema:
        return ["object"]
    return []


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return {
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "null": value is None,
    }.get(kind, False)


def _convert(value: Any, kind: str) -> tuple[bool, Any]:
    """(converted?, value) for one schema type. Only lossless conversions."""
    if kind in ("integer", "number") and isinstance(value, str):
        text = value.strip()
        if _INT.fullmatch(text):
            return True, int(text)
        if _FLOAT.fullmatch(text):
            number = float(text)
            if kind == "number" or number.is_integer():
                return True, number
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return True, int(value)
    if kind == "boolean" and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return True, value.strip().lower() == "true"
    if kind == "string" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return True, json.dumps(value)
    if kind == "null" and isinstance(value, str) and value.strip() == "null":
        return True, None
    if kind in ("array", "object") and isinstance(value, str):  # a JSON value sent as text
        try:
            parsed = json.loads(value)
        except ValueError:
            return False, value
        if _is_type(parsed, kind):
            return True, parsed
    return False, value


def coerce(value: Any, schema: Any) -> Any:
    """The value converted to the schema's type where that is lossless, else unchanged."""
    if not isinstance(schema, dict):
        return value
    kinds = _types(schema)
    if kinds and not any(_is_type(value, k) for k in kinds):
        for kind in kinds:
            converted, new = _convert(value, kind)
            if converted:
                value = new
                break
    if isinstance(value, float) and value.is_integer() and ("number" in kinds or "integer" in kinds):
        value = int(value)  # 70.0 and 70 are one number
    return value


def normalize(
    arguments: dict[str, Any],
    schema: dict[str, Any] | None,
    *,
    defaults: bool = True,
    filled: list[tuple[Any, ...]] | None = None,
) -> dict[str, Any]:
    """Arguments coerced to the schema's types and, with `defaults`, every missing parameter
    that has a schema default filled in (recursively, in objects that are present).
    Paths of filled values are appended to `filled`. The input is not modified."""
    normalized: dict[str, Any] = _normalize(copy.deepcopy(arguments), schema or {}, defaults, filled, ())
    return normalized


def _normalize(
    value: Any, schema: Any, defaults: bool, filled: list[tuple[Any, ...]] | None, path: tuple[Any, ...]
) -> Any:
    if not isinstance(schema, dict):
        return value
    value = coerce(value, schema)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in list(value):
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            value[key] = _normalize(value[key], sub, defaults, filled, (*path, key))
        if defaults:
            for key, sub in properties.items():
                if key not in value and isinstance(sub, dict) and "default" in sub:
                    value[key] = _normalize(copy.deepcopy(sub["default"]), sub, defaults, None, (*path, key))
                    if filled is not None:
                        filled.append((*path, key))
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            value = [_normalize(v, items, defaults, filled, (*path, i)) for i, v in enumerate(value)]
        if schema.get("uniqueItems") is True:  # a set: order carries no meaning
            value = sorted(value, key=_canonical)
    return value


def _canonical(value: Any) -> str:
    """One text per value: key order ignored, 70.0 == 70, but True != 1 and 1 != "1"."""
    return json.dumps(_integral(value), sort_keys=True, ensure_ascii=False)


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


# --- comparing -------------------------------------------------------------------


@dataclass(eq=False)  # identity: two identical calls are still two calls
class _Side:
    """One call, ready to compare."""

    call: Call
    parameters: Any  # normalized (or exact) arguments; the raw string when not an object
    problem: str = ""  # why the call is invalid, "" when valid
    filled: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return _canonical([self.call.name, self.parameters])


def _prepare(call: Call, schemas: dict[str, dict[str, Any]] | None, mode: str) -> _Side:
    """mode "equivalence": coerce, validate, fill defaults; "exact": validate only."""
    params = call.parameters
    if not isinstance(params, dict):
        return _Side(call, params, f"the arguments of {call.name} are not a JSON object: {_excerpt(str(params))}")
    if schemas is None:
        return _Side(call, normalize(params, None) if mode == "equivalence" else params)
    schema = schemas.get(call.name)
    if schema is None:
        known = ", ".join(sorted(schemas))
        return _Side(call, params, f"called '{call.name}', which is not among the tools ({known})")
    checked = normalize(params, schema, defaults=False) if mode == "equivalence" else params
    errors = validation_errors(checked, schema)
    filled: list[tuple[Any, ...]] = []
    final = normalize(params, schema, filled=filled) if mode == "equivalence" else params
    problem = f"invalid call to {call.name}: {'; '.join(errors)}" if errors else ""
    return _Side(call, final, problem, filled)


def _pair(expected: list[_Side], got: list[_Side]) -> tuple[list[tuple[_Side, _Side]], list[_Side], list[_Side]]:
    """Match calls for the explanation: identical first, then same name, then in order."""
    left, right = list(expected), list(got)
    pairs: list[tuple[_Side, _Side]] = []
    for same in (lambda a, b: a.key == b.key, lambda a, b: a.call.name == b.call.name, lambda a, b: True):
        for e in list(left):
            match = next((g for g in right if same(e, g)), None)
            if match is not None:
                pairs.append((e, match))
                left.remove(e)
                right.remove(match)
    return pairs, left, right


def _differences(e: _Side, g: _Side) -> list[str]:
    from deepdiff import DeepDiff  # only a miss needs it

    if e.call.name != g.call.name:
        unknown = f" ({g.problem})" if g.problem.startswith("called ") else ""
        return [f"function: expected {e.call.name!r}, got {g.call.name!r}{unknown or ': ' + _show_call(g)}"]
    if g.problem:
        return [g.problem]
    if not isinstance(e.parameters, dict) or not isinstance(g.parameters, dict):
        return [f"parameters: expected {_show(e.parameters)}, got {_show(g.parameters)}"]
    filled = set(e.filled)
    got_filled = set(g.filled)
    lines = []
    diff = DeepDiff(_integral(e.parameters), _integral(g.parameters), view="tree")
    for report, levels in diff.items():
        for level in levels:
            keys = tuple(level.path(output_format="list"))
            where = _path(["parameters", *keys])
            note = " (its default)" if keys in filled else ""
            if report in ("dictionary_item_removed", "iterable_item_removed"):
                lines.append(f"{where}: missing, expected {_show(level.t1)}{note}")
            elif report in ("dictionary_item_added", "iterable_item_added"):
                lines.append(f"{where}: not expected, got {_show(level.t2)}")
            else:
                got_note = " (its default)" if keys in got_filled else ""
                lines.append(f"{where}: expected {_show(level.t1)}{note}, got {_show(level.t2)}{got_note}")
    return sorted(lines) or [f"parameters differ: expected {_show(e.parameters)}, got {_show(g.parameters)}"]


def _explain(
    expected: list[_Side], pairs: list[tuple[_Side, _Side]], missing: list[_Side], extra: list[_Side], numbered: bool
) -> list[str]:
    lines: list[str] = []
    for e, g in sorted(pairs, key=lambda pair: expected.index(pair[0])):
        if e.key == g.key and not g.problem:
            continue
        prefix = f"call {expected.index(e) + 1} ({e.call.name}): " if numbered else ""
        lines.extend(prefix + line for line in _differences(e, g))
    lines.extend(f"missing call {_show_call(e)}" for e in missing)
    lines.extend(f"unexpected call {_show_call(g)}" + (f" ({g.problem})" if g.problem else "") for g in extra)
    return lines


def compare_tool_calls(expected: Any, reply: Any, tools: Any = None, *, mode: str = "equivalence") -> Score:
    """Is the reply the reference call(s)? `mode` "equivalence" normalizes with the tools'
    schemas; "exact" compares the arguments as given (types count: 70 != "70" != 70.5)."""
    schemas = tool_schemas(tools)
    exp = [_prepare(c, schemas if mode == "equivalence" else None, mode) for c in reference_calls(expected)]
    extraction = extract_calls(reply)
    shown_expected = _show_calls([s.call for s in exp])
    if not extraction.calls:
        return Score(
            False,
            0.0,
            f"no tool call: {extraction.problem}; expected {shown_expected}",
            expected=shown_expected,
            got=_excerpt(_reply_text(reply)),
            details={"found_json": extraction.found_json},
        )
    got = [_prepare(c, schemas, mode) for c in extraction.calls]
    shown_got = _show_calls([s.call for s in got])
    valid = not any(g.problem for g in got)
    same = valid and sorted(e.key for e in exp) == sorted(g.key for g in got)
    details: dict[str, Any] = {
        "expected": [{"name": s.call.name, "parameters": s.parameters} for s in exp],
        "got": [{"name": s.call.name, "parameters": s.parameters} for s in got],
    }
    if same:
        notes = [f"{_path(['parameters', *p])}={_show(_get(s.parameters, p))}" for s in exp + got for p in s.filled]
        explanation = f"equivalent: {shown_got}"
        if mode == "equivalence" and notes:
            explanation += f" (defaults: {', '.join(sorted(set(notes)))})"
        return Score(True, 1.0, explanation, expected=shown_expected, got=shown_got, details=details)
    pairs, missing, extra = _pair(exp, got)
    lines = _explain(exp, pairs, missing, extra, numbered=len(exp) > 1 or len(got) > 1)
    details["differences"] = lines
    return Score(False, 0.0, "; ".join(lines), expected=shown_expected, got=shown_got, details=details)


def tool_call_equivalence(expected: Any, reply: Any, tools: Any = None) -> Score:
    """Same function, arguments equal after schema normalization; calls as a multiset."""
    return compare_tool_calls(expected, reply, tools, mode="equivalence")


def binary_tool_call(expected: Any, reply: Any, tools: Any = None) -> Score:
    """Exact equality of name and arguments as given: no defaults, no coercion."""
    return compare_tool_calls(expected, reply, tools, mode="exact")


STAGES = (0.25, 0.5, 0.75, 1.0)  # valid JSON, right function, right parameter keys, exact


def staged_tool_call(expected: Any, reply: Any, tools: Any = None) -> Score:
    """Partial credit: 0.25 valid JSON, 0.5 right function, 0.75 right parameter keys,
    1.0 the same call (with the equivalence rules). Several calls: the mean over pairs,
    where a missing or extra call scores 0."""
    full = tool_call_equivalence(expected, reply, tools)
    if full.passed:
        return full
    schemas = tool_schemas(tools)
    extraction = extract_calls(reply)
    if not extraction.calls:
        value = STAGES[0] if extraction.found_json else 0.0
        return Score(False, value, f"stage {value:g}: {full.explanation}", full.expected, full.got, full.details)
    exp = [_prepare(c, schemas, "equivalence") for c in reference_calls(expected)]
    got = [_prepare(c, schemas, "equivalence") for c in extraction.calls]
    pairs, missing, extra = _pair(exp, got)
    stages = [_stage(e, g) for e, g in pairs] + [0.0] * (len(missing) + len(extra))
    value = sum(stages) / len(stages)
    return Score(
        False,
        value,
        f"stage {value:g}: {full.explanation}",
        full.expected,
        full.got,
        {**full.details, "stages": stages},
    )


def _stage(e: _Side, g: _Side) -> float:
    if e.call.name != g.call.name:
        return STAGES[0]
    if (
        not isinstance(g.parameters, dict)
        or not isinstance(e.parameters, dict)
        or set(e.parameters) != set(g.parameters)
    ):
        return STAGES[1]
    if e.key != g.key or g.problem:
        return STAGES[2]
    return STAGES[3]


# --- the scorers' (example, completion) form -------------------------------------------


def score_tool_call_equivalence(example: Any, completion: Any) -> Score:
    return tool_call_equivalence(example.answer, completion, example.suite.tools)


def score_binary_tool_call(example: Any, completion: Any) -> Score:
    return binary_tool_call(example.answer, completion, example.suite.tools)


def score_staged_tool_call(example: Any, completion: Any) -> Score:
    return staged_tool_call(example.answer, completion, example.suite.tools)


# --- showing values -------------------------------------------------------------------


def _path(keys: Sequence[Any]) -> str:
    out = str(keys[0])
    for key in keys[1:]:
        out += f"[{key}]" if isinstance(key, int) else f".{key}"
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_call(side: _Side) -> str:
    return _show_calls([side.call])


def _show_calls(calls: list[Call]) -> str:
    shown = []
    for call in calls:
        if isinstance(call.parameters, dict):
            args = ", ".join(f"{k}={_show(v, 60)}" for k, v in call.parameters.items())
        else:
            args = _show(call.parameters, 60)
        shown.append(f"{call.name}({args})")
    return " + ".join(shown)


def _excerpt(text: str, limit: int = 120) -> str:
    text = text.strip().replace("\n", "\\n")
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _reply_text(reply: Any) -> str:
    if hasattr(reply, "text"):
        return reply.text or ""
    return reply if isinstance(reply, str) else json.dumps(reply, default=str)
