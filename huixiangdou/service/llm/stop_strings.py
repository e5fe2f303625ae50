"""Cut a streamed answer at the first of the client's stop strings (OpenAI's `stop`), even when a stop
string arrives split across pieces: text that could still become one is held back until it cannot.

It does not stop the model; the caller does that once `stopped` is True.
"""
from __future__ import annotations


class StopScanner:
    """Feed pieces in, get back the text that is safe to send.

    Usage:
        scanner = StopScanner(['\\nQ:'])
        scanner.feed('Paris.\\n')   # 'Paris.'   ('\\n' is held: it may start '\\nQ:')
        scanner.feed('Q: next')     # ''         and scanner.stopped is now True
        scanner.flush()             # ''         (what was held, when the answer ended without a stop)
    """

    def __init__(self, stops: list[str] | tuple[str, ...]):
        if any(not s for s in stops):
            raise ValueError('stop strings must not be empty')
        self.stops = tuple(stops)
        self.stopped = False
        self._held = ''

    def feed(self, text: str) -> str:
        if self.stopped:
            return ''
        if not self.stops:
            return text
        buffer = self._held + text
        cut = min((i for i in (buffer.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self._held = True, ''
            return buffer[:cut]
        keep = self._partial_suffix(buffer)
        self._held = buffer[len(buffer) - keep:] if keep else ''
        return buffer[:len(buffer) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ''
        return '' if self.stopped else held

    def _partial_suffix(self, buffer: str) -> int:
        """Length of the longest end of `buffer` that is the start of some stop string."""
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest

