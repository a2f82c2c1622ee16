"""The providers, one module each; PROVIDERS names them.

PROVIDERS lives here rather than in registry.py so that models/schema.py can fill the
schema's provider enum from it without importing the registry, which imports the schema.
"""

# provider name -> "module:Class", imported only when a model of that provider is built
PROVIDERS: dict[str, str] = {
    "llama-cpp": "pytest_distill.models.providers.llama_cpp:LlamaCppProvider",
    "openai-compatible": "pytest_distill.models.providers.openai_compatible:OpenAICompatibleProvider",
    "openai": "pytest_distill.models.providers.openai_api:OpenAIProvider",
    "xai": "pytest_distill.models.providers.openai_api:XAIProvider",
    "anthropic": "pytest_distill.models.providers.anthropic_api:AnthropicProvider",
    "gemini": "pytest_distill.models.providers.gemini_api:GeminiProvider",
    "vllm": "pytest_distill.models.providers.vllm:VLLMProvider",
}
