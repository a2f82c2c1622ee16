"""JSON Schemas (Draft 2020-12) of the suite settings files; checked by suite/validate.py (with core/settings.py)."""
