"""Architecture 2, the Parallel Cognitive Voice Architecture: a fast and a slow LLM on the same turn.

At the end of the user's turn both models get the same context at the same moment. The fast one's
reply streams to speech at once (as in ``streaming``); the slow one thinks longer. When the slow
reply arrives, ``decide`` compares it with what the fast one said and will say:

- **keep**: they agree (word similarity >= ``ParallelConfig.keep_similarity``);
- **too late**: the fast reply was over before the slow one came (the turn never waits for it);
- **replace, unheard**: nothing has been played yet: the slow reply simply takes the fast one's place;
- **amend**: the slow reply opens the way the spoken part did: continue with the slow reply's rest;
- **replace**: they disagree: after the piece now playing ends (no word is cut), say "Actually, " and
  the slow reply, as a person correcting course.

The history keeps what was actually spoken (fast pieces heard + slow pieces heard). A slow model
that errors or overruns ``ParallelConfig.slow_timeout_s`` leaves the fast reply standing; the error is logged once.
"""

from __future__ import annotations

import difflib
import threading
import time
from dataclasses import dataclass

from ..config import Config, ParallelConfig
from ..textnorm import normalize
from .cascade import StreamingConversation
from .stack import ModelStack
from .talker import ThinkDone
from .text_pieces import split_pieces
from .workers import JobFailed, Worker


@dataclass
class SlowDone:
    turn: int
    gen: int
    text: str
    elapsed_s: float


def similarity(a: str, b: str) -> float:
    wa, wb = normalize(a), normalize(b)
    if not wa and not wb:
        return 1.0
    return difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).ratio()


def decide(spoken: str, fast_so_far: str, slow: str, cfg: ParallelConfig = ParallelConfig()) -> tuple[str, str]:
    """(decision, text to say next) for a slow reply that arrived while the fast one may be playing.

    ``spoken``: what the user has started hearing; ``fast_so_far``: everything the fast model wrote.
    """
    if not slow.strip():
        return "keep", ""
    if similarity(fast_so_far, slow) >= cfg.keep_similarity:
        return "keep", ""
    if not spoken:
        return "replace_unheard", slow
    pieces = split_pieces(slow)
    for k in range(1, len(pieces)):
        if similarity(spoken, " ".join(pieces[:k])) >= cfg.amend_similarity:
            return "amend", " ".join(pieces[k:])
    body = slow.strip()
    if body[:1].isupper() and not body.startswith("I ") and not body.startswith("I'"):
        body = body[0].lower() + body[1:]
    return "replace", f"{cfg.connector} {body}"


class ParallelConversation(StreamingConversation):
    name = "parallel"
    description = "architecture 2: fast LLM answers at once (streaming TTS), a slow LLM thinks longer and may override"

    @classmethod
    def load(cls, models: ModelStack, cfg: Config) -> None:
        super().load(models, cfg)
        _ = models.slow_llm

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.slow = Worker(f"{self.name}-slow", depth=1, account=self.cpu, model="slow_llm")
        self._slow_error_logged = False

    def _reset_reply(self) -> None:
        super()._reset_reply()
        self._decided = False

    def _start_reply(self, turn: int, gen: int, audio) -> None:
        self.slow.cancel()  # a slow reply still running for an earlier turn is no longer wanted
        # The slow model needs the transcript, so the think thread transcribes once and starts it.
        self.think.submit(lambda cancel: self._think_pair(turn, gen, audio, cancel))

    def _think_pair(self, turn: int, gen: int, audio, cancel: threading.Event) -> ThinkDone:
        user_text = self._transcribe(turn, audio)
        if not user_text:
            return ThinkDone(turn, gen, "", "", 0)
        self._user_text = user_text
        started = time.monotonic()
        self.slow.submit(lambda slow_cancel: self._slow_reply(turn, gen, user_text, started, slow_cancel))
        return self.generate(turn, gen, user_text, self.models.llm, cancel)

    def _slow_reply(self, turn: int, gen: int, user_text: str, started: float, cancel: threading.Event) -> SlowDone:
        pieces = []
        for token in self.models.slow_llm.stream(self.messages(user_text), cancel):
            pieces.append(token)
            if time.monotonic() - started > self.cfg.parallel.slow_timeout_s:
                raise TimeoutError(f"the slow model took over {self.cfg.parallel.slow_timeout_s:.0f} s")
        text = "".join(pieces).strip()
        elapsed = time.monotonic() - started
        self.emit("slow.done", turn, text=text, elapsed_s=round(elapsed, 3))
        return SlowDone(turn, gen, text, elapsed)

    def _collect(self) -> None:
        super()._collect()
        result = self.slow.poll()
        if isinstance(result, JobFailed):
            if not self._slow_error_logged:
                self.emit("error", self.turn, where="slow", message=str(result.error))
                self._slow_error_logged = True
            self._decided = True
        elif isinstance(result, SlowDone):
            if result.gen == self.voice.gen and not self._decided:
                self._override(result)
            else:  # the fast reply was over before the slow one came: the turn did not wait for it
                self.emit("parallel.decision", result.turn, decision="too_late", heard_change=False,
                          slow=result.text, slow_elapsed_s=round(result.elapsed_s, 3))

    def _override(self, slow: SlowDone) -> None:
        self._decided = True
        spoken = " ".join(self._spoken)
        fast = self._done.reply if self._done is not None else "".join(self._draft)
        decision, text = decide(spoken, fast, slow.text, self.cfg.parallel)
        self.emit("parallel.decision", slow.turn, decision=decision, similarity=round(similarity(fast, slow.text), 3),
                  heard_change=decision in ("amend", "replace"), spoken=spoken, slow=slow.text,
                  slow_elapsed_s=round(slow.elapsed_s, 3))
        if decision in ("keep", "too_late"):
            return
        # Continue with the slow model's content at the next piece boundary: a new generation.
        self.think.cancel()
        gen, turn, user_text = self.voice.new_generation(), slow.turn, self._user_text
        self.playback.drop_unstarted()
        self._done, self._received = None, 0
        self.think.submit(lambda cancel: self._say_all(turn, gen, user_text, text))

    def _say_all(self, turn: int, gen: int, user_text: str, text: str) -> ThinkDone:
        pieces = sum(self.voice.say(turn, gen, i, piece) for i, piece in enumerate(split_pieces(text)))
        return ThinkDone(turn, gen, user_text, text, pieces)

    def workers(self) -> list:
        return super().workers() + [self.slow]
