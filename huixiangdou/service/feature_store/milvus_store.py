"""Which dense index a feature store uses: FAISS files in the version folder (default) or a Milvus
collection, chosen by [feature_store] vector_store at build and named by the version folder at load.

Only the dense side moves to Milvus; BM25, the reject model and the manifest stay in the workdir.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from loguru import logger

from huixiangdou.config import FeatureStoreConfig
from huixiangdou.primitive.milvus_index import FileRows, MilvusIndex, MilvusIndexError, connect
from huixiangdou.service.feature_store.store_files import Manifest, StoreError

# The same variable config.py reads for [feature_store] milvus_token. A loading worker has the version
# folder, not the config, and the token must never be written into the folder.
TOKEN_ENV = 'HUIXIANGDOU_MILVUS_TOKEN'


def milvus_uri(uri: str) -> str:
    """A server URI as is; a milvus-lite path made absolute (relative to the current folder), so every
    process that loads the store opens the same one."""
    return uri if '://' in uri else str(Path(uri).expanduser().resolve())


def file_rows(manifest: Manifest) -> list[FileRows]:
    return [FileRows(source, r.sha256, r.first, r.count) for source, r in manifest.files.items()]


def make_milvus_index(config: FeatureStoreConfig, manifest: Manifest, chunks, vectors: np.ndarray) -> MilvusIndex:
    """The dense index a build with vector_store = "milvus" writes: the collection synced to these files
    (changed and new files upserted, unchanged ones untouched; deleted ones dropped when it is saved)."""
    uri = milvus_uri(config.milvus_uri)
    try:
        index = MilvusIndex(connect(uri, config.resolved_milvus_token), config.milvus_collection,
                            manifest.dimension, uri=uri, exact_max_rows=config.exact_search_max_chunks)
        counts = index.sync(file_rows(manifest), chunks, vectors)
    except MilvusIndexError as exc:
        raise StoreError(str(exc)) from exc
    except Exception as exc:  # pymilvus errors: name the server and the fix, not a gRPC trace
        raise StoreError(f'Milvus at {uri} refused the build ({exc.__class__.__name__}: {exc}): check that '
                         'the server is up and [feature_store] milvus_collection is yours') from exc
    logger.info('Milvus collection {} at {}: {} file(s) unchanged, {} upserted', config.milvus_collection, uri,
                counts['kept'], counts['inserted'])
    return index


def uses_milvus(folder: Path) -> bool:
    """Whether a version folder's dense index is in Milvus (it holds the pointer, not a FAISS file)."""
    return (Path(folder) / MilvusIndex.FILE).is_file()


def open_milvus_index(folder: Path, manifest: Manifest) -> MilvusIndex:
    """The Milvus index a published version folder names, mapped to that version's rows."""
    try:
        return MilvusIndex.open(folder, file_rows(manifest), token=os.environ.get(TOKEN_ENV, ''))
    except MilvusIndexError as exc:
        raise StoreError(str(exc)) from exc
    except Exception as exc:
        raise StoreError(f'cannot read the Milvus collection that {folder} names ({exc.__class__.__name__}: '
                         f'{exc}): check that the server is up, or rebuild with vector_store = "faiss"') from exc
