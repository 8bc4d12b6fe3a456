"""Errors of the agents package."""

from quarry.core.errors import QuarryError


class AgentError(QuarryError):
    """Base class of agent errors."""


class LLMError(AgentError):
    """A language model call failed for good (after any retries)."""


class LLMUnavailableError(LLMError):
    """The configured backend cannot run here (missing optional dependency, no model)."""


class LLMOutputError(LLMError):
    """The model's output did not satisfy the requested JSON schema."""


class PlanError(AgentError):
    """A graph operation was rejected (cycle, dangling edge, bounds)."""
