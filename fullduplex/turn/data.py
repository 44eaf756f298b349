"""Training data for the turn model: synthesised speech with known turn ends and mid-turn pauses.

Each *item* is one scripted turn spoken by one voice (Piper en_US-joe-medium with varied speed,
noise and pitch, or one of several espeak-ng voices and variants): a complete utterance, or pieces
with a pause between them: a sentence cut mid-clause, a hesitation ("um,"), a trailing connector
("and", "because"), or a complete sentence after which the speaker goes on. The VAP phrase pairs
(``eot/vap-phrases``: "Are you a student?" vs "Are you a student | here at this university?") are
added as items too, the long ones cut at the short phrase's end with a pause inserted.

Every pause gives an *event*: the time speech stopped, whether the turn was done, and for a hold how
long the pause lasted. Audio is augmented (level, noise, reverberation, telephone band) so the model
does not learn clean TTS. Everything is deterministic given the seed and cached under ``cache_dir``.

The per-event *signals* (prosody, recogniser transcript, Smart Turn, optionally the LLM) are
computed once and cached too: they are what training and the ablation reuse.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import math
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
from scipy.signal import butter, fftconvolve, sosfilt

from ..audio.frames import SAMPLE_RATE
from ..audio.resample import resample
from ..errors import UserError
from .features import SMART_TURN_AT_S, pause_signals
from .scripts import CONNECTORS, CONTINUATIONS, FILLERS, SENTENCES, TRAILING_DONE

SR = SAMPLE_RATE
DATA_VERSION = 4  # bump when synthesis changes: it is part of every cache key
ESPEAK_VOICES = ("en-us", "en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = ("", "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3", "adam", "linda", "steph", "paul", "john", "max")
TAIL_S = 0.6          # silence kept after a turn's last word (decisions beyond it pad with the same noise)


def default_shared_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "shared" / "data"


@dataclass(frozen=True)
class DataConfig:
    n_items: int = 800              # scripted turns
    seed: int = 0
    piper_share: float = 0.55       # the rest is espeak-ng
    vap: bool = True                # add the VAP phrase pairs
    vap_exclude: tuple[str, ...] = ()  # VAP phrase groups left out (cross-validation folds)
    transcripts: str = "moonshine"  # "moonshine": what the recogniser hears; "script": the text as written
    smart_turn: bool = True
    llm: bool = False
    augment: bool = True
    shared_dir: str | None = None
    conversations: str | None = None  # the user's own labelled conversations (``labels.py``), added as recorded

    def clips_key(self) -> str:
        d = {k: v for k, v in asdict(self).items() if k in ("n_items", "seed", "piper_share", "vap", "vap_exclude", "augment")}
        d["version"] = DATA_VERSION
        if self.conversations:   # the files themselves, not the path: an edited RTTM is new data
            from .labels import conversation_dirs
            d["conversations"] = [[f.name, f.stat().st_size, f.stat().st_mtime_ns]
                                  for c in conversation_dirs(Path(self.conversations)) for f in sorted(c.iterdir())]
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    def signals_key(self) -> str:
        d = {"clips": self.clips_key(), "transcripts": self.transcripts, "smart_turn": self.smart_turn,
             "llm": self.llm, "at": SMART_TURN_AT_S}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Event:
    clip: int
    end_s: float               # where speech stopped (clip time)
    done: bool                 # the turn ended here
    pause_s: float | None      # a hold: how long the speaker paused before going on
    turn_start_s: float
    script: str                # the words spoken so far, as written
    source: str                # piper | espeak | vap
    group: str                 # item id, or the VAP phrase group
    signals: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------
# Scripts

def _strip_end(text: str) -> str:
    return text.rstrip(" .?!,")


def make_script(rng: np.random.Generator) -> tuple[list[tuple[str, str]], bool]:
    """One turn as [(text, "hold" | "done"), ...] (the last piece is "done"), and whether the pieces
    belong to one sentence (then they are spoken as one and cut at the pause, so the words before
    the pause keep their mid-sentence prosody)."""
    s = SENTENCES[rng.integers(len(SENTENCES))]
    words = s.split()
    r = rng.random()
    if r < 0.28 or len(words) < 4:
        return [(s, "done")], False
    punct = str(rng.choice([",", "...", ""], p=[0.55, 0.2, 0.25]))
    if r < 0.55:     # cut mid-clause
        k = int(rng.integers(1, len(words) - 1))
        return [(_strip_end(" ".join(words[:k])) + punct, "hold"), (" ".join(words[k:]), "done")], True
    if r < 0.70:     # hesitation
        k = int(rng.integers(1, len(words) - 1))
        filler = FILLERS[rng.integers(len(FILLERS))]
        return [(_strip_end(" ".join(words[:k])) + f", {filler}" + punct, "hold"), (" ".join(words[k:]), "done")], True
    if r < 0.83:     # trailing connector
        conn = CONNECTORS[rng.integers(len(CONNECTORS))]
        cont = CONTINUATIONS[rng.integers(len(CONTINUATIONS))]
        return [(_strip_end(s) + f", {conn}" + punct, "hold"), (cont[0].lower() + cont[1:], "done")], True
    if r < 0.94:     # a complete sentence, and the speaker goes on
        cont = CONTINUATIONS[rng.integers(len(CONTINUATIONS))]
        return [(s, "hold"), (cont, "done")], False
    tag = TRAILING_DONE[rng.integers(len(TRAILING_DONE))]   # trails, but done
    return [(_strip_end(s) + f", {tag}", "done")], False


def sample_pause(rng: np.random.Generator) -> float:
    """Mid-turn pause length: log-normal, median 0.55 s, within [0.25, 2.5] s."""
    return float(np.clip(math.exp(rng.normal(math.log(0.55), 0.55)), 0.25, 2.5))


# ----------------------------------------------------------------------------------------------------
# Voices

class Voices:
    def __init__(self, seed: int = 0) -> None:
        self._piper = None
        self._seed = seed
        self._espeak = shutil.which("espeak-ng")

    def _piper_voice(self):
        if self._piper is None:
            import onnxruntime
            from ..config import TtsConfig
            from ..models.tts import PiperTts
            # Piper draws its noise inside the ONNX graph; seeding onnxruntime before the session is made
            # makes the whole sequence of syntheses (one build, in order) repeatable.
            onnxruntime.set_seed(self._seed)
            self._piper = PiperTts(TtsConfig())
        return self._piper

    def sample(self, rng: np.random.Generator, piper_share: float) -> dict:
        if rng.random() < piper_share:
            return {"kind": "piper", "length_scale": float(rng.uniform(0.85, 1.25)),
                    "noise_scale": float(rng.uniform(0.4, 0.9)), "noise_w": float(rng.uniform(0.5, 1.1)),
                    "semitones": 0.0 if rng.random() < 0.4 else float(rng.uniform(-3.0, 5.0))}
        return {"kind": "espeak", "voice": ESPEAK_VOICES[rng.integers(len(ESPEAK_VOICES))],
                "variant": ESPEAK_VARIANTS[rng.integers(len(ESPEAK_VARIANTS))],
                "pitch": int(rng.integers(25, 80)), "speed": int(rng.integers(135, 200))}

    def speak(self, text: str, spec: dict) -> np.ndarray:
        if spec["kind"] == "piper":
            from piper.config import SynthesisConfig
            tts = self._piper_voice()
            syn = SynthesisConfig(length_scale=spec["length_scale"], noise_scale=spec["noise_scale"],
                                  noise_w_scale=spec["noise_w"])
            with tts._lock:   # our own Piper wrapper's voice, with per-item synthesis settings
                chunks = list(tts._voice.synthesize(text, syn_config=syn))
            audio = np.concatenate([c.audio_float_array for c in chunks]) if chunks else np.zeros(0, np.float32)
            rate = chunks[0].sample_rate if chunks else 22050
            shifted = rate * 2 ** (spec["semitones"] / 12)     # play faster/slower: pitch and tempo move together
            audio = resample(audio, int(round(shifted)), SR)
        else:
            if self._espeak is None:
                raise UserError("espeak-ng is not installed: run `make install` (or `apt-get install espeak-ng`)")
            voice = spec["voice"] + (f"+{spec['variant']}" if spec["variant"] else "")
            wav = subprocess.run([self._espeak, "--stdout", "-v", voice, "-p", str(spec["pitch"]),
                                  "-s", str(spec["speed"]), text], capture_output=True, check=True, timeout=30).stdout
            audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
            audio = resample(audio, rate, SR)
        return trim(audio)


def silent_gaps(audio: np.ndarray, floor_db: float = 35.0, min_s: float = 0.03) -> list[tuple[float, float]]:
    """Silences inside ``audio`` (10 ms frames ``floor_db`` under the loudest, at least ``min_s``)."""
    n = len(audio) // 160
    if n == 0:
        return []
    db = 20 * np.log10(np.sqrt(np.mean(audio[:n * 160].reshape(n, 160) ** 2, axis=1)) + 1e-9)
    quiet = db < db.max() - floor_db
    gaps, i = [], 0
    while i < n:
        if quiet[i]:
            j = i
            while j < n and quiet[j]:
                j += 1
            if i > 0 and j < n and (j - i) * 0.01 >= min_s:
                gaps.append((i * 0.01, j * 0.01))
            i = j
        else:
            i += 1
    return gaps


def speak_split(voices: "Voices", first: str, rest: str, spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """Speak ``first rest`` as one sentence and cut it at the pause after ``first`` (the silence
    nearest to where ``first`` alone ends); if the voice made no such pause, speak them apart."""
    alone = voices.speak(first, spec)
    full = voices.speak(f"{first} {rest}", spec)
    expected = len(alone) / SR
    # A comma or a filler makes a pause of 100-300 ms; stop closures inside words are shorter.
    near = [g for g in silent_gaps(full, min_s=0.07) if -0.2 * expected - 0.05 <= g[0] - expected <= 0.25 * expected + 0.05]
    if near:
        start, end = min(near, key=lambda g: abs(g[0] - expected))
        return trim(full[:int(start * SR)]), trim(full[int(end * SR):])
    return alone, voices.speak(rest, spec)


def trim(audio: np.ndarray, floor_db: float = 40.0) -> np.ndarray:
    """Cut leading and trailing silence (10 ms frames more than ``floor_db`` under the loudest)."""
    n = len(audio) // 160
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[:n * 160].reshape(n, 160) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    active = np.flatnonzero(db > db.max() - floor_db)
    return audio[active[0] * 160:(active[-1] + 1) * 160].astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Augmentation

def _coloured_noise(n: int, rng: np.random.Generator, colour: str) -> np.ndarray:
    white = rng.normal(size=n)
    if colour == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    spec /= np.sqrt(f) if colour == "pink" else f
    out = np.fft.irfft(spec, n)
    return out / (out.std() + 1e-12)


def augment(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = audio.astype(np.float64)
    speech_rms = math.sqrt(np.mean(x[np.abs(x) > 1e-4] ** 2)) if np.any(np.abs(x) > 1e-4) else 1e-3
    if rng.random() < 0.3:      # small room
        rt60 = rng.uniform(0.15, 0.6)
        t = np.arange(int(rt60 * SR)) / SR
        ir = rng.normal(size=len(t)) * np.exp(-6.9 * t / rt60) * rng.uniform(0.05, 0.3)
        ir[0] = 1.0
        x = fftconvolve(x, ir)[:len(x)]
    band = rng.random()
    if band < 0.2:              # telephone
        x = resample(x.astype(np.float32), SR, 8000).astype(np.float64)
        x = sosfilt(butter(4, [300, 3400], btype="band", fs=8000, output="sos"), x)
        x = resample(x.astype(np.float32), 8000, SR).astype(np.float64)[:len(audio)]
        x = np.pad(x, (0, len(audio) - len(x)))
    elif band < 0.35:           # muffled, far-field
        x = sosfilt(butter(4, rng.uniform(2500, 5000), fs=SR, output="sos"), x)
    target = 10 ** (rng.uniform(-35, -14) / 20)
    x *= target / max(speech_rms, 1e-6)
    if rng.random() < 0.85:
        snr = rng.uniform(8, 45)
        colour = str(rng.choice(["white", "pink", "brown"]))
        x += _coloured_noise(len(x), rng, colour) * target * 10 ** (-snr / 20)
    else:
        x += rng.normal(size=len(x)) * 1e-4
    return np.clip(x, -1, 1).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Building clips and events

def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SR)), np.float32)


def render_item(index: int, cfg: DataConfig, voices: Voices) -> tuple[np.ndarray, list[Event]]:
    rng = np.random.default_rng([cfg.seed, 1, index])
    parts, joined = make_script(rng)
    spec = voices.sample(rng, cfg.piper_share)
    lead = float(rng.uniform(0.2, 0.6))
    if joined:
        spoken = list(speak_split(voices, parts[0][0], parts[1][0], spec))
    else:
        spoken = [voices.speak(text, spec) for text, _ in parts]
    pieces, events, t, said = [_silence(lead)], [], lead, []
    for (text, after), speech in zip(parts, spoken):
        pieces.append(speech)
        t += len(speech) / SR
        said.append(text)
        if after == "hold":
            pause = sample_pause(rng)
            events.append(Event(-1, t, False, pause, lead, " ".join(said), spec["kind"], f"item{index}"))
            pieces.append(_silence(pause))
            t += pause
        else:
            events.append(Event(-1, t, True, None, lead, " ".join(said), spec["kind"], f"item{index}"))
            pieces.append(_silence(TAIL_S))
    audio = np.concatenate(pieces)
    return (augment(audio, rng) if cfg.augment else audio), events


def vap_rows(shared_dir: Path) -> list[dict]:
    folder = shared_dir / "eot" / "vap-phrases"
    table = folder / "phrases.csv"
    if not table.exists():
        raise UserError(f"the VAP phrase pairs are not at {folder}; pass --no-vap or the shared data folder")
    rows = list(csv.DictReader(table.open()))
    for r in rows:
        r["path"] = str(folder / "audio" / Path(r["audio_path"]).name)
        r["ends_list"] = ast.literal_eval(r["ends"])
    return rows


def render_vap(row: dict, index: int, cfg: DataConfig, pause_s: float | None = None,
               augment_it: bool | None = None) -> tuple[np.ndarray, list[Event]]:
    """A VAP clip as a turn: short -> done at its end; long -> a hold at the short phrase's end
    (a pause inserted there), then done at its end."""
    rng = np.random.default_rng([cfg.seed, 2, index])
    audio, rate = sf.read(row["path"], dtype="float32")
    audio = resample(audio if audio.ndim == 1 else audio.mean(axis=1), rate, SR)
    end = float(row["ends_list"][-1])
    lead = 0.3
    words = row["text"]
    if row["long_short"] == "short":
        pieces = [_silence(lead), audio[:int(end * SR)], _silence(TAIL_S)]
        events = [Event(-1, lead + end, True, None, lead, words, "vap", row["phrase"])]
    else:
        scp = float(row["scp"])
        pause = sample_pause(rng) if pause_s is None else pause_s
        first = audio[:int(scp * SR)]
        rest = audio[int(scp * SR):int(end * SR)]
        short_text = " ".join(ast.literal_eval(row["words"])[:len([e for e in row["ends_list"] if e <= scp + 1e-6])])
        pieces = [_silence(lead), first, _silence(pause), rest, _silence(TAIL_S)]
        t_hold = lead + len(first) / SR
        events = [Event(-1, t_hold, False, pause, lead, short_text, "vap", row["phrase"]),
                  Event(-1, t_hold + pause + len(rest) / SR, True, None, lead, words, "vap", row["phrase"])]
    clip = np.concatenate(pieces)
    do_aug = cfg.augment if augment_it is None else augment_it
    return (augment(clip, rng) if do_aug else clip), events


def conversation_events(folder: Path) -> tuple[dict[str, np.ndarray], list[Event]]:
    """The labelled pauses of real conversations as training events (source "real", grouped by
    conversation so that threshold folds never split one)."""
    from .labels import conversation_pauses
    pauses, audio = conversation_pauses(folder)
    if not audio:   # no sub-folder held a .wav and an .rttm
        raise UserError(f"{folder}: no conversation folders (each needs a .wav and an .rttm)")
    if not pauses:
        raise UserError(f"{folder}: no pause of 200 ms or more with a labelled speaker on both sides")
    events = [Event(-1, p.end_s, p.done, None if p.done else p.gap_s, p.turn_start_s, "", "real", p.source)
              for p in pauses]
    return audio, events


@dataclass
class Dataset:
    clips: list[np.ndarray]
    events: list[Event]

    def audio_until(self, event: Event, extra_s: float = 0.0) -> np.ndarray:
        """Clip audio up to the event's speech end plus ``extra_s`` of the following pause
        (padded with the clip's own trailing noise where the clip ends)."""
        clip = self.clips[event.clip]
        stop = int(round((event.end_s + extra_s) * SR))
        if stop <= len(clip):
            return clip[:stop]
        tail = clip[-int(0.3 * SR):]
        reps = int(np.ceil((stop - len(clip)) / len(tail)))
        return np.concatenate([clip, np.tile(tail, reps)])[:stop]


def build_clips(cfg: DataConfig, cache_dir: Path, progress: Callable[[str], None] = lambda m: None) -> Dataset:
    path = Path(cache_dir) / f"clips-{cfg.clips_key()}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        offsets = z["offsets"]
        flat = z["audio"].astype(np.float32) / 32767
        clips = [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        events = [Event(**e) for e in json.loads(str(z["events"]))]
        return Dataset(clips, events)
    voices = Voices(cfg.seed)
    clips, events = [], []
    t0 = time.time()
    for i in range(cfg.n_items):
        audio, evs = render_item(i, cfg, voices)
        for e in evs:
            e.clip = len(clips)
        clips.append(audio)
        events += evs
        if (i + 1) % 100 == 0:
            progress(f"synthesised {i + 1}/{cfg.n_items} turns ({time.time() - t0:.0f} s)")
    if cfg.vap:
        shared = Path(cfg.shared_dir) if cfg.shared_dir else default_shared_dir()
        for j, row in enumerate(vap_rows(shared)):
            if row["phrase"] in cfg.vap_exclude:
                continue
            audio, evs = render_vap(row, j, cfg)
            for e in evs:
                e.clip = len(clips)
            clips.append(audio)
            events += evs
    if cfg.conversations:
        audio_by_name, evs = conversation_events(Path(cfg.conversations))
        clip_of = {}
        for name, audio in audio_by_name.items():
            clip_of[name] = len(clips)
            clips.append(audio)
        for e in evs:
            e.clip = clip_of[e.group]
        events += evs
        progress(f"{len(evs)} labelled pauses from {len(clip_of)} conversations in {cfg.conversations}")
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.cumsum([0] + [len(c) for c in clips])
    flat = np.concatenate(clips) if clips else np.zeros(0, np.float32)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez_compressed(tmp, audio=np.round(np.clip(flat, -1, 1) * 32767).astype(np.int16), offsets=offsets,
                        events=json.dumps([{k: v for k, v in asdict(e).items() if k != "signals"} for e in events]))
    tmp.replace(path)
    progress(f"synthesised {len(clips)} clips, {len(events)} pauses -> {path}")
    return build_clips(cfg, cache_dir)   # reload: the cached int16 audio is what every later step sees


# ----------------------------------------------------------------------------------------------------
# Signals per event

def _json_safe(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _from_json(d: dict) -> dict:
    return {k: (float("nan") if v is None else v) for k, v in d.items()}


def compute_signals(data: Dataset, cfg: DataConfig, cache_dir: Path,
                    progress: Callable[[str], None] = lambda m: None) -> Dataset:
    path = Path(cache_dir) / f"signals-{cfg.signals_key()}.json"
    if path.exists():
        rows = json.loads(path.read_text())
        if len(rows) == len(data.events):
            for e, s in zip(data.events, rows):
                e.signals = _from_json(s["signals"])
                e.signals["transcript"] = s["transcript"]
            return data
    if cfg.llm:
        # The LLM reads only the transcript: add it to the signals computed without it.
        base = replace(cfg, llm=False)
        compute_signals(data, base, cache_dir, progress)
        from .signals import LlmEndOfUtterance
        llm = LlmEndOfUtterance()
        rows = []
        for e in data.events:
            e.signals["llm_eou"] = llm.probability(e.signals["transcript"])
            rows.append({"transcript": e.signals["transcript"],
                         "signals": _json_safe({k: v for k, v in e.signals.items() if k != "transcript"})})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(rows))
        tmp.replace(path)
        return data
    if cfg.transcripts not in ("moonshine", "script"):
        raise UserError(f"unknown transcript source {cfg.transcripts!r}; choose moonshine or script")
    stt = smart = None
    if cfg.transcripts == "moonshine" or any(e.source == "real" for e in data.events):   # real speech has no script
        from ..config import SttConfig
        from ..models.stt import load_stt
        stt = load_stt(SttConfig())
    if cfg.smart_turn:
        from .signals import SmartTurn
        smart = SmartTurn()
    rows = []
    t0 = time.time()
    for i, e in enumerate(data.events):
        until_end = data.audio_until(e)
        if cfg.transcripts == "moonshine" or e.source == "real":
            transcript = stt.transcribe(until_end[int(max(e.turn_start_s - 0.1, 0) * SR):]).text
        else:
            transcript = e.script
        st = smart.probability(data.audio_until(e, SMART_TURN_AT_S)) if smart else float("nan")
        e.signals = pause_signals(until_end, transcript, st)
        e.signals["transcript"] = transcript
        rows.append({"transcript": transcript,
                     "signals": _json_safe({k: v for k, v in e.signals.items() if k != "transcript"})})
        if (i + 1) % 200 == 0:
            progress(f"signals for {i + 1}/{len(data.events)} pauses ({time.time() - t0:.0f} s)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(rows))
    tmp.replace(path)
    return data
