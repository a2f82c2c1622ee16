"""OpenAI (api.openai.com) and xAI (Grok, OpenAI-compatible endpoint) through the `openai` SDK.

The request and reply mapping is the OpenAI-compatible provider's (a HostedProvider);
these classes add the hosted-API parts: the key from the SDK's usual variable, required
and checked at session start; the parameter names each API accepts; refusals; usage as
each API reports it.
"""

from __future__ import annotations

from typing import Any

from pytest_distill.models.base import Completion, Request, WireRequest
from pytest_distill.models.providers.openai_compatible import OpenAICompatibleProvider


class OpenAIProvider(OpenAICompatibleProvider):
    max_concurrency = 16  # hosted: limited by rate limits (rpm/tpm), not by a local server
    key_envs: tuple[str, ...] = ("OPENAI_API_KEY",)
    key_required = True  # default_base_url None: the SDK's own (or OPENAI_BASE_URL)
    # OpenAI's reasoning models (gpt-5*, o*) reject max_tokens; max_completion_tokens works
    # for every current OpenAI model. It covers reasoning tokens too.
    max_tokens_field = "max_completion_tokens"

    def build_body(self, request: Request) -> WireRequest:
        body, mode = super().build_body(request)
        if self.max_tokens_field != "max_tokens" and "max_tokens" in body:
            body[self.max_tokens_field] = body.pop("max_tokens")
        return WireRequest(body, mode)

    def parse_reply(self, raw: Any, latency_s: float, mode: str | None, request: Request) -> Completion:
        completion = super().parse_reply(raw, latency_s, mode, request)
        message = raw.choices[0].message
        refusal = getattr(message, "refusal", None)
        if refusal:
            # The model's own answer, so scored (a miss), not an error; the reason shows.
            completion.text = refusal
            completion.finish_reason = "refusal"
        usage = raw.usage
        reasoning = completion.usage.reasoning_tokens
        total = getattr(usage, "total_tokens", None) if usage else None
        if reasoning and total == completion.usage.input_tokens + completion.usage.output_tokens + reasoning:
            # xAI bills reasoning tokens as output but leaves them out of completion_tokens
            # (OpenAI counts them inside): the totals tell which convention this reply uses.
            completion.usage.output_tokens += reasoning
        return completion


class XAIProvider(OpenAIProvider):
    key_envs = ("XAI_API_KEY",)
    default_base_url = "https://api.x.ai/v1"
    max_tokens_field = "max_tokens"
