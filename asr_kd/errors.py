"""Exceptions that carry a message meant for the user.

Library code raises these with a message that names the file or utterance, what was
expected and which stage produces the missing or bad input. The CLI turns them into
a one-line error and a non-zero exit; anything else is a bug and keeps its traceback.
"""

from collections.abc import Iterable


class AsrKdError(Exception):
    """Base class of every error the toolkit reports to its user."""


class BadInputError(AsrKdError):
    """An input file, utterance or transcript is unusable (corrupt, empty, mismatched)."""


class MissingInputError(AsrKdError):
    """An input a stage needs does not exist (usually: an earlier stage has not run)."""


class ConfigError(AsrKdError):
    """A configuration file or override is invalid."""


class StageBusyError(AsrKdError):
    """Another process is writing the same stage output (its lock is held)."""


class StaleInputError(AsrKdError):
    """A finished output was made from an input that an upstream stage has since redone."""


def first_few(ids: Iterable[str], shown: int = 8) -> str:
    """The first ``shown`` distinct ids, comma-separated, and how many more there are.

    >>> first_few(["a", "b", "b", "c"], shown=2)
    'a, b and 1 more'
    """
    unique = list(dict.fromkeys(ids))
    more = f" and {len(unique) - shown} more" if len(unique) > shown else ""
    return ", ".join(unique[:shown]) + more
