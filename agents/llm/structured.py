"""JSON-schema outputs: schema checks, validation of a reply, and the one retry that
every backend shares (native constraints can still be cut short by max_tokens)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from jsonschema import SchemaError, validators
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator

from quarry.agents.errors import LLMError, LLMOutputError
from quarry.agents.llm.prompts import json_retry
from quarry.core.chat import Completion, Message, Usage

CompleteFn = Callable[[list[Message]], Awaitable[Completion]]

MAX_ECHO_CHARS = 4000  # the rejected reply is shown back to the model, cut to this length
MAX_ERROR_CHARS = 500


def make_validator(schema: dict[str, Any]) -> Validator:
    """A validator for `schema`; an invalid schema is the caller's bug and raises LLMError."""
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise LLMError(f"invalid JSON schema: {exc.message}") from exc
    return cls(schema)


def extract_json(text: str) -> str:
    """The reply without surrounding whitespace or a markdown code fence."""
    body = text.strip()
    if body.startswith("```"):
        first_newline = body.find("\n")
        body = body[first_newline + 1 :] if first_newline >= 0 else body[3:]
        if body.rstrip().endswith("```"):
            body = body.rstrip()[:-3]
        body = body.strip()
    return body


def check_json(text: str, validator: Validator) -> str | None:
    """None when `text` is JSON valid against the schema, else what is wrong with it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"does not match the schema at {where}: {error.message}"[:MAX_ERROR_CHARS]


async def complete_json(
    call: CompleteFn, messages: Sequence[Message], schema: dict[str, Any], *, model_name: str
) -> Completion:
    """Run `call`, validate its reply against `schema`, and on failure ask once more with
    the error shown to the model. Usage covers both attempts. Raises LLMOutputError."""
    validator = make_validator(schema)
    conversation = list(messages)
    usage = Usage()
    error = ""
    for _ in range(2):
        completion = await call(conversation)
        usage = usage + completion.usage
        text = extract_json(completion.text)
        problem = check_json(text, validator)
        if problem is None:
            return Completion(text=text, usage=usage, finish_reason=completion.finish_reason)
        error = problem + (" (the reply was cut off at max_tokens)" if completion.finish_reason == "length" else "")
        conversation = [
            *messages,
            Message(role="assistant", content=completion.text[:MAX_ECHO_CHARS]),
            Message(role="user", content=json_retry(error)),
        ]
    raise LLMOutputError(f"{model_name}: the reply did not match the JSON schema, even after one retry: {error}")
