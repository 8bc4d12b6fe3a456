"""Prompts of the memory layer. A fixed context is laid out document first and question
last, so that every question about one document shares the same prompt prefix, byte for
byte (the cached context of Squeezed Attention, vLLM's prefix cache)."""

from __future__ import annotations

READER_INSTRUCTIONS = (
    "You answer questions about the document the user gives. Answer from the document only, "
    "briefly. If the document does not contain the answer, reply exactly: NOT FOUND."
)
NOT_FOUND = "NOT FOUND"
DOCUMENT_HEADER = "Document:\n"
QUESTION_HEADER = "\n\nQuestion: "


def fixed_context_messages(
    document: str, question: str, instructions: str = READER_INSTRUCTIONS
) -> list[dict[str, str]]:
    """Chat messages: the instructions, then one user turn with the document first and the
    question last. The document is used as given (no stripping), so the prefix stays
    identical for every question."""
    return [
        {"role": "system", "content": instructions},
        {"role": "user", "content": f"{DOCUMENT_HEADER}{document}{QUESTION_HEADER}{question.strip()}"},
    ]
