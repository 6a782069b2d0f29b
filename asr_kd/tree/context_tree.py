"""A built phonetic decision tree: tri-phone HMM state -> senone.

Each (centre phone, HMM state) has a root node (several states share one root when
the tree was built with ``share_roots="per_phone"``). Internal nodes ask a
:class:`~asr_kd.tree.questions.Question` about the left phone, the right phone or
the state; leaves hold a senone id in ``0..num_senones-1``. Any left and right
context gets an answer, seen in training or not; a centre phone or state without a
root raises :class:`UnknownContextError`.

The tree is saved as JSON with one question, root or node per line, so a person can
read it and ``diff`` two trees (:meth:`ContextTree.save`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from asr_kd.errors import BadInputError
from asr_kd.stage import atomic_write_text, file_digest
from asr_kd.tree.questions import Question
from asr_kd.tree.stats import CENTRE, LEFT, RIGHT, STATE, frame_contexts

FORMAT = "asr-kd-context-tree"
VERSION = 1
_KEY_COLUMN = {"left": LEFT, "right": RIGHT, "state": STATE}


class UnknownContextError(BadInputError, ValueError):
    """A centre phone or HMM state that the tree has no root for."""


class ContextTree:
    """Maps (left, centre, right, state) to a senone.

    Built by :func:`asr_kd.tree.build_tree` or read by :meth:`load`; not meant to be
    constructed by hand. Node ``i`` is a leaf when ``question[i] < 0``.

    Args:
        phones: phone symbol -> id (phones.txt the tree was built with).
        questions: the questions the nodes refer to by index.
        roots: (centre phone, state) -> root node.
        question: ``[N]`` question index per node, -1 for leaves.
        yes: ``[N]`` child for "yes" (-1 for leaves).
        no: ``[N]`` child for "no" (-1 for leaves).
        senone: ``[N]`` senone per leaf (-1 for internal nodes).
        gain: ``[N]`` log-likelihood gain of each split (0 for leaves).
        count: ``[N]`` training frames that reached each node.
        info: free-form build information (configuration, totals), saved as is.
    """

    def __init__(
        self,
        *,
        phones: dict[str, int],
        questions: list[Question],
        roots: dict[tuple[int, int], int],
        question: np.ndarray,
        yes: np.ndarray,
        no: np.ndarray,
        senone: np.ndarray,
        gain: np.ndarray,
        count: np.ndarray,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.phones = dict(phones)
        self.questions = list(questions)
        self.roots = dict(sorted(roots.items()))
        self.question = np.asarray(question, dtype=np.int32)
        self.yes = np.asarray(yes, dtype=np.int32)
        self.no = np.asarray(no, dtype=np.int32)
        self.senone_of_node = np.asarray(senone, dtype=np.int32)
        self.gain = np.asarray(gain, dtype=np.float64)
        self.count = np.asarray(count, dtype=np.float64)
        self.info = dict(info or {})
        self._check()
        self.num_senones = int(self.senone_of_node.max()) + 1
        self._names = {pid: name for name, pid in self.phones.items()}
        self._build_tables()

    def _check(self) -> None:
        n = len(self.question)
        arrays = (self.yes, self.no, self.senone_of_node, self.gain, self.count)
        if n == 0 or any(len(a) != n for a in arrays):
            raise ValueError("tree node arrays are empty or of different lengths")
        leaf = self.question < 0
        if (self.question >= len(self.questions)).any():
            raise ValueError("a node refers to a question that does not exist")
        inner = np.flatnonzero(~leaf)
        for child in (self.yes[inner], self.no[inner]):
            # preorder numbering: a child comes after its parent, so there are no cycles
            if ((child <= inner) | (child >= n)).any():
                raise ValueError("an internal node has a child outside the tree or before it")
        leaves = self.senone_of_node[leaf]
        if (leaves < 0).any() or set(np.unique(leaves)) != set(range(int(leaves.max()) + 1)):
            raise ValueError("leaf senones must use every id 0..S-1")
        if any(not 0 <= r < n for r in self.roots.values()) or not self.roots:
            raise ValueError("tree roots are missing or outside the tree")

    def _build_tables(self) -> None:
        keys = np.array(list(self.roots), dtype=np.int64).reshape(-1, 2)
        self._root_table = np.full((keys[:, 0].max() + 1, keys[:, 1].max() + 1), -1, np.int32)
        self._root_table[keys[:, 0], keys[:, 1]] = list(self.roots.values())
        width = 1 + max((max(q.values) for q in self.questions), default=0)
        self._mask = np.zeros((max(len(self.questions), 1), width), dtype=bool)
        for i, q in enumerate(self.questions):
            self._mask[i, list(q.values)] = True
        self._column = np.array([_KEY_COLUMN[q.key] for q in self.questions] or [0], np.int64)

    # ------------------------------------------------------------------ lookups

    def senone(self, left: int, centre: int, right: int, state: int) -> int:
        """The senone of one tri-phone HMM state; raises for an unknown centre/state."""
        return int(self.senones(np.array([[left, centre, right, state]]))[0])

    def senones(self, contexts: np.ndarray) -> np.ndarray:
        """Senones of many contexts at once.

        Args:
            contexts: ``[N, 4]`` integers (left, centre, right, state).

        Returns:
            ``[N]`` int32 senones.

        Raises:
            UnknownContextError: a centre phone or state has no root (names the first).
            ValueError: negative phone ids or a badly shaped array.
        """
        ctx = np.asarray(contexts)
        if ctx.ndim != 2 or ctx.shape[1] != 4 or not np.issubdtype(ctx.dtype, np.integer):
            raise ValueError(f"contexts must be integers [N, 4], got {ctx.dtype} {ctx.shape}")
        ctx = ctx.astype(np.int64)
        if (ctx < 0).any():
            raise ValueError("phone ids and states must be >= 0")
        centre, state = ctx[:, CENTRE], ctx[:, STATE]
        rows, cols = self._root_table.shape
        known = (centre < rows) & (state < cols)
        node = np.full(len(ctx), -1, dtype=np.int64)
        node[known] = self._root_table[centre[known], state[known]]
        if (node < 0).any():
            i = int(np.flatnonzero(node < 0)[0])
            raise UnknownContextError(self._unknown_message(int(centre[i]), int(state[i])))
        return self._descend(ctx, node)

    def _descend(self, ctx: np.ndarray, node: np.ndarray) -> np.ndarray:
        width = self._mask.shape[1]
        active = np.flatnonzero(self.question[node] >= 0)
        while len(active):
            here = node[active]
            q = self.question[here]
            value = ctx[active, self._column[q]]
            answer = (value < width) & self._mask[q, np.minimum(value, width - 1)]
            node[active] = np.where(answer, self.yes[here], self.no[here])
            active = active[self.question[node[active]] >= 0]
        return self.senone_of_node[node]

    def senones_for_alignment(self, ali: np.ndarray) -> np.ndarray:
        """Senone targets of a monophone alignment.

        Args:
            ali: ``[T, 2]`` (phone id, HMM state) per frame, as the align stage writes.

        Returns:
            ``[T]`` int32 senone per frame.
        """
        return self.senones(frame_contexts(ali))

    def _unknown_message(self, centre: int, state: int) -> str:
        name = self._names.get(centre, "not in phones.txt")
        states = self.phone_states.get(centre)
        if states is None:
            why = "the phone had no frames in the training alignments"
        else:
            why = f"the tree knows states {list(states)} of it"
        return (
            f"the tree has no senone for centre phone {centre} ({name}) in HMM state "
            f"{state}: {why}; rebuild the tree with alignments that cover it"
        )

    # ------------------------------------------------------------ inspection

    @property
    def phone_states(self) -> dict[int, tuple[int, ...]]:
        """Centre phone -> the HMM states the tree has roots for."""
        out: dict[int, list[int]] = {}
        for centre, state in self.roots:
            out.setdefault(centre, []).append(state)
        return {c: tuple(s) for c, s in out.items()}

    def leaf_occupancy(self) -> np.ndarray:
        """``[S]`` float64 training frames per senone (for reporting occupancy spread)."""
        leaf = self.question < 0
        return np.bincount(
            self.senone_of_node[leaf], weights=self.count[leaf], minlength=self.num_senones
        )

    def split_gains(self) -> np.ndarray:
        """Log-likelihood gain of every split, in node order."""
        return self.gain[self.question >= 0]

    def with_all_states(self, num_states: dict[int, int]) -> tuple[ContextTree, list]:
        """The tree with a root for every HMM state of every phone it has seen.

        A state that never occurred in the alignments (silence's rarely visited
        states, say) shares the root of the nearest seen state of the same phone,
        lower first, so that training and decoding graphs can pass through it.

        Args:
            num_states: phone -> number of emitting HMM states (the lang's topology).

        Returns:
            (the tree, the ``(phone, state)`` pairs added).
        """
        roots = dict(self.roots)
        added = []
        for centre, seen in self.phone_states.items():
            for state in range(num_states.get(centre, 0)):
                if state not in seen:
                    nearest = min(seen, key=lambda s: (abs(s - state), s))
                    roots[(centre, state)] = self.roots[(centre, nearest)]
                    added.append((centre, state))
        if not added:
            return self, []
        tree = ContextTree(
            phones=self.phones, questions=self.questions, roots=roots,
            question=self.question, yes=self.yes, no=self.no, senone=self.senone_of_node,
            gain=self.gain, count=self.count, info=self.info,
        )  # fmt: skip
        return tree, added

    def root_split(self, centre: int, state: int) -> Question | None:
        """The question asked first for (centre, state), or None if its root is a leaf."""
        self.senones(np.array([[0, centre, 0, state]]))  # raises for unknown roots
        q = self.question[self.roots[(centre, state)]]
        return None if q < 0 else self.questions[q]

    # ------------------------------------------------------------------ files

    def to_json(self) -> str:
        """The tree as JSON text, one question, root or node per line."""
        nodes = []
        for i in range(len(self.question)):
            if self.question[i] < 0:
                node = {"id": i, "senone": int(self.senone_of_node[i])}
            else:
                node = {"id": i, "question": int(self.question[i]), "yes": int(self.yes[i])}
                node |= {"no": int(self.no[i]), "gain": float(self.gain[i])}
            nodes.append(node | {"count": float(self.count[i])})
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "num_senones": self.num_senones,
            "info": self.info,
            "phones": sorted(([name, pid] for name, pid in self.phones.items()), key=_by_id),
            "questions": [
                {"key": q.key, "name": q.name, "values": list(q.values)} for q in self.questions
            ],
            "roots": [[c, s, node] for (c, s), node in self.roots.items()],
            "nodes": nodes,
        }
        return _dump(doc)

    def save(self, path: Path | str) -> None:
        """Write the tree as JSON (atomically); :meth:`load` reads it back identically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: Path | str) -> ContextTree:
        """Read a tree written by :meth:`save`.

        Raises:
            BadInputError: the file is not a valid tree.
        """
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != FORMAT or doc.get("version") != VERSION:
                raise ValueError(f"not a {FORMAT} version {VERSION} file")
            return cls._from_doc(doc)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise BadInputError(
                f"{path} is not a readable context tree ({e}); it is written by the 'tree' stage"
            ) from None

    @classmethod
    def _from_doc(cls, doc: dict[str, Any]) -> ContextTree:
        nodes = doc["nodes"]
        if [n["id"] for n in nodes] != list(range(len(nodes))):
            raise ValueError("node ids must be 0..N-1 in order")
        tree = cls(
            phones={name: int(pid) for name, pid in doc["phones"]},
            questions=[Question(q["key"], tuple(q["values"]), q["name"]) for q in doc["questions"]],
            roots={(int(c), int(s)): int(n) for c, s, n in doc["roots"]},
            question=[n.get("question", -1) for n in nodes],
            yes=[n.get("yes", -1) for n in nodes],
            no=[n.get("no", -1) for n in nodes],
            senone=[n.get("senone", -1) for n in nodes],
            gain=[n.get("gain", 0.0) for n in nodes],
            count=[n["count"] for n in nodes],
            info=doc.get("info", {}),
        )
        if tree.num_senones != doc["num_senones"]:
            raise ValueError(f"num_senones {doc['num_senones']} disagrees with the leaves")
        return tree


def _by_id(item: list) -> int:
    return item[1]


def _dump(doc: dict[str, Any]) -> str:
    """JSON with each element of a top-level list on a line of its own."""
    parts = []
    for key, value in doc.items():
        if isinstance(value, list) and value:
            inner = ",\n".join("    " + json.dumps(x, separators=(", ", ": ")) for x in value)
            parts.append(f"  {json.dumps(key)}: [\n{inner}\n  ]")
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value, sort_keys=True)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def tree_id(path: Path | str) -> str:
    """A short content hash that names a tree, and so a senone inventory."""
    return file_digest(path)
