"""What loaders produce: a corpus to ingest and questions with their gold answers."""

from __future__ import annotations

import string
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

LETTERS = string.ascii_uppercase


class CorpusDoc(BaseModel):
    """One document of an eval corpus (ingested under `id` as its source name)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    title: str
    text: str = Field(min_length=1)


class QAItem(BaseModel):
    """One question with what counts as a right answer and where the answer is."""

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answers: list[str] = Field(
        default_factory=list, description="Acceptable answers; for a multiple-choice item, option letters."
    )
    choices: list[str] = Field(default_factory=list, description="Option texts of a multiple-choice item (A, B, ...).")
    gold: list[str] = Field(
        default_factory=list,
        description="Documents or passages that answer it: corpus ids, source names or titles. Each entry is "
        "found when any document it names is retrieved.",
    )
    gold_facts: list[str] = Field(
        default_factory=list, description="Sentences that support the answer (HotpotQA supporting facts, a needle)."
    )
    scope: str | None = Field(
        None, description="Corpus id of the one document the question is about (long-document QA, needles)."
    )
    group: str | None = Field(None, description="Breakdown key in reports (question type, haystack length, ...).")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("question")
    @classmethod
    def _strip(cls, question: str) -> str:
        if not question.strip():
            raise ValueError("the question is empty")
        return question.strip()

    @property
    def multiple_choice(self) -> bool:
        return bool(self.choices)


class Dataset(BaseModel):
    """A loaded QA set: the corpus (empty when questions run against an existing collection)
    and the items, in file order."""

    name: str
    source: str = Field(description="The file or folder it was read from.")
    corpus: list[CorpusDoc] = Field(default_factory=list)
    items: list[QAItem] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="What the loader skipped or assumed.")
