"""Kaldi's ``utils/validate_lang.pl`` checks, re-implemented in Python for the tests.

Follows validate_lang.pl of kaldi-asr/kaldi at commit 0b3920838b37 (its checks in its
order): phones.txt and words.txt; ``phones/{context_indep,nonsilence,silence,
optional_silence,disambig}.{txt,int,csl}``; ``phones/{roots,sets}.{txt,int}`` (no phone
twice, every real phone present); ``phones/extra_questions.{txt,int}``; silence,
nonsilence and disambig disjoint and covering phones.txt; optional_silence; #0 and #1;
topo covers exactly the real phones; wdisambig files; oov.{txt,int}; L.fst and
L_disambig.fst olabel-sorted; and for a G.fst: ilabel-sorted, non-empty,
determinizable, no <s>/</s> labels, and L_disambig o G determinizable. The script's
random word-sequence check runs only with word_boundary.int, which a lang directory
without position-dependent phones (ours) does not have.

The script itself needs Perl and OpenFst's command-line tools; this needs kaldifst.
"""

from __future__ import annotations

import re
from pathlib import Path

import kaldifst

ROOTS_PREFIX = re.compile(r"^(shared|not-shared) (split|not-split) ")


def validate_lang(lang: Path | str, g_fst: Path | str | None = None) -> tuple[list[str], list[str]]:
    """Run the checks on a lang directory; returns (errors, warnings).

    Args:
        lang: the lang directory.
        g_fst: a G.fst to check with it (default: ``lang/G.fst`` if present).
    """
    v = _Validator(Path(lang))
    v.run(Path(g_fst) if g_fst else None)
    return v.errors, v.warnings


