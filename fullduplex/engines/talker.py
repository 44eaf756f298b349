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


@dataclass
class ThinkPaused:
    """A draft that stopped after its first pieces (``generate(..., until=...)``): the rest is written
    when ``generate(..., resume=this)`` runs, once the reply is wanted."""
    turn: int
    gen: int
    user_text: str
    messages: list      # the prompt, as it was: the continuation must see the same one
    written: str        # the LLM's text so far
    tokens: int         # ... in tokens (the last one confirmed the cut of the last piece said)
    pieces: int         # pieces said


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
                 event: str = "llm", until: threading.Event | None = None, first: int = 1,
                 resume: ThinkPaused | None = None) -> ThinkDone | ThinkPaused:
        """Stream ``llm``'s reply (think thread); pieces go to the voice as they complete.

        A draft passes ``until``: after its ``first`` pieces it stops (returns ``ThinkPaused``, the
        LLM freed for other conversations) unless ``until`` is set by then; most drafts are thrown
        away when the user goes on talking, and the rest of one would cost LLM and TTS for nothing.
        ``resume`` goes on with such a draft: a ``repeatable`` LLM is given the prompt and the text
        so far (``after``) and writes what an uninterrupted run would have; the pieces already said
        are not said again."""
        messages = resume.messages if resume is not None else self.messages(user_text)
        cutter = TextPieces(first_clause=self.first_clause)
        tokens: list[str] = []
        self._draft = tokens
        pieces = resume.pieces if resume is not None else 0
        if resume is not None:
            tokens.append(resume.written)
            for text in cutter.push(resume.written)[pieces:]:   # the first were said; the text after them stays cut
                pieces += self.voice.say(turn, gen, pieces, text)
            self.emit(f"{event}.resumed", turn, tokens=resume.tokens, gen=gen)
            stream = llm.stream(messages, cancel, after=resume.written)
        else:
            stream = llm.stream(messages, cancel)
        try:
            for token in stream:
                if not tokens:
                    self.emit(f"{event}.first_token", turn)
                tokens.append(token)
                self.emit(f"{event}.token", turn, text=token)
                if not self.streaming:
                    continue
                for text in cutter.push(token):
                    pieces += self.voice.say(turn, gen, pieces, text)
                if until is not None and pieces >= first and not until.is_set():
                    written = "".join(tokens)
                    self.emit(f"{event}.paused", turn, text=written.strip(), tokens=len(tokens), gen=gen)
                    return ThinkPaused(turn, gen, user_text, messages, written, len(tokens), pieces)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()   # a stopped generator frees the model (llama.cpp: its lock) now, not when collected
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
