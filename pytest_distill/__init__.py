"""pytest-distill: evaluate language models on task data sets with pytest."""

from pytest_distill.models.base import Completion, OutputConstraint, Request, ToolCall, Usage
from pytest_distill.suite import Example, Suite, TaskType, load_suite
from pytest_distill.plugin.api import assert_tool_call_equivalent, examples
from pytest_distill.scoring.toolcalls import binary_tool_call, extract_calls, staged_tool_call, tool_call_equivalence

__version__ = "0.1.0"
__all__ = ["Completion", "Example", "OutputConstraint", "Request", "Suite", "TaskType", "ToolCall", "Usage",
           "__version__", "load_suite",
           "assert_tool_call_equivalent", "binary_tool_call", "examples", "extract_calls", "staged_tool_call",
           "tool_call_equivalence"]
