"""Suite folders: loading, checking, task types and prompts."""

from .loader import is_suite_dir, load_suite
from .model import Example, Suite, SuiteSettings, TaskType
from .prompts import build_request

__all__ = ["Example", "Suite", "SuiteSettings", "TaskType", "build_request", "is_suite_dir", "load_suite"]
