"""OpenAI (api.openai.com) and xAI (Grok, OpenAI-compatible endpoint) through the `openai` SDK.

The request and reply mapping is the OpenAI-compatible provider's; these classes add the
hosted-API parts: the key from the SDK's usual variable, checked at session start; the
parameter names each API accepts; refusals; usage as each API reports it; keys kept out
of error messages.
"""

from __future__ import annotations

from typing import Any

from pytest_distill.models.providers.hosted import (
    api_key,
    known_key,
    redacted_error,
    status_error,
)
from pytest_distill.models.base import Completion, ProviderError, Request
from pytest_distill.models.providers.openai_compatible import OpenAICompatibleProvider


class OpenAIProvider(OpenAICompatibleProvider):
    max_concurrency = 16  # hosted: limited by rate limits (rpm/tpm), not by a local server
    key_envs: tuple[str, ...] = ("OPENAI_API_KEY",)
    default_base_url = None  # the SDK's own (or OPENAI_BASE_URL)
    # OpenAI's reasoning models (gpt-5*, o*) reject max_tokens; max_completion_tokens works
    # for every current OpenAI model. It covers reasoning tokens too.
    max_tokens_field = "max_completion_tokens"

    @property
    def key_env(self) -> str | None:
        return self.entry.api_key_env or self.key_envs[0]

    def api_key(self) -> str:
        return api_key(self.entry, self.key_envs)

    def check(self) -> None:
        self.api_key()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "params": self.entry.params, "constraint_style": self.entry.constraint_style}

    def build_body(self, request: Request) -> tuple[dict[str, Any], str | None]:
        body, mode = super().build_body(request)
        if self.max_tokens_field != "max_tokens" and "max_tokens" in body:
            body[self.max_tokens_field] = body.pop("max_tokens")
        return body, mode

    def parse_reply(self, reply: Any, latency: float, mode: str | None, request: Request) -> Completion:
        completion = super().parse_reply(reply, latency, mode, request)
        message = reply.choices[0].message
        refusal = getattr(message, "refusal", None)
        if refusal:
            # The model's own answer, so scored (a miss), not an error; the reason shows.
            completion.text = refusal
            completion.finish_reason = "refusal"
        usage = reply.usage
        reasoning = completion.usage.reasoning_tokens
        total = getattr(usage, "total_tokens", None) if usage else None
        if reasoning and total == completion.usage.input_tokens + completion.usage.output_tokens + reasoning:
            # xAI bills reasoning tokens as output but leaves them out of completion_tokens
            # (OpenAI counts them inside): the totals tell which convention this reply uses.
            completion.usage.output_tokens += reasoning
        return completion

    def map_error(self, exc: Exception) -> ProviderError:
        import openai

        if isinstance(exc, openai.APIStatusError):
            error = status_error(self.entry.name, exc)
        else:
            error = super().map_error(exc)
        return redacted_error(error, known_key(self.entry, self.key_envs))


class XAIProvider(OpenAIProvider):
    key_envs = ("XAI_API_KEY",)
    default_base_url = "https://api.x.ai/v1"
    max_tokens_field = "max_tokens"

