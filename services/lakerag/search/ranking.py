"""The value every search step takes and returns: row ids best first, with their scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ranked:
    ids: np.ndarray  # int64 row ids of the loaded index, best first
    scores: np.ndarray  # float32, the score each row was ranked by

    @classmethod
    def of(cls, ids, scores) -> Ranked:
        return cls(np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float32))

    @classmethod
    def empty(cls) -> Ranked:
        return _EMPTY  # one shared instance: nothing in it to change

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, n: int) -> Ranked:
        return Ranked(self.ids[:n], self.scores[:n])

    def where(self, keep: np.ndarray) -> Ranked:
        return Ranked(self.ids[keep], self.scores[keep])

    def ranks(self) -> dict[int, int]:
        """row id -> 1-based rank."""
        return {i: r for r, i in enumerate(self.ids.tolist(), start=1)}


_EMPTY = Ranked(np.empty(0, np.int64), np.empty(0, np.float32))
