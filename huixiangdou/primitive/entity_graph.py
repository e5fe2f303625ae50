"""The knowledge base's entity graph: which technical entities (primitive/entities.py) each chunk names, in
how many chunks and files each occurs, and which occur together in one chunk (a section, or part of one).

Stored as one SQLite file in the store's version folder and queried there (indexed lookups, nothing is
loaded up front), so a million-chunk store opens as fast as a small one:

    graph = EntityGraph.build(chunks)            # chunks: Chunk-like objects with .text, .source, .anchor
    graph.save(folder); graph = EntityGraph.open(folder)
    graph.match('lmdeploy 的 --server-port 怎么改')   # [EntityMatch('--server-port', chunks=12, files=5, ...)]
    graph.chunks_sharing(matches, limit=20)      # chunk rows that name the most (and rarest) of them
    graph.together(matches)                      # the largest number of them named in one chunk

It does not embed, rank passages or decide anything: the reject evidence and retrieval use what it finds.
"""
from __future__ import annotations

import math
import re
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from huixiangdou.primitive.entities import NAMING_KINDS, VERSION, entities, entity_kinds

FILE = 'graph.sqlite'
# Pairs are counted among a chunk's rarest entities only: a chunk naming 40 identifiers would add 780 pairs,
# most of them between everyday ones (python, config.py) that say nothing about each other.
PAIR_ENTITIES = 8
# An entity named in more chunks than this share of the store (and more than COMMON_MIN chunks) says
# nothing about any one passage.
COMMON_SHARE = 0.05
COMMON_MIN = 10
_WORD = re.compile(r'[A-Za-z][A-Za-z0-9_.+-]{2,47}')


@dataclass(frozen=True)
class EntityMatch:
    name: str
    chunks: int         # chunks that name it
    files: int          # files that name it
    idf: float          # log(total chunks / chunks): how specific it is to a few passages

    def to_json(self) -> dict:
        return {'entity': self.name, 'chunks': self.chunks, 'files': self.files, 'idf': round(self.idf, 2)}


