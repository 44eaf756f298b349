"""Architecture 5 on two CPU cores: the full-duplex engine, our embedded default.

Not a pipeline with turns but one loop that is always listening and may always speak. Per frame:

- **Listening never stops.** The VAD runs on every frame; the ``Ear`` streams the user's audio to the
  recogniser in its own thread from the first word of each user turn, also while the agent talks.
  The user's channel is the only input: the agent's own audio is never fed back as the user (in a
  room, the browser's echo cancellation keeps it out of the microphone).
- **Answers at once.** At every pause the ear is asked for the transcript so far, the turn model
  says how likely the user is done, and above ``draft_p`` a reply is drafted (LLM + TTS, held back,
  not played). When the silence reaches the model's wait (short when it is sure, long when the user
  trails off on "and" or "um"), the agent takes the floor and the draft is already audio. If the user
  goes on instead, the draft is dropped.
- **Holds through pauses, and backchannels.** A pause where the model says "holding" gets no reply;
  if the user has talked for a while, it may get a quiet "yeah" / "right" (``BackchannelTiming``).
- **Yields to interruptions, talks through the rest.** User speech starting over the agent's reply
  makes it fade out at once (the VAD confirms speech ~100 ms after its onset) and set the rest aside.
  If it stays short (``backchannel_max_s``) and asks nothing (``claims_the_floor``: no "wait", "no",
  no question), it was a listener's "mm-hm" and the agent goes on where it was cut, restarting the
  sentence it was in. Otherwise it is a barge-in: the rest is dropped, the history keeps only what the
  user heard, and the user's words become the next turn. Speech far quieter than the user's own level
  in this call (``UserLevel``, ``background_db``) is someone else, a TV or a person across the room:
  the agent talks through it, unless it grows loud.
- **Overlap policy.** The user wins every simultaneous start: the agent never begins in speech and
  yields to speech that begins under it, so two starts at once resolve as a barge-in (or, if it was
  only a backchannel, as a brief restart).

Threads: ear (STT), think (LLM), speak (TTS), judge (the turn model); ``step()`` does the VAD, cheap
decisions and moves audio. When to take the floor is ``turn/floor.py``'s ``FloorRule`` on the
``PauseSchedule`` (the same code ``fullduplex turn eval`` replays on labelled pauses).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from ..audio.frames import SAMPLE_RATE, rms_dbfs, seconds
from ..config import Config
from ..turn.floor import FloorRule, PauseSchedule
from .backchannels import BackchannelPicker
from .ear import Ear
from .floor_policy import BackchannelTiming, EndOfTurn, UserLevel, claims_the_floor, same_request
from .stack import ModelStack
from .talker import PREROLL_S, TalkingConversation, ThinkDone
from .voice import Piece
from .workers import JobFailed, Worker


@dataclass
class UserTurn:
    id: int
    start: float
    pause: PauseSchedule           # what to ask the models in the current pause (a new one each pause)
    text: str = ""
    text_s: float = 0.0            # seconds of the turn's audio the text covers
    asked: bool = False            # the ear was asked for the transcript at this pause
    answered: bool = False         # ... and has answered
    speech_s: float = 0.0          # user speech in this turn since the last backchannel
    p_done: float = 0.0            # the turn model's latest answer for the words up to this pause
    committed: bool = False        # the agent has decided to take the floor


@dataclass
class Faint:
    """Speech over the agent too quiet to be the user: talked through while it lasts."""
    onset: float
    since: float                   # where its level is measured from: the first of faint stretches close together
    ended: float = float("inf")    # its speech end (inf while it goes on)
    heard_out: bool = False        # judged on the whole overlap: not judged again until it ends

    @property
    def active(self) -> bool:
        return self.ended == float("inf")


FAINT_JOIN_S = 1.0   # a faint stretch starting this soon after another is judged with it (a TV pauses between phrases)


@dataclass
class Reply:
    turn: int
    gen: int
    user_text: str                  # what the user said, as the history will record it (see _draft_fits)
    done: ThinkDone | None = None
    received: int = 0
    spoken: dict = field(default_factory=dict)   # piece index -> text the user has begun hearing
    playing: bool = False
    held: list | None = None        # set aside while the user talks over us
    yield_t: float = 0.0
    drafted_from: str = ""          # the transcript the LLM answered (user_text until a draft is kept)
    floor: threading.Event = field(default_factory=threading.Event)   # set when it is ours to speak: until then a
                                    # draft synthesises only its first ``draft_pieces`` (TalkingConversation.generate)


class DuplexConversation(TalkingConversation):
    name = "duplex"
    description = ("architecture 5 on CPU: always listening, speculative replies ready at the turn end, "
                   "backchannels, yields to interruptions (the embedded default)")
    listens_while_speaking = True   # False: user speech over the agent's reply is ignored, as in a pipeline
    backchannels = True
    first_clause = True             # the first piece as soon as a clause is written: first audio sooner

    @classmethod
    def load(cls, models: ModelStack, cfg: Config) -> None:
        super().load(models, cfg)
        _ = models.turn_model
        if cls.backchannels:
            _ = models.backchannels   # synthesised once per stack, before any call

    def __init__(self, *args) -> None:
        super().__init__(*args)
        dc = self.cfg.duplex
        predictor = self.models.turn_model
        self.end_of_turn = EndOfTurn(predictor.for_conversation() if predictor is not None else None)
        self.floor = FloorRule(dc)
        self.bc_timing = BackchannelTiming(dc)
        self.bc_clips = BackchannelPicker(self.models.backchannels.clips) if self.backchannels else None
        self.ear = Ear(self.models.stt, self.emit, self.cpu)
        # the turn model (Smart Turn costs ~60-90 ms; it charges itself as smart_turn)
        self.judge = Worker(f"{self.name}-judge", depth=1, account=self.cpu, model="turn")
        self._turn_ids = 0
        self.user: UserTurn | None = None
        self.reply: Reply | None = None
        self.draft: Reply | None = None
        self._tail: deque[np.ndarray] = deque(maxlen=int(dc.tail_s * SAMPLE_RATE / max(1, self.frame_samples)) + 1)
        self._held_draft: list[Piece] = []   # the draft's synthesised pieces, not played until we take the floor
        self._last_bc = -1e9
        self.user_level = UserLevel()
        self._levels: deque[tuple[float, float]] = deque(maxlen=250)   # (frame start, dBFS) of the last 5 s
        self._faint: Faint | None = None    # speech over the agent judged too quiet to be the user

    # -- the audio path ------------------------------------------------------------------------------
    def step(self, user_frame: np.ndarray, t: float) -> np.ndarray:
        t_end = t + seconds(len(user_frame))
        db = rms_dbfs(user_frame)
        self._levels.append((t, db))
        for edge in self.segmenter.push(self.vad.push(user_frame)):
            self.emit(f"vad.{edge.kind}", self.user.id if self.user else None, t=edge.t)
            if edge.kind == "speech_start":
                self._on_user_speech(edge.t, t)
            elif self._faint_active:
                self._faint.ended = edge.t
                self.emit("overlap.ignored", None, t=edge.t, onset=round(self._faint.onset, 3))
        if self._faint_active and not self._faint.heard_out and not self._too_faint(self._faint.since):
            onset, self._faint = self._faint.onset, None
            self._on_user_speech(onset, t)     # it grew loud: the user after all
        elif self.segmenter.in_speech and not self._faint_active and (self.reply is None or not self.reply.playing):
            self.user_level.add(db)            # the user's own turns: the agent is silent
        self._tail.append(user_frame)
        self.ear.push(user_frame)
        if self.segmenter.in_speech and self.user is not None:
            self.user.speech_s += seconds(len(user_frame))
        for heard in self.ear.poll():
            self._on_heard(heard, t_end)
        self._collect()
        if self.reply is not None and self.reply.held is not None:
            self._judge_overlap(t_end)
        elif self.user is not None and self.segmenter.silence_s > 0:
            self._in_pause(t_end)    # from the first silent VAD chunk: the segmenter's hangover is not waited for
        out, started = self.voice.frame(len(user_frame))
        for tag in started:
            self._on_started(tag, t_end)   # ``out`` plays from the end of this frame
        if self.reply is not None and self._reply_over():
            self._finish_reply(t)
        return out

    def _new_user_turn(self, onset: float, now: float) -> None:
        """Open the user's turn at ``onset``; the recogniser gets the audio from just before it until ``now``."""
        self._turn_ids += 1
        self.user = UserTurn(self._turn_ids, onset, self._pause_schedule())
        recent = np.concatenate(list(self._tail)) if self._tail else np.zeros(0, np.float32)
        back = int((now - onset + PREROLL_S) * SAMPLE_RATE)
        self.ear.open(self.user.id, recent[-back:] if back < len(recent) else recent)

    def _on_user_speech(self, onset: float, t: float) -> None:
        reply = self.reply
        if reply is not None and reply.playing and not self.listens_while_speaking:
            return   # a pipeline does not hear the user while it speaks
        if reply is not None and reply.playing and reply.held is None and self.playback.active:
            last = self._faint
            since = last.since if last is not None and onset - last.ended < FAINT_JOIN_S else onset
            if self._too_faint(since, self.cfg.duplex.background_onset_db):
                self._faint = Faint(onset, since)
                self.emit("overlap.faint", reply.turn, t=t, onset=round(onset, 3), user_db=round(self.user_level.db, 1),
                          db=round(self._level_since(since), 1))
                return
            reply.held = self.playback.interrupt()
            reply.yield_t = onset
            # stamped where the fade begins: the frame we return next plays from the end of this one
            self.emit("bargein.yield", reply.turn, t=t + seconds(self.frame_samples), onset=round(onset, 3),
                      db=round(self._level_since(onset), 1),
                      user_db=None if self.user_level.db is None else round(self.user_level.db, 1))
            self._new_user_turn(onset, t)      # the overlap is heard as a turn of its own
            return
        if self.user is None:
            self._new_user_turn(onset, t)
            return
        if self.user.committed and reply is not None and not reply.playing:
            self.emit("turn.resumed", self.user.id, t=t)   # we decided too soon: the user goes on
            self._drop_reply()
            self.user.committed = False
        if self.draft is not None:
            self.emit("draft.discarded", self.user.id, t=t, text=self.draft.user_text)
            self._drop_draft()
        self.user.asked = self.user.answered = False
        self.user.pause = self._pause_schedule()

    @property
    def _faint_active(self) -> bool:
        """The speech going on now is one judged too quiet to be the user."""
        return self._faint is not None and self._faint.active

    def _level_since(self, since: float) -> float:
        """The level of the audio since ``since``: the 90th percentile of its frames (its loud part)."""
        return float(np.percentile([db for t0, db in self._levels if t0 >= since - 1e-6] or [-180.0], 90))

    def _too_faint(self, since: float, below_db: float | None = None) -> bool:
        """Whether the audio since ``since`` is ``below_db`` (default ``background_db``) under the user's level."""
        gate = self.cfg.duplex.background_db if below_db is None else below_db
        user_db = self.user_level.db
        return bool(gate) and user_db is not None and self._level_since(since) < user_db - gate

    def _pause_schedule(self) -> PauseSchedule:
        return PauseSchedule(self.cfg.duplex, seconds(self.frame_samples))

    def _on_heard(self, heard, t: float) -> None:
        user = self.user
        if user is None or heard.turn != user.id:
            return
        if heard.text != user.text:
            self.emit("stt.partial", user.id, t=t, text=heard.text)
        user.text, user.text_s = heard.text, heard.audio_s
        if heard.asked:
            user.answered = True
            user.p_done = 0.0   # the words up to the pause: judge them afresh

    def _in_pause(self, t: float) -> None:
        user = self.user
        # Silence to the end of this frame (the VAD counts it in 32 ms chunks; the floor is taken on frames).
        silence = t - self.segmenter.last_speech_end
        if user.committed:
            return
        for judged in iter(self.judge.poll, None):
            if isinstance(judged, JobFailed):
                self.emit("error", user.id, where="judge", message=str(judged.error))
            elif judged[0] == user.id and judged[1] == user.text:
                user.p_done = judged[2]
        ask = user.pause.next(silence, words_in=user.answered, judge_idle=self.judge.idle)
        if ask == "words":
            self._ask(user)                      # the transcript up to this pause
        elif ask == "p":
            tail, text, turn = np.concatenate(list(self._tail)), user.text, user.id
            self.judge.submit(lambda cancel: (turn, text, self.end_of_turn.p_done(tail, text, silence)))
        p = user.p_done
        if not (user.pause.ready and user.text):
            # Decide only on the words up to this pause. They come ~0.1-0.3 s in (the recogniser transcribes
            # when asked); a short acknowledgement needs none of them, and real listeners give it that early.
            if self._backchannel_fits(user, t, silence, p):
                self._backchannel(user, t)
            return
        if self.floor.draft(p) and not self._draft_fits(user, t) and self._worth_drafting(p):
            self._start_draft(user, t)
        if self.floor.take_floor(p, silence):
            self._take_floor(user, t, p, silence)
        elif self._backchannel_fits(user, t, silence, p):
            self._backchannel(user, t)

    def _backchannel_fits(self, user: UserTurn, t: float, silence: float, p: float) -> bool:
        return (self.backchannels and self.reply is None
                and self.bc_timing.fits(user.speech_s, t - self._last_bc, silence, p))

    def _ask(self, user: UserTurn) -> None:
        user.asked, user.answered = True, False
        self.ear.refresh()

    def _take_floor(self, user: UserTurn, t: float, p: float, silence: float) -> None:
        user.committed = True
        self.emit("turn.end", user.id, t=t, speech_end=round(self.segmenter.last_speech_end, 6), p_done=round(p, 3),
                  silence_ms=round(silence * 1000), detector=self.end_of_turn.detector)
        self.emit("stt.final", user.id, t=t, text=user.text)   # the words the reply answers
        if not self._draft_fits(user, t):
            self._start_draft(user, t)
        self.reply, self.draft = self.draft, None
        self.reply.floor.set()    # the rest of its text may be spoken now
        self._say_waiting(self.reply)
        self.playback.resume([[p_.audio, p_, 0] for p_ in self._held_draft])  # what the draft already has
        self._held_draft = []

    def _backchannel(self, user: UserTurn, t: float) -> None:
        text, audio = self.bc_clips.next()
        self.playback.push(audio, ("backchannel", text))
        self._last_bc = t
        user.speech_s = 0.0
        self.emit("backchannel", user.id, t=t, text=text, audio_s=round(seconds(len(audio)), 3))

    # -- drafts and replies --------------------------------------------------------------------------
    def _draft_fits(self, user: UserTurn, t: float) -> bool:
        """Whether the draft answers what the user has said. A transcript that changed only in ways
        that do not change the request ("how are you" -> "How are you?", a trailing "um", one revised
        "a"/"the") keeps the draft: redrafting would cost the LLM's first clause again (~0.5-1 s)."""
        draft = self.draft
        if draft is None:
            return False
        if draft.user_text == user.text:
            return True
        if not same_request(draft.drafted_from, user.text):   # against the drafted words: no creeping drift
            return False
        self.emit("draft.kept", user.id, t=t, draft=draft.drafted_from, text=user.text)
        # The history records the final words: the answer fits them (same request), and the next
        # turns' context should hold what the user said, not an earlier guess of the recogniser.
        draft.user_text = user.text
        return True

    def _worth_drafting(self, p: float) -> bool:
        """A draft in every pause while the LLM is free; while other conversations' requests hold it (a
        loaded server), only where the turn has likely ended: a dropped draft spends the CPU their answers
        wait for. (While this conversation's own draft still runs, the LLM's business may be its own.)"""
        busy = getattr(self.models.llm, "busy", False)    # an endpoint or a test fake: never waits
        return p >= self.cfg.duplex.draft_p_busy or not (self.think.idle and busy)

    def _start_draft(self, user: UserTurn, t: float) -> None:
        if self.draft is not None:
            self._drop_draft()
        gen = self.voice.new_generation()
        self.draft = Reply(user.id, gen, user.text, drafted_from=user.text)
        self._held_draft: list[Piece] = []
        self.emit("draft.start", user.id, t=t, text=user.text, p_done=round(user.p_done, 3))
        turn, text, floor = user.id, user.text, self.draft.floor
        self.think.submit(lambda cancel: self.generate(turn, gen, text, self.models.llm, cancel, floor=floor,
                                                       say_first=self.cfg.duplex.draft_pieces))

    def _drop_draft(self) -> None:
        self.think.cancel()
        self.voice.new_generation()
        self.draft = None
        self._held_draft = []

    def _drop_reply(self) -> None:
        self.think.cancel()
        self.voice.new_generation()
        self.playback.reset()
        self.reply = None

    def _collect(self) -> None:
        result = self.think.poll()
        if isinstance(result, JobFailed):
            self.emit("error", None, where="think", message=str(result.error))
        elif isinstance(result, ThinkDone):
            for r in (self.reply, self.draft):
                if r is not None and r.gen == result.gen:
                    r.done = result
            if self.reply is not None and self.reply.gen == result.gen:
                self._say_waiting(self.reply)   # a draft finished just as the floor was taken
        self.voice.collect(self._route)

    def _say_waiting(self, reply: Reply) -> None:
        """The floor is ours: the pieces the draft wrote and held back go to speech."""
        done = reply.done
        if done is not None and (done.waiting or done.rest is not None):
            reply.done = None      # more pieces are coming: the reply is not over
            if not self.think.submit(lambda cancel: self.say_waiting(done, cancel)):
                reply.done = replace(done, waiting=(), rest=None)   # what was said stands; the rest is lost
                self.emit("error", reply.turn, where="think", message="no room to say the rest of the reply")

    def _route(self, piece: Piece) -> None:
        """A synthesised piece goes to playback, or is held: in a draft not yet spoken, or while yielded."""
        if self.reply is not None and piece.gen == self.reply.gen:
            self.reply.received += 1
            if self.reply.held is not None:
                self.reply.held.append([piece.audio, piece, 0])
            else:
                self.playback.push(piece.audio, piece)
        elif self.draft is not None and piece.gen == self.draft.gen:
            self.draft.received += 1
            self._held_draft.append(piece)

    def _on_started(self, tag, t: float) -> None:
        if not isinstance(tag, Piece) or self.reply is None or tag.gen != self.reply.gen:
            return
        reply = self.reply
        if not reply.playing:
            reply.playing = True
            self.emit("playback.start", reply.turn, t=t, text=tag.text)
            if self.user is not None and self.user.id == reply.turn:
                self.ear.close()     # the user's turn is over: we have the floor
                self.user = None
        if tag.index not in reply.spoken:
            reply.spoken[tag.index] = tag.text
            self.emit("playback.piece", reply.turn, t=t, index=tag.index, text=tag.text)

    def _reply_over(self) -> bool:
        r = self.reply
        if r.held is not None or r.done is None:
            return False
        return r.received >= r.done.pieces and not self.playback.active

    def _finish_reply(self, t: float) -> None:
        r = self.reply
        spoken = " ".join(r.spoken[i] for i in sorted(r.spoken))
        if r.playing:
            self.emit("playback.end", r.turn, t=t, text=spoken)
        if r.user_text and spoken:   # the final words, also for a kept draft (see _draft_fits)
            self.history += [{"role": "user", "content": r.user_text}, {"role": "assistant", "content": spoken}]
        if self.user is not None and self.user.id == r.turn:   # nothing was said (an empty reply)
            self.ear.close()
            self.user = None
        self.reply = None
        if self.user is None and self.segmenter.in_speech and not self._faint_active:   # spoke over us
            self._new_user_turn(t, t)

    # -- talking over the agent ----------------------------------------------------------------------
    def _judge_overlap(self, t: float) -> None:
        """While yielded: resume after a short overlap that claims nothing, or give the floor up."""
        reply, user = self.reply, self.user
        length = self.segmenter.last_speech_end - reply.yield_t    # of speech: the VAD's hangover is not counted
        longest = self.cfg.duplex.backchannel_max_s
        if self.segmenter.in_speech and length <= longest:
            return
        if not self.segmenter.in_speech and length <= longest:
            if user is not None and not user.asked:
                self._ask(user)
                return
            if user is not None and not user.answered:
                return   # waiting for the ear's answer
            if self.segmenter.silence_s < self.cfg.duplex.resume_after_s:
                return   # the user may go on: then it is one overlap, judged as a whole
            if user is None or not claims_the_floor(user.text):
                self.emit("bargein.backchannel", reply.turn, t=t, text=user.text if user else "")
                self._resume(reply)
                return
        if self._too_faint(reply.yield_t):
            # Heard out (a second, longer look than the onset's): too quiet to be the user after all.
            self._faint = Faint(reply.yield_t, reply.yield_t, heard_out=True)
            if not self.segmenter.in_speech:
                self._faint.ended = self.segmenter.last_speech_end
            self.emit("overlap.faint", reply.turn, t=t, onset=round(reply.yield_t, 3), late=True,
                      db=round(self._level_since(reply.yield_t), 1), user_db=round(self.user_level.db, 1))
            self._resume(reply)
            return
        self._barge_in(t)

    def _resume(self, reply: Reply) -> None:
        """Go on with the answer set aside at the yield, where it was cut; the overlap was no turn."""
        self.playback.resume(reply.held)
        reply.held = None
        self.ear.close()
        self.user = None

    def _barge_in(self, t: float) -> None:
        reply = self.reply
        heard = " ".join(reply.spoken[i] for i in sorted(reply.spoken))
        self.emit("bargein", reply.turn, t=t, heard=heard, user_text=self.user.text if self.user else "")
        if reply.user_text and heard:
            self.history += [{"role": "user", "content": reply.user_text}, {"role": "assistant", "content": heard + " —"}]
        self._drop_reply()

    def workers(self) -> list:
        return super().workers() + [self.judge, self.ear.worker]


class PredictiveConversation(DuplexConversation):
    """Architecture 4: the cascade with streaming TTS, where the trained turn model (not a fixed silence)
    decides the end of turn, and the reply is drafted speculatively at pauses. A pipeline still: it
    neither backchannels nor listens while it speaks."""

    name = "predictive"
    description = ("architecture 4: predictive end-of-turn model (prosody, words, Smart Turn) + speculative "
                   "draft + streaming TTS; does not listen while speaking")
    listens_while_speaking = False
    backchannels = False
