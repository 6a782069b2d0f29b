#!/usr/bin/env python3
"""Print the LibriSpeech parts a recipe config names for a role (LibriSpeech only).

Usage: local/librispeech/parts.py CONFIG ROLE... (ROLE: train, dev, test or all)

Reads the config's ``librispeech:`` section (``train``: one part, ``dev``: one part,
``test``: a list), resolving ``parent:`` files, and prints each role's parts
space-separated, one line per role (one call for all roles: it imports lhotse).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from asr_kd.config import load_section
from asr_kd.data.librispeech import LIBRISPEECH_PARTS
from asr_kd.errors import ConfigError


@dataclass(frozen=True)
class LibriSpeechParts:
    """The parts each role of the recipe reads."""

    train: str = "train-clean-5"
    dev: str = "dev-clean-2"
    test: list[str] = field(default_factory=lambda: ["test-clean"])

    def __post_init__(self) -> None:
        unknown = [p for p in (self.train, self.dev, *self.test) if p not in LIBRISPEECH_PARTS]
        if unknown:
            raise ConfigError(
                f"librispeech: unknown part(s) {', '.join(unknown)}; "
                f"known parts: {', '.join(LIBRISPEECH_PARTS)}"
            )

    def role(self, name: str) -> list[str]:
        if name == "all":
            return list(dict.fromkeys([self.train, self.dev, *self.test]))
        if name not in ("train", "dev", "test"):
            raise ConfigError(f"role must be train, dev, test or all, not {name!r}")
        value = getattr(self, name)
        return value if isinstance(value, list) else [value]


def read_parts(config: str) -> LibriSpeechParts:
    return load_section(config, "librispeech", LibriSpeechParts)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    try:
        parts = read_parts(sys.argv[1])
        print("\n".join(" ".join(parts.role(role)) for role in sys.argv[2:]))
    except ConfigError as e:
        sys.exit(f"{sys.argv[0]}: {e}")
