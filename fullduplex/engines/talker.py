"""What every conversation that hears with the VAD and speaks with the LLM and TTS has, once.

Per call: the VAD and its segmenter (the ears' first stage), the ``Voice`` (TTS to playback), the
``think`` worker (the LLM) and the conversation history. And the one way a reply is written:
``generate`` streams the LLM, cuts its tokens into pieces and hands them to the voice as they
complete (or the whole reply at the end, for the sequential baseline).
"""

from __future__ import annotations

import threading
from contextlib import closing
from dataclasses import dataclass, replace

from ..models.llm import CUT_OFF
from ..models.priority import speculative
from ..models.vad import SpeechSegmenter
from .base import Agent, Conversation
from .text_pieces import TextPieces, ends_sentence
from .voice import AHEAD_S, Voice
from .workers import Worker

PREROLL_S = 0.3      # audio kept before the VAD's speech start: onsets are soft and the recogniser needs them


@dataclass
class Written:
    """A reply as far as the LLM has written it: its tokens, the pieces cut from them, how many of those
    went to speech. A draft stopped after its first pieces keeps this until the floor is taken."""
    llm: object
    cutter: TextPieces
    tokens: list[str]
    texts: list[str]
    said: int = 0       # pieces handed to the voice
    pieces: int = 0     # pieces queued for synthesis (a piece may be split in several)


@dataclass
class ThinkDone:
    turn: int
    gen: int
    user_text: str
    reply: str          # what the LLM wrote
    pieces: int         # how many pieces went to speech
    waiting: tuple[str, ...] = ()   # pieces written but not yet said: a draft's, until the floor is taken
    rest: Written | None = None     # a draft's LLM stopped after its first pieces: it goes on at the floor


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
                 event: str = "llm", floor: threading.Event | None = None, say_first: int = 0,
                 written: Written | None = None) -> ThinkDone:
        """Stream ``llm``'s reply (think thread); pieces go to the voice as they complete.

        A draft (``floor`` given, not yet set) has only its first ``say_first`` pieces synthesised. An
        LLM that can continue a reply (``can_continue``) stops there too: the draft comes back with
        ``rest`` (what it wrote), which ``say_waiting`` continues once the floor is taken; so a draft
        dropped because the user went on has cost one piece of text and speech, not the whole reply.
        Other LLMs write the whole reply and the pieces not yet said come back as text (``waiting``).
        ``written``: go on from such a stopped draft. A reply stopped for another call's answer
        (``llm.yielded``) goes on in this same call."""
        w = written or Written(llm, TextPieces(first_clause=self.first_clause), [], [])
        self._draft = w.tokens
        stop_early = (floor is not None and say_first > 0 and self.streaming and getattr(llm, "can_continue", False))

        draft_until = floor.is_set if floor is not None else None   # a draft waits behind others' answers

        def say_ready() -> None:
            while w.said < len(w.texts) and (floor is None or floor.is_set() or w.said < say_first):
                w.pieces += self.voice.say(turn, gen, w.pieces, w.texts[w.said], draft_until)
                w.said += 1

        # A reply being written lets another conversation's waiting answer have the model at each piece it
        # hands to the voice (``llm.contended``), and goes on from its words when its own audio runs low
        # (``Voice.needed``): one user's third sentence does not keep another user's first words waiting.
        # Where the LLM is the bottleneck (a loaded server), a reply that has said a whole sentence ends there
        # instead (``brief_when_contended``): the rest of replies was 80 % of what answers waited behind.
        can_yield = self.streaming and getattr(llm, "can_continue", False)
        brief = can_yield and self.cfg.llm.brief_when_contended
        stopped, until, cut_off, briefed = False, draft_until, False, False
        while True:
            yielded = False
            # ``said`` only when going on from a stopped reply: LLMs that cannot continue take no such argument
            stream = llm.stream(self.messages(user_text), cancel, said="".join(w.tokens)) if w.tokens else \
                llm.stream(self.messages(user_text), cancel)
            with speculative(until), closing(stream):
                for token in stream:
                    if token is CUT_OFF:     # its token limit stopped it: a sentence begun after a whole one is not said
                        cut_off = True
                        continue
                    if not w.tokens:
                        self.emit(f"{event}.first_token", turn)
                    w.tokens.append(token)
                    self.emit(f"{event}.token", turn, text=token)
                    said = w.said
                    if self.streaming:
                        w.texts += w.cutter.push(token)
                        say_ready()
                        if w.cutter.looping:     # it began to say a sentence again: the reply is over
                            break
                    if stop_early and len(w.texts) >= say_first and not floor.is_set():
                        stopped = True
                        break
                    if can_yield and w.said > said and getattr(llm, "contended", False) and not cancel.is_set():
                        briefed = brief and ends_sentence(w.texts[w.said - 1])
                        yielded = not briefed
                        break
            if not yielded:
                break
            self.emit(f"{event}.yielded", turn, tokens=len(w.tokens), gen=gen)
            # Urgent again below AHEAD_S of audio left. Waiting longer behind other users' first words (below
            # 1.5 s) was not better at 12 calls: 9 alternating pairs, answers 1.77 vs 1.94 s (better in 5 of 9),
            # held 5 of 14 attempts vs 6 of 12 (benchmarks/results/server_load_two_turn.txt; issue 17).
            until = self.voice.needed(AHEAD_S, draft_until)
        reply = "".join(w.tokens).strip()
        if stopped:
            self.emit(f"{event}.paused", turn, tokens=len(w.tokens), gen=gen)
            return ThinkDone(turn, gen, user_text, reply, w.pieces, rest=w)
        self.emit(f"{event}.done", turn, text=reply, tokens=len(w.tokens), gen=gen, **({"brief": True} if briefed else {}))
        if cancel.is_set():
            return ThinkDone(turn, gen, user_text, reply, w.pieces)
        if not briefed:   # a brief reply's unfinished next sentence is not said
            w.texts += w.cutter.flush(cut_off) if self.streaming else ([reply] if reply else [])
        say_ready()
        return ThinkDone(turn, gen, user_text, reply, w.pieces, tuple(w.texts[w.said:]))

    def say_waiting(self, done: ThinkDone, cancel: threading.Event) -> ThinkDone:
        """Say what a draft held back (think thread, once the floor is taken): the pieces it wrote, or,
        where its LLM stopped, the rest of the reply, written now from where it stopped."""
        if done.rest is not None:
            if cancel.is_set():
                return replace(done, rest=None)
            self.emit("llm.resumed", done.turn, tokens=len(done.rest.tokens), gen=done.gen)
            return self.generate(done.turn, done.gen, done.user_text, done.rest.llm, cancel, written=done.rest)
        pieces = done.pieces
        for text in done.waiting:
            if cancel.is_set():
                break
            pieces += self.voice.say(done.turn, done.gen, pieces, text)
        return replace(done, pieces=pieces, waiting=())

    def workers(self) -> list:
        return [self.think, self.voice.speak]
