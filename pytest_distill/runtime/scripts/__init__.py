"""Scripts that also run as plain files under another interpreter (the vLLM venv's).

They live in a folder of their own so that, run as `python path/to/script.py`, the
folder put first on sys.path holds no module whose name could shadow a library
(`engine`, `stats`, `server`...)."""
