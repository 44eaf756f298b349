"""Scripted stand-ins for timing-logic tests only (never to claim a model capability).

A ``ScriptedVad`` says "speech" exactly inside the given spans, so a test knows to the chunk when
the user stops; the other fakes answer instantly, so conversation time is pure agent logic.
``ScriptedStack`` puts them behind the ``ModelStack`` interface and, like it, lists in ``builds`` what
it loaded or made: a test can check that no conversation builds anything once the agent is prepared.
"""

from __future__ import annotations

import numpy as np

from ..audio.frames import SAMPLE_RATE
from ..config import Config
from ..models.stt import Transcript
from ..models.vad import CHUNK, CHUNK_S


class ScriptedVad:
    def __init__(self, spans: list[tuple[float, float]]) -> None:
        self.spans = spans
        self._pending = 0
        self._chunk = 0

    def push(self, audio: np.ndarray) -> list[float]:
        self._pending += len(audio)
        out = []
        while self._pending >= CHUNK:
            self._pending -= CHUNK
            centre = (self._chunk + 0.5) * CHUNK_S
            out.append(1.0 if any(s <= centre < e for s, e in self.spans) else 0.0)
            self._chunk += 1
        return out


class InstantStt:
    """Says ``text`` for any audio; with ``by_time`` [(t, text), ...] a stream says the text of the
    latest entry whose time its audio has reached (time since the stream opened, pre-roll included).
    With ``partials`` a stream also offers each new text unasked, as a streaming recogniser
    refreshes its partial transcript (otherwise it answers only when asked)."""

    def __init__(self, text: str = "hello there", by_time: list[tuple[float, str]] | None = None,
                 partials: bool = False) -> None:
        self.text, self.by_time, self.partials = text, by_time, partials

    def transcribe(self, audio):
        return Transcript(self.text)

    def stream(self):
        return _ScriptedStream(self)


class _ScriptedStream:
    def __init__(self, stt: InstantStt) -> None:
        self.stt, self.samples = stt, 0
        self._offered = ""

    def _text(self) -> str:
        if self.stt.by_time is None:
            return self.stt.text
        reached = [text for t, text in self.stt.by_time if self.samples / SAMPLE_RATE >= t]
        return reached[-1] if reached else ""

    def push(self, audio):
        self.samples += len(audio)
        if self.stt.partials and (text := self._text()) != self._offered:
            self._offered = text
            return Transcript(text, final=False)
        return None

    def partial(self):
        return Transcript(self._text(), final=False)

    def finish(self):
        return Transcript(self._text())

    def close(self):
        pass


class ScriptedLlm:
    """Yields a fixed reply word by word; ``gate`` (a threading.Event) holds it back until the test says.
    ``continues``: it can go on from a reply it was stopped in (``said``), as the embedded model can."""

    def __init__(self, reply: str = "Hi. Nice to meet you.", fail: bool = False, gate=None,
                 continues: bool = False) -> None:
        self.reply, self.fail, self.gate, self.calls = reply, fail, gate, []
        self.can_continue, self.said = continues, []

    def stream(self, messages, cancel=None, said: str = ""):
        self.calls.append(messages)
        self.said.append(said)
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise RuntimeError("model exploded")
        words = [word if i == 0 else " " + word for i, word in enumerate(self.reply.split(" "))]
        done = next(i for i in range(len(words) + 1) if "".join(words[:i]) == said)   # a word's boundary
        for word in words[done:]:
            if cancel is not None and cancel.is_set():
                return
            yield word

    def check(self):
        pass


class ToneTts:
    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds

    def synthesize(self, text, stop=None):
        t = np.arange(int(self.seconds * SAMPLE_RATE)) / SAMPLE_RATE
        yield (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


class ScriptedBackchannels:
    """The backchannel clips: one quiet "Yeah." (made once, like the real bank)."""

    def __init__(self) -> None:
        self.clips = [("Yeah.", np.full(4000, 0.05, np.float32))]


class ScriptedStack:
    """A model stack of fakes. Every model is built on first use and recorded in ``builds``; the
    scripted ``turn_model`` is None unless given (the duplex engine then uses its text rule)."""

    def __init__(self, spans, llm=None, tts_seconds=1.0, slow_llm=None, turn_model=None, stt=None) -> None:
        self.cfg = Config()
        self.spans = spans
        self.builds: list[str] = []
        self._made = {"stt": stt or InstantStt(), "llm": llm or ScriptedLlm(), "tts": ToneTts(tts_seconds),
                      "slow_llm": slow_llm or ScriptedLlm(), "turn_model": turn_model,
                      "backchannels": ScriptedBackchannels()}

    def _get(self, name):
        if name not in self.builds:
            self.builds.append(name)
        return self._made[name]

    def _set(self, name, value):
        self._made[name] = value

    stt = property(lambda self: self._get("stt"), lambda self, v: self._set("stt", v))
    llm = property(lambda self: self._get("llm"), lambda self, v: self._set("llm", v))
    slow_llm = property(lambda self: self._get("slow_llm"), lambda self, v: self._set("slow_llm", v))
    tts = property(lambda self: self._get("tts"), lambda self, v: self._set("tts", v))
    turn_model = property(lambda self: self._get("turn_model"), lambda self, v: self._set("turn_model", v))
    backchannels = property(lambda self: self._get("backchannels"), lambda self, v: self._set("backchannels", v))

    def vad(self):
        return ScriptedVad(self.spans)

    def load_all(self):
        _ = self.stt, self.tts
        self.llm.check()
