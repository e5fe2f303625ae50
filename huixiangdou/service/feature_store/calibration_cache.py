"""A workdir's memory of its last calibration, so a recalibration redoes only what changed: each example's
evidence keyed by (store content, example text), and the message model's fits keyed by the example set.

It decides nothing: a miss, a stale row or a damaged file only costs the time to compute again. The example
embeddings themselves live in the embedding cache (builder.py), keyed by model and text.
"""
from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Callable

import numpy as np
import xxhash
from loguru import logger

from huixiangdou.service.feature_store.message_model import FoldLogits, MessageFits, MessageModel
from huixiangdou.service.feature_store.reject_evidence import RejectEvidence

CALIBRATION_CACHE = 'calibration_cache.sqlite'
# Part of every key: bump it when evidence or the message model's fitting changes what it computes.
CACHE_VERSION = 2
KEEP_FITS = 4       # example sets remembered (an undo in the console finds its fits again)


def _digest(*parts: object) -> bytes:
    h = xxhash.xxh3_128()
    for part in parts:
        h.update(str(part).encode('utf-8', 'surrogatepass'))
        h.update(b'\0')
    return h.digest()


def store_key(store) -> bytes:
    """What a store's evidence depends on: its model, chunking, documents (by content) and dense index."""
    m = store.manifest
    files = sorted((source, record.sha256) for source, record in m.files.items())
    return _digest(CACHE_VERSION, m.embedding_model, m.dimension, m.chunk_size, m.chunk_overlap, m.min_chunk_chars,
                   m.ocr, json.dumps(files, ensure_ascii=False), store.dense.describe(), len(store.chunks))


def examples_key(model_id: str, texts: list[str], labels: np.ndarray) -> bytes:
    """An example set, in order (the folds depend on the order), for one embedding model."""
    return _digest(CACHE_VERSION, model_id, json.dumps(texts, ensure_ascii=False), np.asarray(labels).tobytes().hex())


