"""The few prompts the backends themselves add: asking for JSON where a backend cannot
constrain decoding, and asking again after a reply failed the schema."""

from __future__ import annotations

import json
from typing import Any

JSON_INSTRUCTION = """Reply with one JSON value that matches the JSON schema below, and nothing else: \
no prose, no code fences.
Schema:
{schema}"""

JSON_RETRY = """Your previous reply was rejected: {error}
Reply again with only one JSON value that matches the schema."""


def json_instruction(schema: dict[str, Any]) -> str:
    """The system instruction asking for JSON matching `schema`."""
    return JSON_INSTRUCTION.format(schema=json.dumps(schema, ensure_ascii=False))


def json_retry(error: str) -> str:
    """The user turn sent after a reply that failed validation."""
    return JSON_RETRY.format(error=error)
