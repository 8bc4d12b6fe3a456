"""Order passages for a reader so the strongest sit at the edges of its context.

Jin et al. 2024 ("Long-Context LLMs Meet RAG") find readers attend best to the start and
end of a long input; they place the best passage first, the second best last, and
alternate inward. (llama-index's LongContextReorder instead ends with the best passage
for an even count.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def reorder_for_reader(ranked: Sequence[T]) -> list[T]:
    """`ranked` best first -> [1st, 3rd, 5th, ..., 6th, 4th, 2nd]."""
    front = list(ranked[0::2])
    back = list(ranked[1::2])
    return front + back[::-1]
