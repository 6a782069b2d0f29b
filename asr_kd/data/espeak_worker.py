"""The libespeak-ng ctypes binding and the helper process that makes synthesis deterministic.

The library keeps global synthesis state between calls (flutter phase, filter memories,
harmonic tables, the noise generator), so two calls with the same text and voice differ
by a few samples and the result depends on everything synthesised before. To make every
call a pure function of its arguments the library runs in a helper process (the
*zygote*), started lazily once per Python process: it initialises espeak once and then
forks a short-lived child per request, so each synthesis starts from the same freshly
initialised library state. The fork costs about 8 ms per call.

The protocol is length-prefixed frames on the helper's stdin and stdout: a JSON request
goes in; a JSON header and a binary payload (16-bit little-endian samples) come back.
:mod:`asr_kd.data.espeak` builds on :func:`synth` and :func:`english_voice_names`.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import struct
import subprocess
import sys
import threading
from ctypes import POINTER, c_char, c_char_p, c_int, c_short, c_ubyte, c_uint, c_void_p
from pathlib import Path

import espeakng_loader

__all__ = ["english_voice_names", "serve", "synth"]

_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_FLAG_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 3, 4, 7
_EVENT_WORD, _EVENT_PHONEME = 1, 7
_RAND_SEED = 1


def synth(
    words: list[str], voice: str, *, rate: int, pitch: int, pitch_range: int, word_gap: int
) -> tuple[dict, bytes]:
    """Synthesise ``words`` (joined with single spaces) in a fresh child of the helper.

    Args:
        words: the words to speak, as espeak should read them.
        voice: espeak voice name with an optional ``+variant``.
        rate: words per minute.
        pitch: base pitch, 0..100.
        pitch_range: pitch range, 0..100.
        word_gap: extra pause between words, in units of 10 ms.

    Returns:
        The reply header and the audio (16-bit little-endian mono samples). The header
        is ``{"voice_error": code}`` when espeak rejects the voice; otherwise it has
        ``rc`` (espeak_Synth's return code), ``sample_rate``, ``word_events``
        (``[text_position, length, sample]`` per word event, 1-based character
        positions), ``phonemes`` (``[name, sample]`` per phoneme event) and
        ``word_phonemes`` (each word's stand-alone phonemes, ``|`` between phonemes).

    Raises:
        RuntimeError: the helper process or its child failed.
    """
    params = {
        _PARAM_RATE: rate,
        _PARAM_PITCH: pitch,
        _PARAM_RANGE: pitch_range,
        _PARAM_WORDGAP: word_gap,
    }
    req = {
        "op": "synth",
        "words": words,
        "voice": voice,
        "params": {str(k): v for k, v in params.items()},
    }
    return _zygote().request(req)


def english_voice_names() -> list[str]:
    """Names of the English voices that select themselves (see ``espeak.english_voices``).

    Raises:
        RuntimeError: the helper process or its child failed.
    """
    header, _ = _zygote().request({"op": "voices"})
    return header["voices"]


# --------------------------------------------------------------------------------------
# Client side.


class _Zygote:
    """Client side: starts the helper process and sends it requests, one at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner = -1

    def request(self, req: dict) -> tuple[dict, bytes]:
        with self._lock:
            if self._proc is None or self._owner != os.getpid() or self._proc.poll() is not None:
                self._start()
            assert self._proc is not None and self._proc.stdin and self._proc.stdout
            try:
                _write_frame(self._proc.stdin, json.dumps(req).encode())
                self._proc.stdin.flush()
                header = json.loads(_read_frame(self._proc.stdout))
                payload = _read_frame(self._proc.stdout)
            except (OSError, EOFError, ValueError) as e:
                self._proc = None
                raise RuntimeError(f"the espeak helper process failed: {e}") from e
        if "error" in header:
            raise RuntimeError(f"espeak worker error: {header['error']}")
        return header, payload

    def _start(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from asr_kd.data.espeak_worker import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._owner = os.getpid()

    def close(self) -> None:
        proc = self._proc
        if proc is not None and self._owner == os.getpid():
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._proc = None


_ZYGOTE: _Zygote | None = None
_ZYGOTE_LOCK = threading.Lock()


def _zygote() -> _Zygote:
    global _ZYGOTE
    with _ZYGOTE_LOCK:
        if _ZYGOTE is None:
            _ZYGOTE = _Zygote()
            atexit.register(_ZYGOTE.close)
        return _ZYGOTE


def _write_frame(stream, data: bytes) -> None:
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)


def _read_frame(stream) -> bytes:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the espeak helper process closed its output")
    (n,) = struct.unpack("<Q", head)
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("truncated reply from the espeak helper process")
    return data


# --------------------------------------------------------------------------------------
# The ctypes binding, used only inside the helper process and its children.


class _Id(ctypes.Union):
    _fields_ = [("number", c_int), ("name", c_char_p), ("string", c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", c_int),
        ("unique_identifier", c_uint),
        ("text_position", c_int),
        ("length", c_int),
        ("audio_position", c_int),
        ("sample", c_int),
        ("user_data", c_void_p),
        ("id", _Id),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", c_char_p),
        ("languages", c_void_p),
        ("identifier", c_char_p),
        ("gender", c_ubyte),
        ("age", c_ubyte),
        ("variant", c_ubyte),
        ("xx1", c_ubyte),
        ("score", c_int),
        ("spare", c_void_p),
    ]


_Callback = ctypes.CFUNCTYPE(c_int, POINTER(c_short), c_int, POINTER(_Event))


class _Library:
    """The initialised library, used only inside the helper process and its children."""

    def __init__(self) -> None:
        assert ctypes.sizeof(_Event) == 40, "EVENT layout differs from espeak-ng 1.52"
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [c_int, c_int, c_char_p, c_int]
        lib.espeak_SetVoiceByName.argtypes = [c_char_p]
        lib.espeak_SetParameter.argtypes = [c_int, c_int, c_int]
        lib.espeak_Synth.argtypes = [c_char_p, ctypes.c_size_t, c_uint, c_int, c_uint, c_uint]
        lib.espeak_Synth.argtypes += [c_void_p, c_void_p]
        lib.espeak_TextToPhonemes.argtypes = [POINTER(c_void_p), c_int, c_int]
        lib.espeak_TextToPhonemes.restype = c_char_p
        lib.espeak_ListVoices.argtypes = [c_void_p]
        lib.espeak_ListVoices.restype = POINTER(POINTER(_Voice))
        lib.espeak_GetCurrentVoice.restype = POINTER(_Voice)
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, data, _INIT_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate})")
        self.lib = lib
        self.chunks: list[bytes] = []
        self.events: list[tuple[int, int, int, int, bytes]] = []
        self._callback = _Callback(self._on_audio)  # keep a reference: espeak holds it
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, num_samples, events) -> int:
        if wav and num_samples > 0:
            self.chunks.append(ctypes.string_at(wav, 2 * num_samples))
        i = 0
        while events[i].type != 0:
            e = events[i]
            name = e.id.string if e.type == _EVENT_PHONEME else b""
            self.events.append((e.type, e.text_position, e.length, e.sample, name))
            i += 1
        return 0

    def synth(self, req: dict) -> tuple[dict, bytes]:
        lib = self.lib
        rc = lib.espeak_SetVoiceByName(req["voice"].encode())
        if rc != 0:
            return {"voice_error": rc}, b""
        for param, value in req["params"].items():
            lib.espeak_SetParameter(int(param), int(value), 0)
        lib.espeak_ng_SetRandSeed(_RAND_SEED)
        text = " ".join(req["words"]).encode()
        rc = lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, _FLAG_UTF8, None, None)
        header = {
            "rc": rc,
            "sample_rate": self.sample_rate,
            "word_events": [[p, n, s] for t, p, n, s, _ in self.events if t == _EVENT_WORD],
            "phonemes": [
                [name.decode("utf-8", "replace"), s]
                for t, _, _, s, name in self.events
                if t == _EVENT_PHONEME
            ],
            # Stand-alone pronunciations, after synthesis (this child's state is disposable).
            "word_phonemes": [self.phonemes(w) for w in req["words"]],
        }
        return header, b"".join(self.chunks)

    def phonemes(self, text: str) -> str:
        """espeak's phonemes for ``text``, ``|`` between phonemes, spaces between words."""
        buf = ctypes.create_string_buffer(text.encode())
        ptr = c_void_p(ctypes.addressof(buf))
        parts = []
        while ptr.value:
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _FLAG_UTF8, ord("|") << 8)
            parts.append((out or b"").decode("utf-8", "replace"))
        return " ".join(parts)

    def voices(self) -> dict:
        lib = self.lib
        found = []
        table = lib.espeak_ListVoices(None)
        i = 0
        while table[i]:
            v = table[i].contents
            langs = _languages(v.languages)
            ident = (v.identifier or b"").decode()
            i += 1
            if not any(lang.startswith("en") for lang in langs) or "en-shaw" in langs:
                continue
            for name in (langs[0], ident.rsplit("/", 1)[-1].lower()):
                if lib.espeak_SetVoiceByName(name.encode()) != 0:
                    continue
                current = lib.espeak_GetCurrentVoice()
                if current and (current.contents.identifier or b"").decode() == ident:
                    found.append(name)
                    break
        return {"voices": found}


