"""BM25 over the chunk texts of one index version (the ``bm25s`` library).

Built at index time from the same chunk rows as the FAISS index (row i =
document i = FAISS id i) and saved inside the version directory as ``bm25.*``
files, so the manifest's checksums cover them and a swap of versions swaps the
dense and the lexical index together. The manifest's ``lexical`` section says
how it was built; a version without one (built before hybrid search) loads as
dense only.

Terms: ``lakerag.terms`` (any script; a code such as ``CC-0419`` is the two terms
``cc`` and ``0419``). The section's ``tokenizer`` names the one the version was
built with and its queries are cut with the same one; a section without it was
built with bm25s's own English tokenizer (``bm25s-en``) and is read as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from ..terms import LEGACY_TOKENIZER, TOKENIZER, TOKENIZERS
from ..terms import terms as _terms
from .errors import IndexRejected

LIBRARY = "bm25s"
# English question words, which bm25s's stopwords keep; they frame a question, its answer rarely holds them.
QUESTION_WORDS = frozenset({"who", "whom", "whose", "what", "which", "when", "where", "why", "how"})
# bm25s file name arguments -> names inside the version directory.
FILE_NAMES = {
    "data_name": "bm25.data.npy",
    "indices_name": "bm25.indices.npy",
    "indptr_name": "bm25.indptr.npy",
    "vocab_name": "bm25.vocab.json",
    "params_name": "bm25.params.json",
    "nnoc_name": "bm25.nonoccurrence.npy",
}


def terms(text: str, tokenizer: str = TOKENIZER) -> list[str]:
    """The BM25 terms of one text (what the index and the queries are cut into)."""
    return _terms(text, tokenizer)


def write_lexical(path, texts: list[str]) -> dict:
    """Build BM25 over ``texts`` and save its files into ``path``; return the manifest's
    ``lexical`` section (its ``files`` are the names written, for the checksums)."""
    path = Path(path)
    section = {"library": LIBRARY, "library_version": bm25s.__version__, "tokenizer": TOKENIZER,
               "stopwords": "per script: en (Latin), ar (Arabic)", "stemmer": "Arabic light (prefix/suffix)",
               "documents": len(texts), "files": []}
    if not texts:  # an empty version: nothing to search, and bm25s cannot index nothing
        return section
    retriever = bm25s.BM25()
    # An all-stopword chunk tokenises to nothing; keep its row so ids stay aligned with FAISS.
    retriever.index([terms(text) or [""] for text in texts], show_progress=False)
    retriever.save(path, show_progress=False, **FILE_NAMES)
    section.update(k1=retriever.k1, b=retriever.b, method=retriever.method,
                   files=sorted(name for name in FILE_NAMES.values() if (path / name).is_file()))
    return section


@dataclass
class LexicalIndex:
    """BM25 scores over the chunks of one loaded version (row ids = FAISS ids)."""

    documents: int
    retriever: object | None  # bm25s.BM25; None for an empty version
    tokenizer: str = TOKENIZER  # the one the version was built with (its manifest says)

    def terms(self, text: str) -> list[str]:
        return terms(text, self.tokenizer)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for ``query`` (0 where no query term occurs)."""
        if self.retriever is None:
            return np.zeros(self.documents, dtype=np.float32)
        ids = self.retriever.get_tokens_ids(self.terms(query))
        if not ids:
            return np.zeros(self.documents, dtype=np.float32)
        return np.asarray(self.retriever.get_scores_from_ids(ids), dtype=np.float32)

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, row ids) of the best ``k`` chunks that contain a query term, best first."""
        return top_positive(self.scores(query), k, allowed)

    def covering(self, query: str) -> np.ndarray:
        """Row ids of the chunks that contain every term of ``query`` (an exact name or code
        lookup), read from the index's postings; empty when the query has no terms. A question
        word is not required: the passage that answers "who was the scribe of INC-2291?" says
        "Scribe: Priya Ramaswamy", not "who"."""
        wanted = set(self.terms(query))
        if wanted - QUESTION_WORDS:
            wanted -= QUESTION_WORDS
        if self.retriever is None or not wanted:
            return np.zeros(0, dtype=np.int64)
        vocab, postings = self.retriever.vocab_dict, self.retriever.scores
        rows: np.ndarray | None = None
        for term in wanted:
            token = vocab.get(term)
            if token is None:
                return np.zeros(0, dtype=np.int64)
            found = postings["indices"][postings["indptr"][token]:postings["indptr"][token + 1]]
            rows = found if rows is None else np.intersect1d(rows, found)
        return np.unique(rows).astype(np.int64)


def top_positive(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, row ids) of the best ``k`` rows with a positive score (for BM25: at least one
    query term), only ``allowed`` rows when given; best first, equal scores by row id."""
    if allowed is not None:
        masked = np.zeros_like(scores)
        masked[allowed] = scores[allowed]
        scores = masked
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > k:
        candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
    ids = candidates[np.lexsort((candidates, -scores[candidates]))].astype(np.int64)
    return scores[ids], ids


def load_lexical(path, section: dict, documents: int) -> LexicalIndex:
    """Load the BM25 files a manifest's ``lexical`` section names (checksums already verified)."""
    if section.get("library") != LIBRARY:
        raise IndexRejected(f"{path}: lexical index built with {section.get('library')!r}, this release reads "
                            f"{LIBRARY}; rebuild the index (`lakerag pipeline index --full-rebuild`)")
    tokenizer = section.get("tokenizer", LEGACY_TOKENIZER)
    if tokenizer not in TOKENIZERS:
        raise IndexRejected(f"{path}: lexical index cut with tokenizer {tokenizer!r}, this release knows "
                            f"{', '.join(TOKENIZERS)}; rebuild the index (`lakerag pipeline index --full-rebuild`)")
    if int(section.get("documents", -1)) != documents:
        raise IndexRejected(f"{path}: lexical index holds {section.get('documents')} documents, the dense index "
                            f"{documents}; republish the index (`lakerag pipeline index --full-rebuild`)")
    if documents == 0:
        return LexicalIndex(documents=0, retriever=None, tokenizer=tokenizer)
    try:
        retriever = bm25s.BM25.load(Path(path), load_corpus=False, mmap=False, show_progress=False, **FILE_NAMES)
    except (OSError, ValueError, KeyError) as exc:
        raise IndexRejected(f"{path}: the lexical index cannot be read ({exc}); sync the version again or "
                            "republish it (`lakerag pipeline index --full-rebuild`)") from None
    if int(retriever.scores["num_docs"]) != documents:
        raise IndexRejected(f"{path}: lexical index holds {retriever.scores['num_docs']} documents, the manifest "
                            f"{documents}; republish the index")
    return LexicalIndex(documents=documents, retriever=retriever, tokenizer=tokenizer)
