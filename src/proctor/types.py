"""Type aliases shared across proctor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from proctor.labels import SecurityLabel

__all__ = ["AgentId", "Labels"]

AgentId: TypeAlias = str
"""The identifier of an agent, unique within a scheduler."""

Labels: TypeAlias = Mapping[str, "SecurityLabel | str"]
"""Data labels of a task by role, such as ``{"input": SecurityLabel.CONFIDENTIAL}``."""