def _languages(ptr: int | None) -> list[str]:
    """Decode espeak_VOICE.languages: (priority byte, NUL-terminated code)*, then 0."""
    out = []
    while ptr and ctypes.c_ubyte.from_address(ptr).value != 0:
        code = ctypes.string_at(ptr + 1)
        out.append(code.decode())
        ptr += len(code) + 2
    return out


# --------------------------------------------------------------------------------------
# Server side: the helper process.


def serve() -> None:
    """Helper process main loop: one forked child per request, replies on stdout.

    The protocol's output is a private copy of stdout; fd 1 itself goes to stderr so that
    nothing the C library prints can corrupt a reply.
    """
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    lib = _Library()
    inp = sys.stdin.buffer
    while True:
        try:
            req = json.loads(_read_frame(inp))
        except EOFError:
            return
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: handle the request from the pristine state, then vanish
            try:
                os.close(read_fd)
                _answer(lib, req, write_fd)
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as r:
            reply = r.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not _complete(reply):
            reply = _frames({"error": f"worker exited with status {status}"}, b"")
        out.write(reply)
        out.flush()


def _answer(lib: _Library, req: dict, fd: int) -> None:
    try:
        header, payload = lib.synth(req) if req["op"] == "synth" else (lib.voices(), b"")
    except Exception as e:  # reported to the client, which raises
        header, payload = {"error": repr(e)}, b""
    with os.fdopen(fd, "wb") as w:
        w.write(_frames(header, payload))


def _frames(header: dict, payload: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + struct.pack("<Q", len(payload)) + payload


def _complete(reply: bytes) -> bool:
    """Whether ``reply`` is exactly two whole frames."""
    if len(reply) < 16:
        return False
    (n,) = struct.unpack_from("<Q", reply, 0)
    if len(reply) < 16 + n:
        return False
    (m,) = struct.unpack_from("<Q", reply, 8 + n)
    return len(reply) == 16 + n + m
