"""BM25 over the chunks a principal may read, from SQLite FTS5's index.

Why not FTS5's own ``bm25()``: it weighs terms with statistics of the *whole* table (document
frequency, average length). A rare term that only a restricted document contains would then change
the scores an uncleared principal sees — a measurable leak of restricted content. So FTS5 provides
tokenisation (Porter, Unicode, diacritics folded) and its inverted index (term -> chunk, occurrence
counts through ``fts5vocab``), and the BM25 statistics (N, document frequency, average length) are
computed here over the permitted chunks only. Restricted chunks never enter the arithmetic.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import numpy.typing as npt

from bastion.rag.index import Index
from bastion.rag.schema import TOKENIZER

K1 = 1.2
B = 0.75
#: most distinct terms of a query that are looked up (bounds the work a long prompt can cause)
MAX_TERMS = 48

# English function words: they carry no topic and each would pull in most of the index.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves""".split()
)


def query_terms(conn: sqlite3.Connection, query: str) -> list[str]:
    """The index terms of ``query``, tokenised by the same FTS5 tokenizer as the chunks."""
    words = [w for w in query.split() if w.lower().strip(".,;:!?\"'()[]") not in STOPWORDS]
    if not words:
        return []
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.rag_q USING fts5(text, tokenize = '{TOKENIZER}')")
    conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.rag_q_terms USING fts5vocab(temp, rag_q, row)")
    # Committed here: the DELETE/INSERT open an implicit transaction, and one left open pins this
    # connection to its snapshot, so relabels and deletes written by any other process (a sibling
    # worker, 'bastion rag') would never be seen by this one's searches.
    with conn:
        conn.execute("DELETE FROM temp.rag_q")
        conn.execute("INSERT INTO temp.rag_q(text) VALUES (?)", (" ".join(words),))
        terms = [row[0] for row in conn.execute("SELECT term FROM temp.rag_q_terms")]
        conn.execute("DELETE FROM temp.rag_q")
    return terms[:MAX_TERMS]


def bm25_scores(
    conn: sqlite3.Connection, index: Index, permitted: npt.NDArray[np.bool_], terms: list[str]
) -> npt.NDArray[np.float32]:
    """BM25 score of every row (0 where no term matches); only ``permitted`` rows are ever scored."""
    scores = np.zeros(len(index.rowids), dtype=np.float32)
    n = int(permitted.sum())
    if n == 0 or not terms:
        return scores
    avgdl = float(index.tokens[permitted].mean()) or 1.0
    for term in terms:
        rows = conn.execute(
            "SELECT doc, COUNT(*) FROM rag_fts_terms WHERE term = ? GROUP BY doc", (term,)
        ).fetchall()
        if not rows:
            continue
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        tf = np.fromiter((r[1] for r in rows), dtype=np.float32, count=len(rows))
        pos = index.rows_for(ids)
        # A chunk written after the index was loaded has no row yet: drop it (next load has it).
        inside = (pos < len(index.rowids)) & (index.rowids[np.minimum(pos, len(index.rowids) - 1)] == ids)
        pos, tf = pos[inside], tf[inside]
        keep = permitted[pos]  # the security boundary: restricted chunks are dropped before any statistic
        pos, tf = pos[keep], tf[keep]
        df = len(pos)
        if df == 0:
            continue
        idf = np.log((n - df + 0.5) / (df + 0.5) + 1.0)
        dl = index.tokens[pos]
        scores[pos] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl))
    return scores
