"""Document parsers (one module per format) and the repository walker that feeds them.

parse_file() turns one file into a Document of Sections or raises ParseError with the reason;
walk_repo() lists what to parse. Nothing here chunks, embeds or indexes.
"""
from huixiangdou.primitive.documents.dispatch import SUPPORTED_SUFFIXES, parse_file
from huixiangdou.primitive.documents.errors import ParseError
from huixiangdou.primitive.documents.walker import (FileEntry, RepoDirError, SkippedFile, WalkResult,
                                                     walk_repo)

__all__ = ['SUPPORTED_SUFFIXES', 'ParseError', 'parse_file', 'walk_repo', 'WalkResult', 'FileEntry',
           'SkippedFile', 'RepoDirError']
