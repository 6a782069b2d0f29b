"""Line-numbered checks on the text files of a corpus given by a user.

Every importer of a user's corpus (LibriSpeech's ``*.trans.txt``, a Kaldi data
directory, Lhotse manifests) reads its files line by line and reports each problem
as ``<file>:<line>: ...``, so the user can open the file at the line. The checks
that all of them share live here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

Where = str
"""``"<file>:<line>"``, the place a problem is reported at."""


def transcript_problem(text: str) -> str | None:
    """Why a transcript is unusable, or ``None``.

    A transcript must hold at least one word and be ASCII: the lexicons (CMUdict, a
    Kaldi English lexicon) and the phone set (ARPAbet) are English.
    """
    if not text.strip():
        return "empty transcript"
    if not text.isascii():
        bad = "".join(dict.fromkeys(c for c in text if not c.isascii()))
        return (
            f"non-ASCII characters {bad!r} in the transcript (the lexicon and phone set are "
            "English: normalise the text to ASCII words first)"
        )
    return None


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line without its newline)`` for every line of a UTF-8 text file.

    Raises:
        UnicodeDecodeError: through the caller's handling; use :func:`decode_problem`.
    """
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            yield lineno, line.rstrip("\n").rstrip("\r")


def decode_problem(path: Path) -> str | None:
    """``"<file>:<line>: ..."`` for the first line that is not UTF-8, or ``None``."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start})"
    return None


class FirstSeen:
    """Remembers where each key was first seen, to report repeats with both places."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.places: dict[str, Where] = {}

    def repeat(self, key: str, where: Where) -> str | None:
        """A problem line if ``key`` was seen before, else ``None`` (and remember it)."""
        if key not in self.places:
            self.places[key] = where
            return None
        return f"{where}: {self.what} {key} is listed twice (first at {self.places[key]})"
