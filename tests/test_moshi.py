"""The Moshi agent on the tiny random checkpoint (CPU): loading, streaming, timeline, errors, bench.

The checkpoint is written once per session by ``make_tiny`` and loaded through the same path as a real
one. Its weights are random: the tests check plumbing (frames, timing, events), not speech.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from fullduplex.cli import main
from fullduplex.config import Config
from fullduplex.engines import ModelStack, make_agent
from fullduplex.errors import UserError
from fullduplex.models.moshi import batch_for
from fullduplex.testing import run_scripted
from fullduplex.runtime.runner import run_agent

from .conftest import DATA, read_clip


pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


def _need_moshi() -> None:
    """Optional extra: skipped where it is not installed, but CI (`make test` installs it) must run these."""
    os.environ.setdefault("NO_TORCH_COMPILE", "1")   # as the loader does on CPU, before moshi is first imported
    try:
        import moshi.models  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"the moshi extra is not installed ({e})")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    _need_moshi()
    from fullduplex.models.moshi import make_tiny
    return make_tiny(tmp_path_factory.mktemp("moshi") / "tiny", seed=0)


def moshi_cfg(folder, **moshi) -> Config:
    return Config().with_(moshi={"checkpoint_dir": str(folder), "device": "cpu", "seed": 0, **moshi})


def user_audio(seconds: float) -> np.ndarray:
    clip = read_clip("jfk.wav")[: int(seconds * 16000)]
    return np.concatenate([clip, np.zeros(int(seconds * 16000) - len(clip), np.float32)])


def test_importing_fullduplex_does_not_import_torch():
    code = ("import sys, fullduplex.cli, fullduplex.engines; fullduplex.cli.build_parser(); "
            "print('torch' in sys.modules, 'moshi' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_make_tiny_is_deterministic_and_says_random(tiny, tmp_path, capsys):
    from fullduplex.models.moshi import TINY_TEXT_VOCAB
    import sentencepiece as spm

    assert main(["moshi", "make-tiny", str(tmp_path / "again")]) == 0
    said = capsys.readouterr().out
    assert "RANDOM weights" in said
    for name in ("config.json", "model.safetensors", "mimi.safetensors", "tokenizer.model", "mimi_config.json"):
        assert (tmp_path / "again" / name).read_bytes() == (tiny / name).read_bytes(), name
    config = json.loads((tiny / "config.json").read_text())
    assert config["model_id"]["random_weights"] is True
    sp = spm.SentencePieceProcessor(model_file=str(tiny / "tokenizer.model"))
    assert sp.vocab_size() == config["text_card"] == TINY_TEXT_VOCAB
    assert "RANDOM" in (tiny / "README.txt").read_text()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["moshi", "make-tiny", str(tmp_path / "busy")]) == 2
    assert "is not empty" in capsys.readouterr().err


def run_instant(cfg, audio):
    """On the harness's settled clock: every frame's model step is done before the next frame."""
    agent = make_agent("moshi", ModelStack(cfg), cfg)
    return run_scripted(agent, seconds=len(audio) / 16000, audio=audio)



def test_one_frame_out_per_frame_in_and_text_at_the_sample_it_plays(tiny):
    cfg = moshi_cfg(tiny)
    audio = user_audio(2.4)
    result = run_instant(cfg, audio)

    assert result.stats.frames == len(audio) // 320
    assert len(result.output) == len(audio)
    out = result.output
    assert np.abs(out[:1600]).max() == 0, "nothing can come out before the first 80 ms frame is complete"
    assert np.abs(out[8000:]).max() > 0, "Moshi's (random) voice comes out"

    events = result.events
    model = next(e for e in events if e.kind == "moshi.model")
    assert model.data["random_weights"] is True and "RANDOM" in model.data["description"]
    texts = [e for e in events if e.kind == "agent.text"]
    assert len(texts) >= 15
    assert all(e.data["token"] not in (0, 3) and e.data["text"] for e in texts), "padding is never text"
    assert [e.data["frame"] for e in texts] == sorted(e.data["frame"] for e in texts)
    first_audio = np.flatnonzero(out)[0] / 16000      # as recorded: the runner plays a step's frame next
    assert texts[0].t >= first_audio - 1e-9 and any(abs(e.t - first_audio) < 1e-9 for e in texts[:2]), \
        "text is stamped where its frame's audio starts on the recorded timeline"
    delay = np.array([e.t - (e.data["input_t"] + 0.08) for e in texts])
    assert delay.min() >= 0 and delay.max() <= 0.1, "played after its input frame ends, within ~a frame"
    # One Moshi frame is 80 ms of playout; the only slack is silence played while the buffer was empty
    # (soxr hands back resampled audio in blocks: a few short underruns in the first seconds).
    gaps = np.diff([e.t for e in texts]) - 0.08 * np.diff([e.data["frame"] for e in texts])
    summary = next(e for e in events if e.kind == "moshi.summary").data
    assert gaps.min() > -1e-6, "no audio is skipped"
    assert gaps.sum() <= summary["underrun_ms"] / 1000 + 1e-6 and summary["underrun_ms"] < 200
    assert np.mean(np.abs(gaps) < 1e-6) > 0.7
    assert summary["frames_in"] == summary["frames_run"] == len(audio) // 1280 - 1   # soxr keeps the last few ms
    assert summary["dropped"] == 0 and summary["failed"] == 0 and summary["trimmed_ms"] == 0
    assert summary["random_weights"] is True and summary["text_tokens"] == len(texts)
    assert any(e.kind == "moshi.step" for e in events)

    again = run_instant(cfg, audio)   # the pooled model, reset: a new conversation starts from scratch
    assert np.array_equal(again.output, out)
    assert [e.data["text"] for e in again.events if e.kind == "agent.text"] == [e.data["text"] for e in texts]


def test_real_time_on_cpu(tiny):
    cfg = moshi_cfg(tiny)
    agent = make_agent("moshi", ModelStack(cfg), cfg)
    agent.prepare()
    audio = user_audio(2.0)
    result = run_agent(agent, audio)        # wall clock, real compute
    assert len(result.recorder.agent) == len(audio)
    assert result.step_percentile(50) < 5, "step() only moves audio: the model runs in the worker"
    summary = next(e for e in result.events if e.kind == "moshi.summary").data
    assert summary["frames_run"] + summary["dropped"] == summary["frames_in"] == len(audio) // 1280 - 1
    assert summary["compute_p50_ms"] < summary["budget_ms"], "the tiny model keeps up on one CPU thread"
    texts = [e for e in result.events if e.kind == "agent.text" and e.data.get("heard", True)]
    assert texts and all(e.t >= e.data["input_t"] + 0.08 - 1e-6 for e in texts)


def test_a_slow_model_drops_frames_and_says_so(tiny, monkeypatch):
    cfg = moshi_cfg(tiny)
    agent = make_agent("moshi", ModelStack(cfg), cfg)
    agent.prepare()
    model = batch_for(cfg.moshi).model     # the batch's model the call will step on
    encode = model.mimi.encode

    def slow_encode(x):
        time.sleep(0.2)      # 2.5x the 80 ms budget
        return encode(x)

    monkeypatch.setattr(model.mimi, "encode", slow_encode)   # undone after the test: the batch is shared
    result = run_agent(agent, user_audio(2.0))
    summary = next(e for e in result.events if e.kind == "moshi.summary").data
    assert summary["dropped"] > 5 and summary["real_time"] is False and summary["slow_frames"] >= 5
    assert any(e.kind == "moshi.lag" and e.data.get("dropped_total") for e in result.events)
    wait_bound = (cfg.moshi.queue_frames + 1) * summary["compute_max_ms"] + 50
    assert summary["latency_p50_ms"] <= wait_bound, "bounded queue: the wait never grows past its depth"
    assert len(result.recorder.agent) == 32000
    assert result.queue_fill == 1.0 and result.jobs_refused == summary["dropped"], "the runner sees the full queue"


def test_loads_from_a_folder_with_the_network_disabled(tiny, monkeypatch):
    from fullduplex.models.moshi import load_moshi

    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    model = load_moshi(moshi_cfg(tiny).moshi)
    assert model.random_weights and model.frame_size == 1920 and model.sample_rate == 24000
    assert model.tokenizer.vocab_size() == model.lm.text_card


def _copy(tiny, dest, drop=None):
    shutil.copytree(tiny, dest)
    if drop:
        (dest / drop).unlink()
    return dest


def _error_of(folder, **moshi) -> str:
    from fullduplex.models.moshi import load_moshi
    with pytest.raises(UserError) as err:
        load_moshi(moshi_cfg(folder, **moshi).moshi)
    return str(err.value)


def test_missing_or_incomplete_checkpoints_are_clear_errors(tiny, tmp_path):
    assert "does not exist" in _error_of(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "is not a Moshi checkpoint: it has no config.json" in _error_of(tmp_path / "empty")
    message = _error_of(_copy(tiny, tmp_path / "no-mimi", drop="mimi.safetensors"))
    assert "is incomplete: missing mimi.safetensors (Mimi weights)" in message
    assert "missing config.json" in _error_of(_copy(tiny, tmp_path / "no-config", drop="config.json"))
    broken = _copy(tiny, tmp_path / "truncated")
    (broken / "model.safetensors").write_bytes((tiny / "model.safetensors").read_bytes()[:5000])
    assert "could not load the Moshi checkpoint" in _error_of(broken)


@pytest.mark.filterwarnings("ignore:Repository .* contains no config.json:UserWarning")
def test_hub_without_network_is_a_clear_error(tiny, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)   # fail at once, no retries
    from fullduplex.models.moshi import load_moshi
    with pytest.raises(UserError) as err:
        load_moshi(Config().moshi)
    assert "could not fetch the Moshi checkpoint 'kyutai/moshiko-pytorch-bf16'" in str(err.value)
    assert "--moshi-dir" in str(err.value)


def test_tokenizer_that_does_not_fit_the_lm_is_a_clear_error(tiny, tmp_path):
    folder = _copy(tiny, tmp_path / "mismatch")
    config = json.loads((folder / "config.json").read_text())
    config["text_card"] = 100
    (folder / "config.json").write_text(json.dumps(config))
    message = _error_of(folder)
    assert "text vocabulary of 100 tokens" in message and "has 128" in message
    garbage = _copy(tiny, tmp_path / "garbage")
    (garbage / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    assert "is not a sentencepiece text tokenizer" in _error_of(garbage)


def test_cuda_without_a_gpu_is_a_clear_error(tiny, tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert "no CUDA GPU is available" in _error_of(tiny, device="cuda")
    assert "unknown device" in _error_of(tiny, device="tpu")
    code = main(["simulate", "--agent", "moshi", "--moshi-dir", str(tiny), "--device", "cuda",
                 "--input", str(DATA / "jfk.wav"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "fullduplex: error:" in err and "no CUDA GPU" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_simulate_and_bench_run_with_moshi_dir(tiny, tmp_path, capsys):
    clip = user_audio(1.6)
    sf.write(tmp_path / "user.wav", clip, 16000)
    assert main(["simulate", "--agent", "moshi", "--moshi-dir", str(tiny), "--device", "cpu", "--tail", "0",
                 "--input", str(tmp_path / "user.wav"), "--out", str(tmp_path / "sim")]) == 0
    printed = capsys.readouterr()
    assert "RANDOM" in printed.out and "moshi inner monologue" in printed.out
    rows = [json.loads(line) for line in (tmp_path / "sim" / "timeline.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "agent.text" for r in rows)

    scenario = tmp_path / "suite" / "real" / "turn_taking" / "jfk"
    scenario.mkdir(parents=True)
    sf.write(scenario / "input.wav", clip, 16000, subtype="PCM_16")
    (scenario / "turn_taking.json").write_text(json.dumps([{"text": "[TURN-TAKING]", "timestamp": [1.0, 1.5]}]))
    out = tmp_path / "bench"
    assert main(["bench", "run", "--agents", "moshi", "--moshi-dir", str(tiny), "--suite", str(tmp_path / "suite"),
                 "--out", str(out), "--no-report"]) == 0
    folder = out / "moshi" / "real" / "turn_taking" / "jfk"
    assert sf.info(str(folder / "output.wav")).frames == len(clip)
    assert "agent.text" in (folder / "timeline.jsonl").read_text()


# -- many conversations batched on one model ---------------------------------------------------------

def greedy_cfg(folder, slots: int, **moshi) -> Config:
    """Greedy sampling (temperature 0): every slot is deterministic whatever the others do (Moshi's
    sampler draws all slots from one generator, so a seed alone does not make a shared batch repeatable)."""
    return moshi_cfg(folder, slots=slots, temp=0.0, temp_text=0.0, **moshi)


def lockstep(agent, audios, stall=None, leave=None, join=None):
    """Step one conversation per audio 20 ms at a time on a virtual clock, waiting for the batch after each
    tick. ``stall`` {k: (t0, t1)}: conversation k hands over nothing then; ``leave`` {k: t}: k closes at t;
    ``join`` {k: t}: k opens at t. Returns each conversation's output frames and events."""
    from fullduplex.audio.clock import VirtualClock
    from fullduplex.testing.harness import wait_idle

    stall, leave, join = stall or {}, leave or {}, join or {}
    convs: list = [None] * len(audios)
    outs = [[] for _ in audios]
    for i in range(len(audios[0]) // 320):
        t = i * 0.02
        for k, audio in enumerate(audios):
            if convs[k] is None and t >= join.get(k, 0.0):
                convs[k] = agent.conversation(clock=VirtualClock())
            c = convs[k]
            if c is None or c.closed:
                continue
            if t >= leave.get(k, 1e9):
                c.close()
                continue
            a, b = stall.get(k, (1e9, 1e9))
            if not a <= t < b:
                outs[k].append(c.step(audio[i * 320:(i + 1) * 320], t))
        wait_idle(*[c.slot for c in convs if c is not None and not c.closed])
    for c in convs:
        if c is not None:
            c.close()
    return [np.concatenate(o) for o in outs], [c.events.snapshot() for c in convs], convs


def texts_of(events) -> list[tuple[int, int]]:
    return [(e.data["frame"], e.data["token"]) for e in events if e.kind == "agent.text"]


def test_two_slots_fed_the_same_audio_give_identical_output_and_text(tiny):
    cfg = greedy_cfg(tiny, slots=2)
    agent = make_agent("moshi", ModelStack(cfg), cfg)
    audio = user_audio(2.0)
    (a, b), (ea, eb), convs = lockstep(agent, [audio, audio])
    assert {c.slot.index for c in convs} == {0, 1}
    assert np.abs(a).max() > 0 and np.array_equal(a, b)
    assert len(texts_of(ea)) >= 5 and texts_of(ea) == texts_of(eb)
    summary = next(e for e in ea if e.kind == "moshi.summary").data
    assert summary["slots"] == 2 and summary["batch_mean"] == 2.0, "both stepped together, every frame"
    assert summary["dropped"] == 0 and summary["failed"] == 0


def test_a_slot_reset_mid_run_equals_a_fresh_conversation(tiny):
    cfg = greedy_cfg(tiny, slots=2)
    agent = make_agent("moshi", ModelStack(cfg), cfg)
    speech, noise = user_audio(2.4), (0.05 * np.random.default_rng(1).standard_normal(38400)).astype(np.float32)
    (fresh,), (fresh_events,), _ = lockstep(agent, [speech])
    # Conversation 0 talks for 1 s on slot 0 and leaves; 2 (joining at 1 s) gets slot 0, reset, while
    # conversation 1 has been running on slot 1 all along.
    audios = [noise, noise, np.concatenate([np.zeros(16000, np.float32), speech])[:38400]]
    outs, events, convs = lockstep(agent, audios, leave={0: 1.0}, join={2: 1.0})
    assert convs[0].slot.index == convs[2].slot.index == 0 and convs[1].slot.index == 1
    late = outs[2]
    assert np.allclose(late, fresh[:len(late)], atol=1e-6) and np.abs(late).max() > 0
    n_frames = len(late) // 1280 - 1
    assert texts_of(events[2]) == [t for t in texts_of(fresh_events) if t[0] < n_frames]


def test_a_conversation_leaving_does_not_change_the_others(tiny):
    cfg = greedy_cfg(tiny, slots=3)
    agent = make_agent("moshi", ModelStack(cfg), cfg)
    speech = user_audio(2.4)
    noise = (0.05 * np.random.default_rng(2).standard_normal(len(speech))).astype(np.float32)
    (stay, other), (stay_events, _), _ = lockstep(agent, [speech, noise])
    (stay2, _), (stay2_events, _), _ = lockstep(agent, [speech, noise], leave={1: 0.8})
    assert np.allclose(stay, stay2, atol=1e-6) and texts_of(stay_events) == texts_of(stay2_events)
    (alone,), (alone_events,), _ = lockstep(agent, [speech])
    assert np.allclose(stay, alone, atol=1e-6) and texts_of(stay_events) == texts_of(alone_events)


def test_a_stalled_conversation_costs_the_others_nothing(tiny):
    """Conversation 1 hands over nothing for 0.6 s: the batch steps without it after waiting at most a frame,
    conversation 0's output is as if alone and nothing is dropped; 1's state waits (masked) and goes on."""
    cfg = greedy_cfg(tiny, slots=2)
    agent = make_agent("moshi", ModelStack(cfg), cfg)
    speech = user_audio(2.0)
    (alone,), (alone_events,), _ = lockstep(agent, [speech])
    t0 = time.perf_counter()
    (a, b), (ea, eb), convs = lockstep(agent, [speech, speech], stall={1: (0.4, 1.0)})
    assert time.perf_counter() - t0 < 10
    assert np.allclose(a, alone, atol=1e-6) and texts_of(ea) == texts_of(alone_events)
    sa = next(e for e in ea if e.kind == "moshi.summary").data
    sb = next(e for e in eb if e.kind == "moshi.summary").data
    assert sa["dropped"] == sb["dropped"] == 0 and 1.0 < sa["batch_mean"] < 2.0
    # After its stall, 1 cuts its frames two ticks out of phase with 0's: each step waits for it, at most a frame.
    assert sa["latency_p50_ms"] <= 80 + sa["compute_max_ms"] + 30 and sb["frames_run"] == sb["frames_in"] > 10


def test_a_batch_behind_real_time_drops_frames_evenly(tiny, monkeypatch):
    """Every step takes 200 ms (2.5 frames): both calls on the batch drop about the same frames, each says so."""
    import threading

    cfg = moshi_cfg(tiny, slots=2)
    agent = make_agent("moshi", ModelStack(cfg), cfg)
    agent.prepare()
    model = batch_for(cfg.moshi).model
    encode = model.mimi.encode

    def slow_encode(x):
        time.sleep(0.2)
        return encode(x)

    monkeypatch.setattr(model.mimi, "encode", slow_encode)
    results = {}
    calls = [threading.Thread(target=lambda k=k: results.__setitem__(k, run_agent(agent, user_audio(2.0))))
             for k in range(2)]
    for c in calls:
        c.start()
    for c in calls:
        c.join(30)
    summaries = [next(e for e in results[k].events if e.kind == "moshi.summary").data for k in range(2)]
    dropped = [s["dropped"] for s in summaries]
    assert min(dropped) > 5 and abs(dropped[0] - dropped[1]) <= 2, dropped
    assert all(s["batch_mean"] > 1.5 for s in summaries), "they were stepped together"
    for k in range(2):
        assert any(e.kind == "moshi.lag" and e.data.get("dropped_total") for e in results[k].events)


def test_beyond_the_slots_a_conversation_is_refused(tiny):
    from fullduplex.errors import Busy
    cfg = greedy_cfg(tiny, slots=2)
    agent = make_agent("moshi", ModelStack(cfg), cfg)
    agent.prepare()
    assert agent.capacity == 2
    a, b = agent.conversation(), agent.conversation()
    with pytest.raises(Busy) as err:
        agent.conversation()
    assert "all 2 Moshi slot(s)" in str(err.value) and "--moshi-slots" in str(err.value)
    a.close()
    c = agent.conversation()        # a slot freed by a call that ended is taken again
    assert c.slot.index == a.slot.index
    b.close()
    c.close()


def test_slots_from_gpu_memory_are_conservative(tiny):
    from fullduplex.models.moshi import auto_slots, load_moshi, per_slot_bytes, slots_for_memory
    model = load_moshi(moshi_cfg(tiny).moshi)
    assert auto_slots(model) == 1, "one slot on a CPU"
    assert 100_000 < per_slot_bytes(model) - (64 << 20) < 50_000_000, "the tiny model's state: KV caches and convs"
    gb = 1 << 30
    # Moshi 7B on an H200: ~124 GB free once the weights are in, ~2 GB per slot (1.6 GB KV cache x 1.25 + 64 MB).
    per_slot = int(1.6 * gb * 1.25 + (64 << 20))
    assert 48 <= slots_for_memory(124 * gb, 141 * gb, per_slot) <= 56
    assert slots_for_memory(500 * gb, 600 * gb, per_slot) == 64, "capped: beyond ~64 the step is the limit"
    assert slots_for_memory(1 * gb, 24 * gb, per_slot) == 1, "at least one"


def test_server_holds_one_batch_then_says_busy(tiny):
    """serve --agent moshi --moshi-slots 2: two clients stream at once on one batch, a third is refused with
    0x05 busy and close 1013 while they go on; a client that stops sending gets silence from its jitter
    buffer, so its slot keeps stepping in time with the other (no frame refused, no lag)."""
    import asyncio

    from fullduplex.server.client import converse
    from fullduplex.server.config import ServerConfig
    from fullduplex.server.testserver import BackgroundServer

    cfg = moshi_cfg(tiny, slots=2)
    speech = user_audio(2.5)
    with BackgroundServer("moshi", ModelStack(cfg), cfg=cfg, scfg=ServerConfig(port=0, max_sessions=8)) as srv:
        async def scenario():
            a = asyncio.create_task(converse(srv.url, speech))
            b = asyncio.create_task(converse(srv.url, speech[:8000], linger_s=2.0))   # 0.5 s, then silent
            await asyncio.sleep(1.2)
            third = await converse(srv.url, speech[:3200])
            return await a, await b, third
        a, b, third = asyncio.run(scenario())
        deadline = time.monotonic() + 5
        while srv.call(lambda: srv.state.active) and time.monotonic() < deadline:
            time.sleep(0.02)
        status = srv.call(srv.state.status)
        sessions = srv.call(lambda: list(srv.state.recent))
    assert third.errors and third.errors[0].startswith("busy:") and third.close_code == 1013
    assert status["max_sessions"] == 2 and status["refused_busy"] == 1 and status["served"] == 2
    for run in (a, b):
        assert not run.errors and run.close_code == 1000 and run.agent_text
    assert b.received_audio_s > 2.0, "the stalled client's slot kept stepping: its agent audio kept coming"
    for s in sessions:
        assert s["queues"]["moshi"]["refused"] == 0, "no frame dropped: the batch kept time for both"
    stalled = min(sessions, key=lambda s: s["frames"] - s["underrun_frames"])
    assert stalled["underrun_frames"] > 50, "its slot got silence while the client sent nothing"


def test_bench_jobs_share_one_batch_uncapped_only_on_a_gpu(tiny):
    from fullduplex.bench.runner import effective_jobs, moshi_on_gpu
    cores = os.cpu_count() or 1
    assert effective_jobs(64, batched_on_gpu=True) == (64, None), "64 slots of one GPU batch, not cores/2"
    assert effective_jobs(64)[0] == max(1, cores // 2)
    assert not moshi_on_gpu(["moshi"], moshi_cfg(tiny)), "on a CPU the cap stays"
    assert not moshi_on_gpu(["moshi", "duplex"], moshi_cfg(tiny))


def test_a_full_batch_is_busy_for_the_server_too(tiny):
    """Every slot taken by calls the server does not count (another user of the same agent): the client
    still gets 'busy' (0x05, close 1013), not an internal error."""
    from fullduplex.server.client import run_remote
    from fullduplex.server.config import ServerConfig
    from fullduplex.server.testserver import BackgroundServer

    cfg = moshi_cfg(tiny, slots=1)
    with BackgroundServer("moshi", ModelStack(cfg), cfg=cfg, scfg=ServerConfig(port=0)) as srv:
        held = srv.state.agent.conversation()          # the one slot, taken outside the server
        try:
            run = run_remote(srv.url, user_audio(0.2))
        finally:
            held.close()
        status = srv.call(srv.state.status)
    assert run.errors and run.errors[0].startswith("busy:") and "Moshi slot" in run.errors[0]
    assert run.close_code == 1013 and status["refused_busy"] == 1 and status["failed"] == 0
