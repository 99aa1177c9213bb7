"""One base for every expected failure, so the CLI can print a single line for all of them."""

from __future__ import annotations

import os


class MusictokError(Exception):
    """An expected failure whose message names the file (when there is one) and says what to do.

    ``MusictokError(path, reason)`` reads "path: reason"; ``MusictokError(message)`` is just the message.
    Picklable (``__reduce__``), so it survives the trip back from DataLoader and process-pool workers.
    """

    def __init__(self, path_or_message: str | os.PathLike | None = None, reason: str | None = None):
        if reason is None:
            self.path, self.reason = None, str(path_or_message or "")
        else:
            self.path = None if path_or_message is None else str(path_or_message)
            self.reason = reason
        super().__init__(f"{self.path}: {self.reason}" if self.path else self.reason)

    def __reduce__(self):
        return (type(self), (self.path, self.reason) if self.path else (self.reason,))
