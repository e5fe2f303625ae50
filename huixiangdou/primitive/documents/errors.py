"""The one error a parser raises: why a file could not be turned into text.

It carries a human reason for the builder's skipped-files report; it does not log or retry anything.
"""
from __future__ import annotations


class ParseError(Exception):
    """A file was skipped; the message is the reason shown to the user ("PDF is password-protected")."""
