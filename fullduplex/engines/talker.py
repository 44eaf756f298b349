"""What every conversation that hears with the VAD and speaks with the LLM and TTS has, once.

Per call: the VAD and its segmenter (the ears' first stage), the ``Voice`` (TTS to playback), the
``think`` worker (the LLM) and the conversation history. And the one way a reply is written:
``generate`` streams the LLM, cuts its tokens into pieces and hands them to the voice as they
complete (or the whole reply at the end, for the sequential baseline).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from ..models.vad import SpeechSegmenter
from .base import Agent, Conversation
from .text_pieces import TextPieces
from .voice import Voice
from .workers import Worker

PREROLL_S = 0.3      # audio kept before the VAD's speech start: onsets are soft and the recogniser needs them


@dataclass
class ThinkDone:
    turn: int
    gen: int
    user_text: str
    reply: str          # what the LLM wrote
    pieces: int         # how many pieces went to speech
    waiting: tuple[str, ...] = ()   # pieces written but not yet said: a draft's, until the floor is taken


class TalkingConversation(Conversation):
    streaming = True       # pieces to TTS as they are written (False: the whole reply at once)
    first_clause = False   # let the first piece end at a clause boundary

    def __init__(self, agent: Agent, *args) -> None:
        super().__init__(agent, *args)
        self.vad = self.models.vad()
        self.segmenter = SpeechSegmenter(self.cfg.vad)
        self.voice = Voice(self.name, self.models.tts, self.emit, self.cfg.runtime.max_reply_s, self.cpu)
        self.playback = self.voice.playback
        self.think = Worker(f"{self.name}-think", depth=1, account=self.cpu, model="llm")
        self.history: list[dict] = []
        self._draft: list[str] = []   # the LLM's tokens so far (written by the think thread)

    def messages(self, user_text: str) -> list[dict]:
        keep = self.history[-2 * self.cfg.llm.history_turns:] if self.cfg.llm.history_turns else []
        return [{"role": "system", "content": self.cfg.llm.system_prompt}, *keep,
                {"role": "user", "content": user_text}]

    def generate(self, turn: int, gen: int, user_text: str, llm, cancel: threading.Event,
                 event: str = "llm", floor: threading.Event | None = None, say_first: int = 0) -> ThinkDone:
        """Stream ``llm``'s reply (think thread); pieces go to the voice as they complete.

        A draft (``floor`` given, not yet set) has only its first ``say_first`` pieces synthesised: the
        rest comes back as text (``ThinkDone.waiting``) for ``say_waiting`` once the floor is taken, so
        a draft dropped because the user went on has cost one piece of speech, not the whole reply."""
        cutter = TextPieces(first_clause=self.first_clause)
        tokens: list[str] = []
        self._draft = tokens
        texts: list[str] = []      # the pieces cut so far
        said = pieces = 0          # pieces handed to the voice / queued for synthesis

        def say_ready() -> None:
            nonlocal said, pieces
            while said < len(texts) and (floor is None or floor.is_set() or said < say_first):
                pieces += self.voice.say(turn, gen, pieces, texts[said])
                said += 1

        for token in llm.stream(self.messages(user_text), cancel):
            if not tokens:
                self.emit(f"{event}.first_token", turn)
            tokens.append(token)
            self.emit(f"{event}.token", turn, text=token)
            if self.streaming:
                texts += cutter.push(token)
                say_ready()
        reply = "".join(tokens).strip()
        self.emit(f"{event}.done", turn, text=reply, tokens=len(tokens), gen=gen)
        if cancel.is_set():
            return ThinkDone(turn, gen, user_text, reply, pieces)
        texts += cutter.flush() if self.streaming else ([reply] if reply else [])
        say_ready()
        return ThinkDone(turn, gen, user_text, reply, pieces, tuple(texts[said:]))

    def say_waiting(self, done: ThinkDone, cancel: threading.Event) -> ThinkDone:
        """Say the pieces a draft wrote and held back (think thread, once the floor is taken)."""
        pieces = done.pieces
        for text in done.waiting:
            if cancel.is_set():
                break
            pieces += self.voice.say(done.turn, done.gen, pieces, text)
        return replace(done, pieces=pieces, waiting=())

    def workers(self) -> list:
        return [self.think, self.voice.speak]