class _Validator:
    def __init__(self, lang: Path) -> None:
        self.lang = lang
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, msg: str) -> None:
        self.errors.append(msg)

    def lines(self, name: str) -> list[str] | None:
        path = self.lang / name
        if not path.is_file():
            self.error(f"{path} does not exist")
            return None
        text = path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            self.error(f"{path}: the last line has no newline")
        if "\r" in text or re.search(r"[^\S\t\n ]", text):
            self.error(f"{path}: disallowed whitespace (only TAB, LF and SPACE)")
        return text.splitlines()

    def symtab(self, name: str) -> dict[str, str]:
        table: dict[str, str] = {}
        ids: set[str] = set()
        for n, line in enumerate(self.lines(name) or [], 1):
            cols = line.split()
            if len(cols) != 2:
                self.error(f"{name}: expect 2 columns (line {n})")
                continue
            if cols[1] in ids:
                self.error(f"{name}: ID {cols[1]} duplicates")
            ids.add(cols[1])
            table[cols[0]] = cols[1]
        return table

    def run(self, g_fst: Path | None) -> None:
        self.phones = self.symtab("phones.txt")
        self.words = self.symtab("words.txt")
        self.check_disjoint_and_sum()
        for cat in ("context_indep", "nonsilence", "silence", "optional_silence", "disambig"):
            self.check_txt_int_csl(f"phones/{cat}")
        for cat in ("roots", "sets"):
            self.check_txt_int(f"phones/{cat}", self.phones, sym_check=True)
        if (
            not (self.lang / "phones/extra_questions.txt").is_file()
            or not (self.lang / "phones/extra_questions.int").is_file()
        ):
            self.error("phones/extra_questions.{txt,int} do not exist (they may be empty)")
        else:
            self.check_txt_int("phones/extra_questions", self.phones, sym_check=False)
        self.check_optional_silence()
        if not {"#0", "#1"} <= self.disambig:
            self.warnings.append("phones/disambig.txt lacks #0 or #1")
        self.check_topo()
        self.check_wdisambig()
        self.check_txt_int("oov", self.words, sym_check=False)
        for name in ("L.fst", "L_disambig.fst"):
            fst = self.read_fst(self.lang / name)
            if fst is not None and not _sorted(fst, olabel=True):
                self.error(f"{name} is not olabel sorted")
        g_fst = g_fst or (self.lang / "G.fst" if (self.lang / "G.fst").is_file() else None)
        if g_fst is not None:
            self.check_g(g_fst)

    def read_set(self, name: str) -> list[str]:
        return [line.split()[0] for line in self.lines(name) or [] if line.split()]

    def check_disjoint_and_sum(self) -> None:
        silence = self.read_set("phones/silence.txt")
        nonsilence = self.read_set("phones/nonsilence.txt")
        disambig = self.read_set("phones/disambig.txt")
        for name, items in (
            ("silence", silence),
            ("nonsilence", nonsilence),
            ("disambig", disambig),
        ):
            if len(set(items)) != len(items):
                self.error(f"phones/{name}.txt has a phone twice")
        self.silence, self.nonsilence, self.disambig = set(silence), set(nonsilence), set(disambig)
        for a, b in (
            ("silence", "nonsilence"),
            ("silence", "disambig"),
            ("disambig", "nonsilence"),
        ):
            common = getattr(self, a) & getattr(self, b)
            if common:
                self.error(f"{a}.txt and {b}.txt have intersection -- {sorted(common)}")
        if not self.silence or not self.nonsilence:
            self.error("phones/silence.txt or phones/nonsilence.txt is empty")
        known = self.silence | self.nonsilence | self.disambig | {"<eps>"}
        for p in self.phones:
            if p not in known and not p.startswith("#nonterm"):
                self.error(f"phone {p} is not in silence.txt, nonsilence.txt or disambig.txt")

    def check_txt_int_csl(self, cat: str) -> None:
        entries = []
        for n, line in enumerate(self.lines(f"{cat}.txt") or [], 1):
            cols = line.split()
            if len(cols) != 1:
                self.error(f"{cat}.txt: expect 1 column (line {n})")
                return
            entries.append(cols[0])
        ints = self.lines(f"{cat}.int") or []
        if len(ints) != len(entries) or any(
            self.phones.get(e) != i.strip() for e, i in zip(entries, ints, strict=False)
        ):
            self.error(f"{cat}.int doesn't correspond to {cat}.txt")
        csl = self.lines(f"{cat}.csl")
        if csl is None:
            return
        if entries and len(csl) != 1:
            self.error(f"{cat}.csl: expect 1 line")
        elif entries and csl[0].split(":") != [self.phones.get(e) for e in entries]:
            self.error(f"{cat}.csl doesn't correspond to {cat}.txt")
        elif not entries and len(csl) > 1:
            self.error(f"{cat}.csl: expect 0 or 1 line, since empty .txt,int")

    def check_txt_int(self, cat: str, symtab: dict[str, str], sym_check: bool) -> None:
        txt, ints = self.lines(f"{cat}.txt"), self.lines(f"{cat}.int")
        if txt is None or ints is None:
            return
        if sym_check and (not txt or not ints):
            self.error(f"{cat}.txt or {cat}.int is empty")
        if len(txt) != len(ints):
            self.error(f"{cat}.int doesn't correspond to {cat}.txt (line counts)")
            return
        used: set[str] = set()
        for n, (t, i) in enumerate(zip(txt, ints, strict=True), 1):
            syms, ids = ROOTS_PREFIX.sub("", t).split(), ROOTS_PREFIX.sub("", i).split()
            if len(syms) != len(ids) or any(
                symtab.get(s) != x for s, x in zip(syms, ids, strict=False)
            ):
                self.error(f"{cat}.int doesn't correspond to {cat}.txt (line {n})")
                return
            if sym_check and used & set(syms):
                self.error(f"{cat}.txt and {cat}.int contain duplicate symbols (line {n})")
            used |= set(syms)
        if sym_check and not (self.silence | self.nonsilence) <= used:
            self.error(f"{cat}.txt does not contain all silence and non-silence phones")

    def check_optional_silence(self) -> None:
        lines = self.lines("phones/optional_silence.txt") or []
        if len(lines) != 1 or len(lines[0].split()) != 1:
            self.error("only 1 phone expected in phones/optional_silence.txt")
        elif lines[0].split()[0] not in self.silence:
            self.error(f"optional silence {lines[0]} is not in phones/silence.txt")

    def check_topo(self) -> None:
        by_id = {i: p for p, i in self.phones.items()}
        seen: set[str] = set()
        for line in self.lines("topo") or []:
            if re.match(r"^<.*>[ ]*$", line):
                continue
            for i in line.split():
                if i in seen:
                    self.error(f"topo has phone {i} twice")
                if i not in by_id:
                    self.error(f"topo has phone {i} which is not in phones.txt")
                seen.add(i)
        covered = {by_id.get(i) for i in seen}
        real = self.silence | self.nonsilence
        if covered != real:
            self.error(f"topo covers {sorted(covered - real)}, misses {sorted(real - covered)}")

    def check_wdisambig(self) -> None:
        if not (self.lang / "phones/wdisambig.txt").is_file():
            if "#0" not in self.words:
                self.warnings.append('words.txt lacks "#0"')
            return
        syms = self.lines("phones/wdisambig.txt") or []
        words = self.lines("phones/wdisambig_words.int") or []
        phones = self.lines("phones/wdisambig_phones.int") or []
        if not len(syms) == len(words) == len(phones):
            self.error(
                "wdisambig.txt, wdisambig_words.int and wdisambig_phones.int differ in length"
            )
            return
        for s, w, p in zip(syms, words, phones, strict=True):
            if self.words.get(s) != w or self.phones.get(s) != p:
                self.error(f"wdisambig files mismatch at {s}")

    def read_fst(self, path: Path):
        fst = kaldifst.StdVectorFst.read(str(path)) if path.is_file() else None
        if fst is None:
            self.error(f"{path} is missing or not an OpenFst file")
        return fst

    def check_g(self, path: Path) -> None:
        g = self.read_fst(path)
        if g is None:
            return
        if not _sorted(g, olabel=False):
            self.error(f"{path} is not ilabel sorted")
        if g.num_states == 0:
            self.error(f"{path} is empty")
            return
        forbidden = {int(self.words[w]) for w in ("<s>", "</s>") if w in self.words}
        if any(a.ilabel in forbidden or a.olabel in forbidden for _, a in _arcs(g)):
            self.error(f"{path} has <s> or </s> on its arcs")
        det = g.copy()
        if kaldifst.determinize_star(det):  # returns False on success
            self.error(f"fail to determinize {path}")
        L = self.read_fst(self.lang / "L_disambig.fst")
        if L is not None:
            lg = kaldifst.compose(L, g)
            kaldifst.determinize_star(lg)
            if lg.num_states == 0:
                self.error("fail to determinize L_disambig . G")


def _arcs(fst):
    for state in range(fst.num_states):
        for arc in kaldifst.ArcIterator(fst, state):
            yield state, arc


def _sorted(fst, olabel: bool) -> bool:
    for state in range(fst.num_states):
        labels = [a.olabel if olabel else a.ilabel for a in kaldifst.ArcIterator(fst, state)]
        if labels != sorted(labels):
            return False
    return True
