"""Where things are, for every test."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
FIXTURES = ROOT / "tests" / "fixtures"  # recorded frontier wire replies: <api>/<name>.json