class CalibrationCache:
    """Usage:
        cache = CalibrationCache(work_dir / CALIBRATION_CACHE)
        evidence = cache.evidence(store_key(store), texts, compute=lambda missing: ...)
        fits = cache.fits(key) or MessageFits.fit(...); cache.put_fits(key, fits)
        cache.close()
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.evidence_hits = 0
        self.evidence_computed = 0
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f'{self.path.name}.damaged-{int(time.time())}')
            logger.warning('calibration cache {} is unreadable ({}); moved to {} and starting an empty one',
                           self.path, exc, aside.name)
            self.path.replace(aside)
            self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        db.execute('PRAGMA journal_mode=WAL')
        db.execute('CREATE TABLE IF NOT EXISTS evidence (key BLOB PRIMARY KEY, store BLOB NOT NULL, value BLOB NOT NULL)')
        db.execute('CREATE TABLE IF NOT EXISTS fits (key BLOB PRIMARY KEY, used REAL NOT NULL, value BLOB NOT NULL)')
        db.execute('SELECT count(*) FROM evidence WHERE key = x\'00\'').fetchone()  # fails here if damaged
        return db

    # -- evidence --------------------------------------------------------------------------------
    def evidence(self, store: bytes, texts: list[str],
                 compute: Callable[[list[str]], list[RejectEvidence]]) -> list[RejectEvidence]:
        """Each text's evidence against the store `store` identifies; `compute` sees only the texts this
        store has not seen. Rows of other stores are dropped: the documents moved on."""
        keys = [_digest(store.hex(), t) for t in texts]
        found: dict[bytes, RejectEvidence] = {}
        for i in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            part = keys[i:i + 500]
            for key, blob in self._db.execute(
                    f'SELECT key, value FROM evidence WHERE key IN ({",".join("?" * len(part))})', part):
                try:
                    found[key] = _evidence_from(blob)
                except (ValueError, KeyError, TypeError):
                    pass  # computed again below
        missing = list(dict.fromkeys(t for k, t in zip(keys, texts) if k not in found))
        if missing:
            fresh = compute(missing)
            rows = []
            for text, ev in zip(missing, fresh):
                key = _digest(store.hex(), text)
                found[key] = ev
                rows.append((key, store, _evidence_blob(ev)))
            with self._db:
                self._db.executemany('INSERT OR REPLACE INTO evidence (key, store, value) VALUES (?, ?, ?)', rows)
        with self._db:
            self._db.execute('DELETE FROM evidence WHERE store != ?', (store,))
        self.evidence_computed += len(missing)
        self.evidence_hits += len(texts) - len(missing)
        return [found[k] for k in keys]

    # -- message-model fits ----------------------------------------------------------------------
    def fits(self, key: bytes) -> MessageFits | None:
        row = self._db.execute('SELECT value FROM fits WHERE key = ?', (key,)).fetchone()
        if row is None:
            return None
        try:
            fits = _fits_from(row[0])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning('calibration cache: unreadable message-model fits ({}); fitting again', exc)
            return None
        with self._db:
            self._db.execute('UPDATE fits SET used = ? WHERE key = ?', (time.time(), key))
        return fits

    def put_fits(self, key: bytes, fits: MessageFits) -> None:
        with self._db:
            self._db.execute('INSERT OR REPLACE INTO fits (key, used, value) VALUES (?, ?, ?)',
                             (key, time.time(), _fits_blob(fits)))
            self._db.execute('DELETE FROM fits WHERE key NOT IN (SELECT key FROM fits ORDER BY used DESC LIMIT ?)',
                             (KEEP_FITS,))

    def close(self) -> None:
        self._db.close()


# -- formats ---------------------------------------------------------------------------------------
_SCALARS = ('cosine', 'cosine_top5', 'bm25', 'coverage', 'known_words')


def _evidence_blob(ev: RejectEvidence) -> bytes:
    meta = {name: float(getattr(ev, name)) for name in _SCALARS}
    meta['query'] = ev.query
    meta['word_specificity'] = [[w, float(s)] for w, s in ev.word_specificity]
    head = json.dumps(meta, ensure_ascii=False).encode('utf-8')
    return len(head).to_bytes(4, 'little') + head + np.asarray(ev.vector, dtype=np.float32).tobytes()


def _evidence_from(blob: bytes) -> RejectEvidence:
    """The evidence the calibration weighs (no tokens, no best chunks: explaining needs the live store)."""
    n = int.from_bytes(blob[:4], 'little')
    meta = json.loads(blob[4:4 + n].decode('utf-8'))
    vector = np.frombuffer(blob[4 + n:], dtype=np.float32).copy()
    return RejectEvidence(query=meta['query'], vector=vector, tokens=[],
                          word_specificity=[(w, s) for w, s in meta['word_specificity']],
                          **{name: meta[name] for name in _SCALARS})


def _fits_blob(fits: MessageFits) -> bytes:
    m = fits.full
    arrays = {'center': m.center, 'vector_coef': m.vector_coef, 'idf': m.idf, 'ngram_coef': m.ngram_coef,
              'cross_fitted': fits.cross_fitted}
    for i, fold in enumerate(fits.folds):
        arrays[f'test{i}'] = fold.test
        if fold.train_logits is not None:
            arrays[f'train_logits{i}'], arrays[f'test_logits{i}'] = fold.train_logits, fold.test_logits
            arrays[f'train_fold{i}'] = fold.train_fold
    meta = {'ngrams': m.ngrams, 'intercept': m.intercept, 'folds': len(fits.folds)}
    arrays['meta'] = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode('utf-8'), dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _fits_from(blob: bytes) -> MessageFits:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    meta = json.loads(a['meta'].tobytes().decode('utf-8'))
    full = MessageModel(a['center'], a['vector_coef'], meta['ngrams'], a['idf'], a['ngram_coef'], meta['intercept'])
    folds = [FoldLogits(a[f'test{i}'], a.get(f'train_logits{i}'), a.get(f'test_logits{i}'), a.get(f'train_fold{i}'))
             for i in range(meta['folds'])]
    return MessageFits(full, a['cross_fitted'], folds)
