"""pytest-distill: evaluate language models on task data sets with pytest.

PYTEST_DONT_REWRITE: the plugin has no asserts for pytest to rewrite, and a pytester run
inside a test process would otherwise warn that the already-imported package can't be.
"""

from pytest_distill.models.base import Completion, OutputConstraint, Request, ToolCall, Usage
from pytest_distill.plugin.api import assert_tool_call_equivalent, examples
from pytest_distill.plugin.assertions import assert_exact_match, assert_judged
from pytest_distill.plugin.calls import ModelClient
from pytest_distill.scoring.base import Score
from pytest_distill.scoring.toolcalls import binary_tool_call, extract_calls, staged_tool_call, tool_call_equivalence
from pytest_distill.suite import Example, Suite, TaskType, load_suite

__version__ = "0.1.0"
__all__ = [
    "Completion",
    "Example",
    "ModelClient",
    "OutputConstraint",
    "Request",
    "Score",
    "Suite",
    "TaskType",
    "ToolCall",
    "Usage",
    "__version__",
    "assert_exact_match",
    "assert_judged",
    "assert_tool_call_equivalent",
    "binary_tool_call",
    "examples",
    "extract_calls",
    "load_suite",
    "staged_tool_call",
    "tool_call_equivalence",
]
