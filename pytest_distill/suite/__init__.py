"""Suite folders: loading, checking, task types and prompts."""

from pytest_distill.suite.loader import is_suite_dir, load_suite
from pytest_distill.suite.model import Example, Suite, SuiteSettings, TaskType
from pytest_distill.suite.prompts import build_request

__all__ = ["Example", "Suite", "SuiteSettings", "TaskType", "build_request", "is_suite_dir", "load_suite"]
