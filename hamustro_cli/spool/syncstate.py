"""What flushes record about sending to each destination (read by `TrackSpool.sync_state`):
failures, backoffs, stops, the last error, the collector's address, the batch size learned."""

from __future__ import annotations

import json
from typing import Any

from hamustro_cli.spool import HALTED_UNSAID, TrackSpool, _scoped
from hamustro_cli.spool.records import BatchSize


class SyncRecords(TrackSpool):
    """What flushes record in meta."""

    def record_failure(
        self,
        error: dict[str, Any],
        failures: int,
        *,
        backoff_until: int | None = None,
        halt_reason: str | None = None,
        destination: str | None = None,
    ) -> None:
        """A flush for `destination` could not deliver: count it, keep its error, and back off
        or stop (given a `halt_reason`: halted until a person acts)."""
        changes: dict[str, str | None] = {"failures": str(failures), "last_error": _to_json(error)}
        if type(error.get("at")) is int:  # when it failed, by the clock then (see triggers.trusted_times)
            changes["failed_at"] = str(error["at"])
        if halt_reason is not None:
            changes["halted"] = halt_reason or HALTED_UNSAID
        if backoff_until is not None:
            changes["backoff_until"] = str(backoff_until)
        self._set_metas("recording a failed send", _scoped_all(changes, destination))

    def record_error(self, error: dict[str, Any], destination: str | None = None) -> None:
        """Keep an error (a refused batch, an unusable protobuf) for `status`, without counting
        a failed flush: it holds no backoff."""
        self._set_metas("recording an error", _scoped_all({"last_error": _to_json(error)}, destination))

    def record_success(self, keep_error: bool, destination: str | None = None) -> None:
        """A flush for `destination` delivered (or set aside) what it took up: no backoff, no
        stop, and unless something was rejected, no last error."""
        clear: dict[str, str | None] = {
            "backoff_until": None,
            "failures": None,
            "halted": None,
            "failed_at": None,
        }
        if not keep_error:
            clear["last_error"] = None
        self._set_metas("recording state", _scoped_all(clear, destination))

    def last_error(self, destination: str | None = None) -> dict[str, Any] | None:
        key = _scoped("last_error", destination)
        raw = self._get_metas(key).get(key)
        try:
            error = json.loads(raw) if raw else None
        except ValueError:
            return None
        return error if isinstance(error, dict) else None

    def remember_address(self, host: str, address: str) -> None:
        if self.resolved_address(host) != address:
            self._set_metas("recording the collector's address", {f"resolved:{host}": address})

    def batch_size(self, destination: str | None = None) -> BatchSize | None:
        """The batch size a 413 or a timeout taught the sender for `destination`, and its
        successes in a row since (sending.BatchSizer); None when none holds (then
        max_batch_events)."""
        key = _scoped("batch_size", destination)
        raw = (self._get_metas(key).get(key) or "").split()
        if len(raw) != 2 or not all(part.isascii() and part.isdigit() and len(part) < 10 for part in raw):
            return None  # never set, or not what this code writes: start from max_batch_events
        size, streak = int(raw[0]), int(raw[1])
        return BatchSize(size, streak) if size >= 1 else None

    def remember_batch_size(self, learned: BatchSize | None, destination: str | None = None) -> None:
        value = None if learned is None else f"{learned.size} {learned.streak}"
        self._set_metas("recording the batch size", {_scoped("batch_size", destination): value})


def _scoped_all(values: dict[str, str | None], destination: str | None) -> dict[str, str | None]:
    return {_scoped(key, destination): value for key, value in values.items()}


def _to_json(error: dict[str, Any]) -> str:
    return json.dumps(error)
