"""Which senones belong to which phone: the tree's roots and the leaves below them.

Every (centre phone, HMM state) of the tree has a root; the senones of a phone are the
leaves reachable from its roots. Phones are named by their ARPAbet base
(:func:`asr_kd.lang.phone_classes.base_phone`: ``AH``, not ``AH1_B``), so a phone of a
position- or stress-dependent phone set covers all its variants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asr_kd.errors import ConfigError
from asr_kd.lang.phone_classes import base_phone, is_real_phone
from asr_kd.stage import require_file
from asr_kd.tree.context_tree import ContextTree

TARGETS_STAGE = "senone-targets"  # writes tree.json beside the targets


def senone_owners(tree: ContextTree) -> dict[int, set[str]]:
    """Senone -> the base phones whose roots reach it (one phone each in practice)."""
    names = {pid: base_phone(name) for name, pid in tree.phones.items() if is_real_phone(name)}
    owners: dict[int, set[str]] = {}
    for (centre, _state), root in tree.roots.items():
        phone = names.get(centre)
        if phone is None:
            continue
        stack = [root]
        while stack:
            node = stack.pop()
            if tree.question[node] < 0:
                owners.setdefault(int(tree.senone_of_node[node]), set()).add(phone)
            else:
                stack += [int(tree.yes[node]), int(tree.no[node])]
    return owners


def senone_phone_mask(tree: ContextTree, phone: str) -> np.ndarray:
    """``[S]`` bool: the senones of ``phone`` (its base name, any case).

    Raises:
        ConfigError: the tree has no such phone (naming the phones it has), or one of the
            phone's senones is shared with another phone (the frames cannot be told apart).
    """
    want = phone.upper()
    owners = senone_owners(tree)
    mask = np.zeros(tree.num_senones, dtype=bool)
    for senone, phones in owners.items():
        if want in phones:
            if len(phones) > 1:
                raise ConfigError(
                    f"senone {senone} is shared by {', '.join(sorted(phones))}: the frames of "
                    f"{want} cannot be left out alone; choose another phone"
                )
            mask[senone] = True
    if not mask.any():
        known = sorted({p for ps in owners.values() for p in ps})
        raise ConfigError(f"omit_phone {phone!r} is not a phone of the tree ({', '.join(known)})")
    return mask


def phone_senones(data_dir: Path | str, phone: str) -> list[int]:
    """The senone ids of ``phone`` in a ``senone-targets`` output (its ``tree.json``)."""
    path = require_file(Path(data_dir) / "tree.json", TARGETS_STAGE)
    return np.flatnonzero(senone_phone_mask(ContextTree.load(path), phone)).tolist()
