"""What a suite folder holds, once loaded and checked."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class TaskType(str, enum.Enum):
    CLASSIFICATION = "classification"
    TOOL_CALLING = "tool-calling-closed-book"
    MULTI_TURN_TOOL_CALLING = "multi-turn-tool-calling-closed-book"
    QUESTION_ANSWERING = "question-answering"
    QA_OPEN_BOOK = "question-answering-open-book"
    QA_CLOSED_BOOK = "question-answering-closed-book"
    INFORMATION_EXTRACTION = "information-extraction"

    @property
    def is_tool_calling(self) -> bool:
        return self in (TaskType.TOOL_CALLING, TaskType.MULTI_TURN_TOOL_CALLING)


@dataclass
class SuiteSettings:
    """The suite's distill.toml: this project's own settings, all optional."""

    scorer: str | None = None  # None: the task type's default scorer
    also: list[str] = field(default_factory=list)  # extra scorers recorded, not gated on
    min_pass_rate: float | None = None
    max_error_rate: float | None = None
    max_regression: float | None = None  # percentage points, against a baseline
    constrain: bool = True  # constrain output to the label set where the provider can
    system_prompt: str | None = None  # replaces the built prompt's system message
    user_template: str | None = None  # e.g. "Question: {question}\nContext: {context}"
    max_tokens: int | None = None
    judge: str | None = None  # default judge model for this suite
    models: list[str] | None = None  # the suite's model plan (names or @groups); None: the default model
    source: Path | None = None  # the nearest distill.toml that applies
    origins: dict[str, Path] = field(default_factory=dict)  # key ("gate.min_pass_rate") -> the file that set it

    def file_of(self, key: str, default: Path) -> Path:
        """The distill.toml that set `key` (for messages), else `default`."""
        return self.origins.get(key, default)


@dataclass
class Example:
    suite: Suite = field(repr=False)
    row: int  # 1-based data row: the stable part of the test id
    line: int  # line in the test file where the row starts (for messages)
    question: str | list[dict[str, Any]]  # a list of chat messages for multi-turn tasks
    answer: Any  # a label, a text, or a parsed tool call {"name", "parameters"}
    context: str | None = None
    fields: dict[str, Any] = field(default_factory=dict, repr=False)  # every column as read (repeats the above)

    @property
    def id(self) -> str:
        return f"{self.row:04d}"

    @property
    def location(self) -> str:
        return f"{self.suite.test_file}:{self.line}"


@dataclass
class Suite:
    name: str
    path: Path
    test_file: Path
    task_type: TaskType
    task_type_source: str  # where the task type came from ("config.yaml base.task", "inferred: ...")
    task_description: str
    classes: dict[str, str] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    judge_instructions: str | None = None
    job: dict[str, Any] = field(default_factory=dict)
    settings: SuiteSettings = field(default_factory=SuiteSettings)
    examples: list[Example] = field(default_factory=list)

    def tool(self, name: str) -> dict[str, Any] | None:
        for tool in self.tools:
            fn = tool.get("function", tool)
            if fn.get("name") == name:
                return fn
        return None
