"""The one interface every provider implements: a Request in, a Completion out.

Providers know nothing about suites or pytest. Messages use the OpenAI chat format
(role/content/tool_calls/tool_call_id) because every provider can map from it.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from pytest_distill.core import redact


@dataclass(frozen=True)
class OutputConstraint:
    """What the reply must look like, when the provider can enforce it.

    kind "choice": one of `choices` (classification labels);
    kind "json_schema": a JSON value matching `schema`.
    """

    kind: Literal["choice", "json_schema"]
    choices: tuple[str, ...] = ()
    schema: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "choices": list(self.choices), "schema": self.schema}


@dataclass(frozen=True)
class Request:
    """A provider-neutral chat request."""

    messages: tuple[dict[str, Any], ...]
    system: str | None = None
    tools: tuple[dict[str, Any], ...] = ()  # OpenAI "function" tool format
    tool_choice: Literal["auto", "required", "none"] | None = None
    constraint: OutputConstraint | None = None
    temperature: float | None = None  # None: the provider's default
    max_tokens: int = 256
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # provider-specific body fields

    def with_params(self, **changes: Any) -> Request:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A canonical, JSON-serialisable form: used in cache keys and reports."""
        return {
            "system": self.system,
            "messages": list(self.messages),
            "tools": list(self.tools),
            "tool_choice": self.tool_choice,
            "constraint": self.constraint.to_dict() if self.constraint else None,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "extra": self.extra,
        }


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any] | str  # a str when the model's arguments were not valid JSON

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass
class Completion:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    finish_reason: str = "stop"
    cached: bool = False  # served from the response cache: excluded from latency figures
    constrained: str | None = None  # which output constraint the provider applied, if any
    model: str = ""  # the model id the provider reported
    finished_at: float = 0.0  # wall-clock time the answer arrived (for throughput)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "tool_calls": [c.to_dict() for c in self.tool_calls],
            "usage": vars(self.usage).copy(),
            "latency_s": self.latency_s,
            "finish_reason": self.finish_reason,
            "cached": self.cached,
            "constrained": self.constrained,
            "model": self.model,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        return cls(
            text=data["text"],
            tool_calls=[ToolCall(c["name"], c["arguments"]) for c in data.get("tool_calls", [])],
            usage=Usage(**data.get("usage", {})),
            latency_s=data.get("latency_s", 0.0),
            finish_reason=data.get("finish_reason", "stop"),
            cached=data.get("cached", False),
            constrained=data.get("constrained"),
            model=data.get("model", ""),
            finished_at=data.get("finished_at", 0.0),
        )


class ProviderError(Exception):
    """A request that failed for a reason other than the model's answer.

    `retryable` and `retry_after` are the provider's decision (it knows its SDK's
    exceptions); the engine only carries it out. The message has every registered
    secret taken out (core.redact): it is written to the terminal, JUnit and reports.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(redact.text(message))
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class WireRequest(NamedTuple):
    """A request in one API's wire form: the keyword arguments its SDK call takes, and
    which output constraint (if any) the provider applied, for parse_reply and reports.

    A NamedTuple so `body, mode = provider.build_body(request)` reads naturally."""

    body: dict[str, Any]
    mode: str | None = None


@dataclass(frozen=True)
class StreamTiming:
    """One streamed request, as the load benchmark measures it."""

    latency_s: float
    ttft_s: float | None  # seconds to the first content or tool-call delta; None: none came
    output_tokens: int  # as the server reported, else the number of content chunks


class Provider(abc.ABC):
    """One model behind one API: a Request in, a Completion out.

    The contract (every method is declared here, nothing is probed with hasattr):
    - complete(request): send one request; raise ProviderError for anything that is not
      an answer (transport failures, HTTP errors, malformed or empty replies).
    - build_body(request) -> WireRequest, parse_reply(raw, latency_s, mode, request) ->
      Completion, map_error(exc) -> ProviderError: the three steps of complete(), for
      providers with a wire format; the load benchmark builds bodies with them.
    - supports_streaming / stream(request) -> StreamTiming: time to first token, where
      the API streams.
    - check(), start(), close(), describe().
    """

    #: how many requests this provider can usefully have in flight at once
    max_concurrency: int = 8
    #: whether stream() is implemented (the load benchmark measures TTFT with it)
    supports_streaming: bool = False

    def __init__(self, entry: Any) -> None:
        self.entry = entry  # the registry's ModelEntry

    @abc.abstractmethod
    async def complete(self, request: Request) -> Completion:
        """Send one request. Raise ProviderError for anything that is not an answer."""

    def build_body(self, request: Request) -> WireRequest:
        """The request in this API's wire form."""
        raise NotImplementedError(f"{type(self).__name__} has no wire form")

    def parse_reply(self, raw: Any, latency_s: float, mode: str | None, request: Request) -> Completion:
        """The API's reply as a Completion; ProviderError when it holds no answer."""
        raise NotImplementedError(f"{type(self).__name__} has no wire form")

    def map_error(self, exc: Exception) -> ProviderError:
        """An exception from the SDK or transport as a ProviderError (with the retry decision)."""
        return ProviderError(f"{self.entry.name}: {type(exc).__name__}: {exc}")

    async def stream(self, request: Request) -> StreamTiming:
        """Send one request streamed and time it (only where supports_streaming)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    def check(self) -> None:
        """Fail fast at session start (raise ConfigError), e.g. for a missing API key."""

    def start(self) -> None:
        """Acquire resources (load weights, connect). Called once before the first request."""

    def close(self) -> None:
        """Release resources."""

    def describe(self) -> dict[str, Any]:
        """What identifies this provider's answers: goes into cache keys and reports."""
        return {"provider": type(self).__name__, "model": getattr(self.entry, "model", "")}


def redacted(completion: Completion) -> Completion:
    """The completion with every registered secret taken out of its text and tool calls
    (a server may echo a key inside an answer, which is then cached and reported)."""
    completion.text = redact.text(completion.text)
    completion.tool_calls = [ToolCall(redact.text(c.name), redact.strings(c.arguments)) for c in completion.tool_calls]
    return completion


def arguments_from_json(raw: Any) -> dict[str, Any] | str:
    """Tool-call arguments as a dict when they are a JSON object, else the raw string."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        return value if isinstance(value, dict) else raw
    return str(raw)
