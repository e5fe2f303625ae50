"""Dense vector index in Milvus (a server, a cluster, or a milvus-lite folder), behind DenseIndex.

Rows are grouped by source file, so a build upserts and deletes one file's rows without touching the
others; each row also carries its chunk's text, source and anchor. The BM25 side is not here (see
docs/scale.md: the reject evidence needs every chunk's BM25 score exactly as the local index gives it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from loguru import logger

# Milvus VARCHAR limits are in bytes; a chunk is far shorter, these only guard odd inputs.
_TEXT_BYTES = 65_535
_NAME_BYTES = 2_048
_INSERT_BATCH = 5_000
# Above `exact_max_rows` an exact (FLAT) search costs too much on a server: HNSW, as FAISS goes
# approximate on one machine. A milvus-lite folder stays exact: it is meant for small stores.
HNSW_PARAMS = {'M': 16, 'efConstruction': 200}
HNSW_EF = 128


class MilvusIndexError(RuntimeError):
    """Milvus cannot be reached or does not hold what the store expects: the message says what to do."""


@dataclass
class FileRows:
    """One source file's rows: its content hash and where its chunks start in the store's row order."""
    source: str
    sha256: str
    first: int
    count: int

    @property
    def key(self) -> str:
        # Content-addressed: a changed file gets new rows under a new key, so a worker still serving the
        # previous build never maps a changed file's rows to its old row numbers.
        return hashlib.sha1(f'{self.source}\0{self.sha256}'.encode()).hexdigest()


def _row_id(file_key: str, position: int) -> str:
    return f'{file_key}:{position}'


def _clip(text: str, limit: int) -> str:
    raw = text.encode('utf-8')
    return text if len(raw) <= limit else raw[:limit].decode('utf-8', errors='ignore')


def connect(uri: str, token: str = ''):
    """A MilvusClient for `uri` ("http://host:19530", or a local folder path that starts milvus-lite)."""
    from pymilvus import MilvusClient
    try:
        return MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
    except Exception as exc:  # pymilvus raises several unrelated types for "cannot connect"
        raise MilvusIndexError(
            f'cannot open Milvus at {uri!r} ({exc.__class__.__name__}: {exc}): check [feature_store] '
            'milvus_uri (a running server such as "http://milvus:19530", or a local milvus-lite path that no '
            'other process has open) and the token (HUIXIANGDOU_MILVUS_TOKEN)') from exc


class MilvusIndex:
    """Cosine (inner product on L2-normalised vectors) search over one Milvus collection.

    `search` returns store row numbers like FaissIndex; rows of files this store does not know (a newer
    build's, not yet published here) are skipped.

    Usage:
        >>> index = MilvusIndex(client, 'kb', dimension=384)           # doctest: +SKIP
        >>> index.add(vectors); scores, rows = index.search(queries, k=5)  # doctest: +SKIP
    """

    FILE = 'dense.milvus.json'

    def __init__(self, client, collection: str, dimension: int, uri: str = '', exact_max_rows: int = 200_000,
                 create: bool = True):
        if dimension < 1:
            raise ValueError(f'dimension must be >= 1, got {dimension}')
        if not collection:
            raise ValueError('collection must be a non-empty name')
        self.client = client
        self.collection = collection
        self.dimension = dimension
        self.uri = uri
        self.exact_max_rows = exact_max_rows
        self.files: dict[str, FileRows] = {}       # file key → rows, for the files this store holds
        # None while the search is exact (FLAT); measured by `sync` once the collection uses HNSW.
        self.recall_at_10: float | None = None
        self._ensure_collection(create)

    def describe(self) -> str:
        """What the build report and the manifest show as the dense index (never the token)."""
        return f'milvus {self.collection} at {self.uri}'

    # -- the collection --------------------------------------------------------------------------
    def _ensure_collection(self, create: bool) -> None:
        from pymilvus import DataType
        if not create and not self.client.has_collection(self.collection):
            # Loading never creates: a wrong URI or a dropped collection must not look like an empty store.
            raise MilvusIndexError(f'Milvus at {self.uri} has no collection {self.collection!r} (dropped, or '
                                   'another server): run `python -m huixiangdou.service.feature_store` to build '
                                   'it again')
        if self.client.has_collection(self.collection):
            dims = [f.get('params', {}).get('dim') for f in self.client.describe_collection(
                self.collection)['fields'] if f['name'] == 'vector']
            if dims and int(dims[0]) != self.dimension:
                raise MilvusIndexError(
                    f'Milvus collection {self.collection!r} holds {dims[0]}-dim vectors, this model makes '
                    f'{self.dimension}: set [feature_store] milvus_collection to a new name, or drop the old '
                    'collection and rebuild')
            self.client.load_collection(self.collection)
            return
        schema = self.client.create_schema(auto_id=False)
        schema.add_field('id', DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field('file_key', DataType.VARCHAR, max_length=40)
        schema.add_field('position', DataType.INT64)
        schema.add_field('source', DataType.VARCHAR, max_length=_NAME_BYTES)
        schema.add_field('anchor', DataType.VARCHAR, max_length=_NAME_BYTES)
        schema.add_field('text', DataType.VARCHAR, max_length=_TEXT_BYTES)
        schema.add_field('vector', DataType.FLOAT_VECTOR, dim=self.dimension)
        params = self.client.prepare_index_params()
        params.add_index('vector', index_type='FLAT', metric_type='IP')
        params.add_index('file_key', index_type='INVERTED')
        self.client.create_collection(self.collection, schema=schema, index_params=params,
                                      consistency_level='Strong')
        logger.info('created Milvus collection {} ({} dims) at {}', self.collection, self.dimension, self.uri)

    def _use_hnsw_above(self, rows: int) -> bool:
        """Swap the exact index for HNSW once the collection outgrows exact search (servers only); True
        when the collection's search is approximate."""
        if rows <= self.exact_max_rows or '://' not in self.uri:
            return False
        described = self.client.describe_index(self.collection, 'vector') or {}
        if described.get('index_type') == 'HNSW':
            return True
        self.client.release_collection(self.collection)
        self.client.drop_index(self.collection, 'vector')
        params = self.client.prepare_index_params()
        params.add_index('vector', index_type='HNSW', metric_type='IP', params=HNSW_PARAMS)
        self.client.create_index(self.collection, params)
        self.client.load_collection(self.collection)
        logger.info('Milvus collection {} has {} rows: HNSW index', self.collection, rows)
        return True

    def _measure_recall(self, vectors: np.ndarray, queries: int = 200) -> float:
        """recall@10 of the collection's search against exact search, on stored vectors as queries."""
        import faiss

        from huixiangdou.primitive.dense_index import recall_at
        rng = np.random.default_rng(0)
        sample = np.ascontiguousarray(vectors[np.sort(rng.choice(len(vectors), min(queries, len(vectors)),
                                                                 replace=False))], dtype=np.float32)
        k = min(10, len(vectors))
        _, exact = faiss.knn(sample, np.ascontiguousarray(vectors, dtype=np.float32), k,
                             metric=faiss.METRIC_INNER_PRODUCT)
        return recall_at(exact, self.search(sample, k)[1])

    def rows_in_collection(self, file_keys: list[str] | None = None) -> int:
        """Rows in the collection (of these files only, when given)."""
        if file_keys is None:
            return self._count('')
        keys = list(file_keys)
        # A filter naming thousands of keys is split: servers cap an expression's length.
        return sum(self._count(f'file_key in {json.dumps(keys[i:i + 500])}') for i in range(0, len(keys), 500))

    def _count(self, expression: str) -> int:
        return int(self.client.query(self.collection, filter=expression, output_fields=['count(*)'])[0]['count(*)'])

    # -- writing ---------------------------------------------------------------------------------
    def sync(self, files: list[FileRows], chunks, vectors: np.ndarray) -> dict:
        """Make the collection hold these files' rows: a file already complete there is left alone, the
        others are (re)inserted. Rows of other files stay until `save` (the store being replaced may
        still be serving them). Returns {"kept", "inserted"} file counts."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension or len(vectors) != len(chunks):
            raise ValueError(f'expected {len(chunks)} vectors of {self.dimension} dims, got {vectors.shape}')
        # A fresh collection (a first build, a new cluster) needs no per-file look-ups.
        empty = self.rows_in_collection() == 0
        kept = inserted = 0
        pending: list[dict] = []
        for rows in files:
            held = 0 if empty else self.rows_in_collection([rows.key])
            if held == rows.count:
                kept += 1
            else:
                if held:
                    self.client.delete(self.collection, filter=f'file_key == "{rows.key}"')
                span = slice(rows.first, rows.first + rows.count)
                pending.extend(self._entities(rows, list(chunks[span]), np.asarray(vectors[span])))
                inserted += 1
                if len(pending) >= _INSERT_BATCH:
                    self._write(pending)
                    pending = []
            self.files[rows.key] = rows
        self._write(pending)
        if self._use_hnsw_above(len(self)) and len(vectors) == len(self):
            self.recall_at_10 = self._measure_recall(vectors)
            logger.info('Milvus collection {}: HNSW recall@10 {:.3f} against exact search', self.collection,
                        self.recall_at_10)
        return {'kept': kept, 'inserted': inserted}

    def _entities(self, rows: FileRows, chunks: list, vectors: np.ndarray) -> list[dict]:
        """One file's rows as Milvus entities; `chunks` and `vectors` are that file's own, in order (a
        chunk may be None for bare vectors)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        return [{'id': _row_id(rows.key, position), 'file_key': rows.key, 'position': position,
                 'source': _clip(getattr(chunk, 'source', ''), _NAME_BYTES),
                 'anchor': _clip(getattr(chunk, 'anchor', ''), _NAME_BYTES),
                 'text': _clip(getattr(chunk, 'text', ''), _TEXT_BYTES), 'vector': vector.tolist()}
                for position, (chunk, vector) in enumerate(zip(chunks, vectors))]

    def _write(self, entities: list[dict]) -> None:
        for i in range(0, len(entities), _INSERT_BATCH):
            self.client.upsert(self.collection, entities[i:i + _INSERT_BATCH])
        if entities:
            # Sealed segments search much faster than a growing one (10x in milvus-lite, measured).
            self.client.flush(self.collection)

    def add(self, vectors: np.ndarray) -> None:
        """Append vectors as rows len(self).. (DenseIndex); the store's builds use `sync` instead."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f'expected vectors of shape (n, {self.dimension}), got {vectors.shape}')
        if not len(vectors):
            return
        rows = FileRows(f'rows@{len(self)}', '', len(self), len(vectors))
        self._write(self._entities(rows, [None] * len(vectors), vectors))
        self.files[rows.key] = rows

    def save(self, folder: Path) -> None:
        """Drop the rows of files this store no longer holds, and write where the collection is."""
        keys = sorted(self.files)
        flt = f'file_key not in {json.dumps(keys)}' if keys else 'file_key != ""'
        self.client.delete(self.collection, filter=flt)
        with open(Path(folder) / self.FILE, 'w', encoding='utf-8') as f:
            json.dump({'uri': self.uri, 'collection': self.collection, 'dimension': self.dimension}, f)

    # -- reading ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n = queries.shape[0]
        scores = np.zeros((n, k), dtype=np.float32)
        ids = np.full((n, k), -1, dtype=np.int64)
        if len(self) == 0 or n == 0:
            return scores, ids
        params = {'metric_type': 'IP', 'params': {'ef': max(HNSW_EF, k)}}
        try:
            hits = self.client.search(self.collection, data=queries.tolist(), limit=k, anns_field='vector',
                                      search_params=params, output_fields=['file_key', 'position'])
        except Exception as exc:  # a server gone mid-run: say which one, not a gRPC trace
            raise MilvusIndexError(f'Milvus search failed at {self.uri} ({exc.__class__.__name__}: {exc}): '
                                   'is the server up?') from exc
        for qi, per_query in enumerate(hits):
            j = 0
            for hit in per_query:
                entity = hit.get('entity', hit)
                rows = self.files.get(entity.get('file_key'))
                if rows is None or j >= k:
                    continue
                scores[qi, j] = float(hit['distance'])
                ids[qi, j] = rows.first + int(entity['position'])
                j += 1
        return scores, ids

    def fetch(self, rows: list[int]) -> list[dict]:
        """Text, source and anchor of these store rows, read from Milvus (no local chunk file needed)."""
        by_start = sorted(self.files.values(), key=lambda r: r.first)
        wanted = []
        for row in rows:
            for r in by_start:
                if r.first <= row < r.first + r.count:
                    wanted.append(_row_id(r.key, row - r.first))
                    break
        found = {e['id']: e for e in self.client.get(self.collection, ids=wanted,
                                                      output_fields=['source', 'anchor', 'text'])}
        return [found.get(i, {}) for i in wanted]

    def __len__(self) -> int:
        return sum(r.count for r in self.files.values())

    @classmethod
    def open(cls, folder: Path, files: list[FileRows], token: str = '', client=None) -> 'MilvusIndex':
        """The index a version folder names, mapped to that store's rows; refuses a collection that no
        longer holds them (rebuilt elsewhere, or dropped)."""
        with open(Path(folder) / cls.FILE, encoding='utf-8') as f:
            pointer = json.load(f)
        client = client or connect(pointer['uri'], token)
        index = cls(client, pointer['collection'], int(pointer['dimension']), uri=pointer['uri'], create=False)
        index.files = {r.key: r for r in files}
        held = index.rows_in_collection(list(index.files))
        if held != len(index):
            raise MilvusIndexError(
                f'Milvus collection {pointer["collection"]!r} at {pointer["uri"]} holds {held} of this '
                f'store\'s {len(index)} rows (another build replaced them, or the collection was dropped): run '
                '`python -m huixiangdou.service.feature_store` to sync it again')
        return index
