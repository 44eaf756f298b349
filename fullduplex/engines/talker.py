"""What every conversation that hears with the VAD and speaks with the LLM and TTS has, once.

Per call: the VAD and its segmenter (the ears' first stage), the ``Voice`` (TTS to playback), the
``think`` worker (the LLM) and the conversation history. And the one way a reply is written:
``generate`` streams the LLM, cuts its tokens into pieces and hands them to the voice as they
complete (or the whole reply at the end, for the sequential baseline).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

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
                 event: str = "llm") -> ThinkDone:
        """Stream ``llm``'s reply (think thread); pieces go to the voice as they complete."""
        cutter = TextPieces(first_clause=self.first_clause)
        tokens: list[str] = []
        self._draft = tokens
        pieces = 0
        for token in llm.stream(self.messages(user_text), cancel):
            if not tokens:
                self.emit(f"{event}.first_token", turn)
            tokens.append(token)
            self.emit(f"{event}.token", turn, text=token)
            if self.streaming:
                for text in cutter.push(token):
                    pieces += self.voice.say(turn, gen, pieces, text)
        reply = "".join(tokens).strip()
        self.emit(f"{event}.done", turn, text=reply, tokens=len(tokens), gen=gen)
        if cancel.is_set():
            return ThinkDone(turn, gen, user_text, reply, pieces)
        rest = cutter.flush() if self.streaming else ([reply] if reply else [])
        for text in rest:
            pieces += self.voice.say(turn, gen, pieces, text)
        return ThinkDone(turn, gen, user_text, reply, pieces)

    def workers(self) -> list:
        return [self.think, self.voice.speak]
