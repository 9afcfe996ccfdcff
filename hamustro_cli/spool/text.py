"""Reading text that is not UTF-8 (a tampered or damaged spool): escaped to show it, as lone
surrogates for the sender, which sets such rows aside."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hamustro_cli.spool import TrackSpool
from hamustro_cli.spool.classify import spool_error

_T = TypeVar("_T")


class TextReads(TrackSpool):
    """Reads of text that may not be UTF-8."""

    def _read_escaped(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows for the sender. Text that is not UTF-8 (a tampered or damaged file) is read with
        its bad bytes as lone surrogates, which the sender finds and sets aside as rejected:
        one damaged row must not stop every flush. Read strictly first (the fast path)."""
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            # sqlite3 says only in words that a column did not decode
            if "decode" not in str(exc).lower():
                raise spool_error(exc, self.path, "reading the spool") from None
        return self._decoding("surrogateescape", lambda: self._read(sql, params))

    def _leniently(self, read: Callable[[], _T]) -> _T:
        """read() with text that is not UTF-8 (a tampered or damaged spool) decoded with its bad
        bytes escaped (\\xff), so that `events` and `status --events` show such a row instead of
        failing. Only around the reads that show rows, never between them: everything else
        (the sender above all) reads text strictly."""
        return self._decoding("backslashreplace", read)

    def _decoding(self, errors: str, read: Callable[[], _T]) -> _T:
        """read() with the connection's text decoded as UTF-8 with `errors` (a codec error
        handler), then the connection's own decoding back. A C-level factory keeps a million
        rows fast."""
        before = self.db.text_factory
        self.db.text_factory = functools.partial(str, encoding="utf-8", errors=errors)
        try:
            return read()
        finally:
            self.db.text_factory = before
