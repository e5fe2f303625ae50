"""Numpy arrays memory-mapped read-only for random access: a query touches a few rows of a big file.

It opens arrays; what they hold is the caller's business.
"""
from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np


def load_mapped(path: Path) -> np.ndarray:
    """`np.load(path, mmap_mode='r')`, told the kernel that reads are random, so a row read from a cold
    disk fetches its own pages rather than a read-ahead window. Pages already in the page cache may still
    be mapped around the row (the process's RSS then counts them as file pages, which are reclaimable)."""
    array = np.load(path, mmap_mode='r')
    raw = getattr(array, '_mmap', None)
    if raw is not None and hasattr(raw, 'madvise') and hasattr(mmap, 'MADV_RANDOM'):
        raw.madvise(mmap.MADV_RANDOM)
    return array
