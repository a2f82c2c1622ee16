"""pytest-distill: evaluate language models on task data sets with pytest."""

from .models.base import Completion, OutputConstraint, Request, ToolCall, Usage
from .suite import Example, Suite, TaskType, load_suite

__version__ = "0.1.0"
__all__ = ["Completion", "Example", "OutputConstraint", "Request", "Suite", "TaskType", "ToolCall", "Usage",
           "__version__", "load_suite"]
