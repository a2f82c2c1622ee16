"""Test helpers, imported as `helpers.<module>` (pytest puts tests/ on sys.path).

paths        ROOT, SHARED_DATASETS, FIXTURES (the recorded wire replies, tests/fixtures/)
http_fake    FakeHTTPServer: the one HTTP fake (thread, port, request log); free_port, closed_port_url
chat_server  FakeChatServer: an OpenAI-compatible chat server answering from a table of rows
recorded     RecordedServer: serves tests/fixtures/<api>/*.json to the real SDK clients; the
             provider tests' request, entry, tool history and key-echoing responders
fake_vllm    a fake vLLM venv python running benchmarks/fake_server.py, and a model folder
suites       write_suite and the small topic suite; summary_row reads the end-of-run table
llama        a real llama.cpp server on 127.0.0.1 (the conftest fixtures use it)
"""