class EntityGraph:
    """Entities, their mentions (entity -> chunk rows) and co-occurrence edges, in one SQLite database."""

    def __init__(self, connection: sqlite3.Connection, path: Path | None = None):
        self._db = connection
        self._lock = threading.Lock()   # the worker queries from several executor threads
        self.path = path
        self.total_chunks = int(self._meta('chunks'))
        self.current = self._meta('entities') == str(VERSION)   # extracted by today's patterns: reusable

    # -- building ---------------------------------------------------------------------------------------
    @classmethod
    def build(cls, chunks: Iterable, path: Path | None = None,
              reuse: Callable[[int], 'dict[str, bool] | None'] | None = None) -> 'EntityGraph':
        """The graph of `chunks` (row i = the i-th chunk), written to `path` (or kept in memory).

        `reuse(row)` may return a chunk's {entity: names a program} from a previous graph (see `row_entities`)
        instead of extracting it again: a build reuses the rows of unchanged files.
        """
        mentions: dict[str, list[int]] = {}
        files: dict[str, set[str]] = {}
        naming: set[tuple[str, int]] = set()   # (entity, row): installed, imported or run there
        pairs: Counter = Counter()
        per_chunk: list[list[str]] = []
        total = 0
        for row, chunk in enumerate(chunks):
            kinds = reuse(row) if reuse is not None else None
            if kinds is None:
                kinds = {n: k in NAMING_KINDS for n, k in entity_kinds(chunk.text).items()}
            names = list(kinds)
            naming.update((n, row) for n, flag in kinds.items() if flag)
            per_chunk.append(names)
            for name in names:
                mentions.setdefault(name, []).append(row)
                files.setdefault(name, set()).add(chunk.source)
            total = row + 1
        program = {n for n, _ in naming}
        counts = {name: len(rows) for name, rows in mentions.items()}
        for names in per_chunk:
            rare = sorted(names, key=lambda n: (counts[n], n))[:PAIR_ENTITIES]
            for i, a in enumerate(rare):
                for b in rare[i + 1:]:
                    pairs[(a, b) if a < b else (b, a)] += 1
        db = sqlite3.connect(str(path) if path else ':memory:', check_same_thread=False)
        db.executescript('''
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE entity (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, chunks INTEGER, files INTEGER,
                                 naming INTEGER);
            CREATE TABLE mention (entity INTEGER NOT NULL, chunk INTEGER NOT NULL, naming INTEGER NOT NULL);
            CREATE TABLE edge (a INTEGER NOT NULL, b INTEGER NOT NULL, n INTEGER NOT NULL);''')
        ids = {name: i for i, name in enumerate(sorted(mentions))}
        db.executemany('INSERT INTO entity VALUES (?, ?, ?, ?, ?)',
                       ((ids[n], n, counts[n], len(files[n]), int(n in program)) for n in ids))
        db.executemany('INSERT INTO mention VALUES (?, ?, ?)',
                       ((ids[n], r, int((n, r) in naming)) for n, rows in mentions.items() for r in rows))
        db.executemany('INSERT INTO edge VALUES (?, ?, ?)', ((ids[a], ids[b], k) for (a, b), k in pairs.items()))
        db.executemany('INSERT INTO meta VALUES (?, ?)', [('chunks', str(total)), ('format', '1'), ('entities', str(VERSION))])
        db.executescript('''
            CREATE INDEX mention_entity ON mention (entity); CREATE INDEX mention_chunk ON mention (chunk);
            CREATE INDEX edge_a ON edge (a); CREATE INDEX edge_b ON edge (b);''')
        db.commit()
        return cls(db, path)

    def save(self, folder: Path) -> Path:
        """Copy the graph into `folder` (a version folder being written) as graph.sqlite."""
        target = Path(folder) / FILE
        if self.path is not None and Path(self.path).resolve() == target.resolve():
            return target
        out = sqlite3.connect(str(target))
        with self._lock:
            self._db.backup(out)
        out.close()
        return target

    @classmethod
    def open(cls, folder: Path) -> 'EntityGraph | None':
        """The graph of a version folder, read-only; None when the folder has none (built before graphs)."""
        path = Path(folder) / FILE
        if not path.is_file():
            return None
        db = sqlite3.connect(f'file:{path}?mode=ro&immutable=1', uri=True, check_same_thread=False)
        return cls(db, path)

    def close(self) -> None:
        self._db.close()

    # -- querying ---------------------------------------------------------------------------------------
    def _meta(self, key: str) -> str:
        row = self._db.execute('SELECT value FROM meta WHERE key = ?', (key,)).fetchone()
        return row[0] if row else '0'

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute('SELECT COUNT(*) FROM entity').fetchone()[0])

    def match(self, text: str) -> list[EntityMatch]:
        """The graph's entities `text` names: its own entities, and any of its words the documents name as one
        (a plain `lmdeploy` in a message is the package the documents install). Rarest first."""
        own = entities(text)
        words = [w for w in dict.fromkeys(w.lower().rstrip('.') for w in _WORD.findall(text)) if w not in own]
        if not (own or words) or not self.total_chunks:
            return []
        with self._lock:
            rows = self._lookup('SELECT name, chunks, files FROM entity WHERE name IN ({})', own)
            rows += self._lookup('SELECT name, chunks, files FROM entity WHERE naming = 1 AND name IN ({})', words)
        found = [EntityMatch(n, c, f, math.log(self.total_chunks / max(c, 1))) for n, c, f in rows]
        return sorted(found, key=lambda m: (-m.idf, m.name))

    def _lookup(self, sql: str, names: list[str]) -> list[tuple]:
        return self._db.execute(sql.format(','.join('?' * len(names))), names).fetchall() if names else []

    def specific(self, matches: list[EntityMatch]) -> list[EntityMatch]:
        """The matches that are not everywhere (see COMMON_SHARE)."""
        return [m for m in matches if m.chunks <= max(COMMON_SHARE * self.total_chunks, COMMON_MIN)]

    def _rows(self, name: str, limit: int | None = None) -> np.ndarray:
        sql = 'SELECT chunk FROM mention WHERE entity = (SELECT id FROM entity WHERE name = ?)'
        with self._lock:
            rows = self._db.execute(sql + (f' LIMIT {int(limit)}' if limit else ''), (name,)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def chunks_sharing(self, matches: list[EntityMatch], limit: int = 20) -> list[tuple[int, float]]:
        """(chunk row, summed idf of the matched entities it names), best first, for the specific matches."""
        scores: dict[int, float] = {}
        for m in self.specific(matches):
            for row in self._rows(m.name).tolist():
                scores[row] = scores.get(row, 0.0) + m.idf
        return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

    def together(self, matches: list[EntityMatch]) -> int:
        """The largest number of the specific matches that one chunk names (0 without any)."""
        specific = self.specific(matches)
        if len(specific) < 2:
            return len(specific)
        counts: Counter = Counter()
        for m in specific:
            counts.update(self._rows(m.name).tolist())
        return max(counts.values())

    def row_entities(self, start: int, stop: int) -> list[dict[str, bool]]:
        """For chunk rows start..stop-1: {entity: names a program there}, as `build(reuse=...)` takes them."""
        out: list[dict[str, bool]] = [{} for _ in range(max(stop - start, 0))]
        sql = ('SELECT m.chunk, e.name, m.naming FROM mention m JOIN entity e ON e.id = m.entity '
               'WHERE m.chunk >= ? AND m.chunk < ? ORDER BY m.chunk, m.rowid')
        with self._lock:
            for row, name, flag in self._db.execute(sql, (start, stop)):
                out[row - start][name] = bool(flag)
        return out

    def neighbours(self, name: str, limit: int = 5) -> list[tuple[str, int]]:
        """The entities named most often in the same chunks as `name`, with how often."""
        sql = '''SELECT e.name, x.n FROM (
                   SELECT b AS other, n FROM edge WHERE a = (SELECT id FROM entity WHERE name = ?1)
                   UNION ALL SELECT a AS other, n FROM edge WHERE b = (SELECT id FROM entity WHERE name = ?1)
                 ) x JOIN entity e ON e.id = x.other ORDER BY x.n DESC, e.name LIMIT ?2'''
        with self._lock:
            return [(n, k) for n, k in self._db.execute(sql, (name, limit)).fetchall()]
