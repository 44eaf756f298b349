"""What `serve --ray` costs beside the plain server, the same agent, the same clients, one machine.

    .venv/bin/python benchmarks/ray_overhead.py [--agent streaming] [--runs 3] [--idle-s 10] \
        [--clients 4] [--ramp 2,4,6,8,10,12] [--tail 6] [--replicas 1] [--ray-first]

Starts `fullduplex serve --max-sessions 64` and then `fullduplex serve --ray --replicas R
--sessions-per-replica 64` (a local Ray), each as its own process tree, and for each measures, in order:
1. idle: memory (RSS of every process of the tree, summed) and CPU of the whole tree;
2. answer: for --runs single conversations, the answer as heard by the client (first audible agent
   sample after the end of the user's speech, network, codec and Ray's hops included);
3. frames: --clients sessions at once (starts spread over 1 s), each streaming the recording in real time
   over Opus and sending a 0x04 `{"probe": i}` every 5th frame. The server logs it as a `client.metadata`
   event, which the session sends back (0x04) with its next frame: each probe's round trip goes through
   everything an audio frame goes through (the proxy and Ray's hops both ways, the replica's event loop,
   the session's frame loop; up to one 20 ms frame of waiting for that loop in either server). Printed:
   round trip p50 / p90 / p99, and the CPU of the whole tree per second of session (less the idle CPU);
4. held: the capacity ramp of benchmarks/server_load.py (its `level` and `summarise`: a level is held when
   every session answered within the tail, nothing was skipped or dropped, <= 5 % of frames late, and the
   generator kept to its schedule), --ramp levels, each retried once, stopping at the first not held.
The clients run in this process (at nice -5 where allowed: they stand for other machines). Prints;
asserts nothing. On a shared machine, repeat a comparison that looks off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fullduplex.audio.frames import SAMPLE_RATE  # noqa: E402
from fullduplex.audio.resample import resample  # noqa: E402
from fullduplex.server import protocol  # noqa: E402
from fullduplex.errors import UserError  # noqa: E402
from fullduplex.server.ogg import OggOpusWriter  # noqa: E402
from fullduplex.server.client import converse, first_sound, server_messages, wait_for_handshake  # noqa: E402
from fullduplex.server.protocol import Kind  # noqa: E402
from fullduplex.testing import clips  # noqa: E402
from server_load import level, speech_end, summarise  # noqa: E402  the same definition of 'held'

CLIP = "ljspeech-LJ002-0020"       # the single-answer runs (1.5 s)
LOAD_CLIP = "ljspeech-LJ002-0035"  # the load phases, as server_load.py (0.5 s of silence first)
FRAME_MS = 20
PROBE_EVERY = 5                    # frames: a probe every 100 ms


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int) -> list[int]:
    """Every process of ``pid``'s session (started with its own: Ray's processes re-parent to init)."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,sid,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    rows = [line.split(None, 3) for line in out]
    sid = next((r[2] for r in rows if int(r[0]) == pid), None)
    return [int(r[0]) for r in rows if r[2] == sid]   # the whole session (the server's own process group)


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def cpu_s(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def wait_up(port: int, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the server on {port} did not come up")


async def probed(url: str, audio: np.ndarray) -> dict:
    """One session streaming ``audio`` in real time (Opus, 20 ms frames, as ``converse``) with a 0x04
    ``{"probe": i}`` after every PROBE_EVERY-th frame; each probe's round trip, s (see the docstring)."""
    n24 = protocol.SAMPLE_RATE * FRAME_MS // 1000
    up = resample(audio, SAMPLE_RATE, protocol.SAMPLE_RATE)
    up = np.concatenate([up, np.zeros(-len(up) % n24, np.float32)])     # whole frames
    sent: dict[int, float] = {}
    rtts: list[float] = []
    errors: list[str] = []
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, max_msg_size=8 * 1024 * 1024) as ws:
            try:
                refused = await wait_for_handshake(ws, url, 60)
            except UserError as e:
                refused = str(e)
            if refused is not None:
                return {"rtts": [], "lost": 0, "errors": [refused]}
            t0 = time.monotonic()

            async def receive() -> None:
                async for kind, payload in server_messages(ws):
                    if kind == Kind.METADATA:
                        obj = json.loads(payload)
                        if obj.get("kind") == "client.metadata":
                            probe = obj.get("metadata", {}).get("probe")
                            if probe in sent:
                                rtts.append(time.monotonic() - sent.pop(probe))
                    elif kind == Kind.ERROR:
                        errors.append(payload.decode("utf-8", "replace"))

            receiver = asyncio.create_task(receive())
            writer = OggOpusWriter(protocol.SAMPLE_RATE)
            for i in range(len(up) // n24):
                delay = t0 + i * FRAME_MS / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if receiver.done():
                    break
                frame = up[i * n24:(i + 1) * n24]
                data = writer.append_pcm(frame)
                if data:
                    await ws.send_bytes(bytes([Kind.AUDIO]) + data)
                if i % PROBE_EVERY == 0:
                    sent[i] = time.monotonic()
                    await ws.send_bytes(protocol.metadata({"probe": i}))
            await asyncio.sleep(0.5)    # the last probes' way back
            await ws.close()
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
    return {"rtts": rtts, "lost": len(sent), "errors": errors}


async def probe_level(url: str, audio: np.ndarray, n: int, spread_s: float = 1.0) -> list[dict]:
    async def one(i: int) -> dict:
        await asyncio.sleep(spread_s * i / n)
        return await probed(url, audio)
    return await asyncio.gather(*(one(i) for i in range(n)))


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def measure(name: str, extra: list[str], args: argparse.Namespace) -> dict:
    port = free_port()
    cmd = [str(ROOT / ".venv/bin/fullduplex"), "serve", "--agent", args.agent, "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"ws://127.0.0.1:{port}/api/chat"
    result: dict = {"name": name}
    try:
        wait_up(port, 240)
        time.sleep(3)
        # 1. idle
        pids = tree(proc.pid)
        c0 = cpu_s(pids)
        time.sleep(args.idle_s)
        idle = (cpu_s(tree(proc.pid)) - c0) / args.idle_s
        mem = rss_mb(tree(proc.pid))
        # 2. single answers
        audio = clips.read_clip(ROOT / "tests" / "data", f"{CLIP}.wav")
        end = len(audio) / SAMPLE_RATE
        audio = np.concatenate([audio, np.zeros(int(6 * SAMPLE_RATE), np.float32)])
        heard = []
        for _ in range(args.runs):
            run = asyncio.run(converse(url, audio))
            at = first_sound(run.output, after_s=end)
            heard.append(at - end if at is not None else float("nan"))
        print(f"{name:>6}: {len(pids)} processes, RSS {mem:.0f} MB, idle CPU {100 * idle:.1f} % of a core; "
              f"answer heard {np.nanmedian(heard):.3f} s after the speech (median of {args.runs}: "
              f"{', '.join(f'{h:.3f}' for h in heard)})", flush=True)
        result.update(idle=idle, rss=mem, heard=float(np.nanmedian(heard)))
        # 3. frames: the probes' round trips and the CPU per session, --clients at once
        speech = clips.read_clip(ROOT / "tests" / "data", f"{LOAD_CLIP}.wav")
        lead = np.zeros(SAMPLE_RATE // 2, np.float32)
        load = np.concatenate([lead, speech, np.zeros(int(args.tail * SAMPLE_RATE), np.float32)])
        session_s = len(load) / SAMPLE_RATE
        c0, t0 = cpu_s(tree(proc.pid)), time.monotonic()
        rows = asyncio.run(probe_level(url, load, args.clients))
        wall = time.monotonic() - t0
        used = cpu_s(tree(proc.pid)) - c0
        rtts = [r for row in rows for r in row["rtts"]]
        per_session = (used - idle * wall) / (args.clients * session_s)
        errors = [e for row in rows for e in row["errors"]]
        print(f"{name:>6}: {args.clients} sessions: probe round trip p50 {1000 * pct(rtts, 50):.1f} / p90 "
              f"{1000 * pct(rtts, 90):.1f} / p99 {1000 * pct(rtts, 99):.1f} ms ({len(rtts)} probes, "
              f"{sum(row['lost'] for row in rows)} unanswered); CPU {used / wall:.2f} cores over {wall:.1f} s = "
              f"{per_session:.3f} CPU-s per s of session beyond idle"
              + (f"; errors {errors[:2]}" if errors else ""), flush=True)
        result.update(rtts=rtts, cpu_per_session=per_session)
        # 4. sessions held (benchmarks/server_load.py's definition)
        end_s = speech_end(np.concatenate([lead, speech]))
        held = 0
        for n in [int(c) for c in args.ramp.split(",") if c.strip()]:
            for attempt in range(2):     # once more: one hiccup of a shared machine is not a capacity
                c0, t0 = cpu_s(tree(proc.pid)), time.monotonic()
                s = summarise(asyncio.run(level(url, np.concatenate([lead, speech]), end_s, n, 1.0, args.tail)))
                cores = (cpu_s(tree(proc.pid)) - c0) / (time.monotonic() - t0)
                print(f"{name:>6}: {n:>2} sessions: answered {s['answered']}/{n}, heard med {s['heard_med'] or 0:.2f} "
                      f"max {s['heard_max'] or 0:.2f} s, late {s['late_pct']:.1f} %, skipped {s['skipped']}, "
                      f"dropped {s['dropped']}, generator lag {s['gen_lag']:.2f} s, {cores:.2f} cores: "
                      f"{'held' if s['held'] else 'NOT held'}" + (f"  errors: {s['errors'][:2]}" if s["errors"] else ""),
                      flush=True)
                if s["held"]:
                    break
            if not s["held"]:
                break
            held = n
        result["held"] = held if args.ramp.strip() else "-"    # '-': the ramp was skipped
        return result
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="streaming", help="(the duplex agent holds only ~2 sessions on 2 cores)")
    ap.add_argument("--runs", type=int, default=3, help="single conversations for the heard answer")
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=4, help="sessions at once for the round trips and the CPU")
    ap.add_argument("--ramp", default="2,4,6,8,10,12", help="the sessions-held ramp ('' skips it)")
    ap.add_argument("--tail", type=float, default=6.0, help="silence streamed after the speech (s)")
    ap.add_argument("--replicas", type=int, default=1, help="Ray replicas (each loads the models)")
    ap.add_argument("--ray-first", action="store_true",
                    help="measure serve --ray first (a repeat in the other order: a shared machine's load drifts)")
    args = ap.parse_args()
    try:   # the clients stand for other machines: they should not queue behind the server for a core
        os.setpriority(os.PRIO_PROCESS, 0, -5)
        prio = "clients at nice -5"
    except OSError:
        prio = "clients at normal priority (not root)"
    print(f"agent {args.agent}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; {prio}",
          flush=True)
    servers = {"plain": ["--max-sessions", "64"],
               "ray": ["--ray", "--replicas", str(args.replicas), "--sessions-per-replica", "64"]}
    order = ["ray", "plain"] if args.ray_first else ["plain", "ray"]
    measured = {name: measure(name, servers[name], args) for name in order}
    plain, ray = measured["plain"], measured["ray"]
    print(f"\nserve --ray (--replicas {args.replicas}) against serve, agent {args.agent}, the same clients:")
    for q in (50, 90, 99):
        print(f"  probe round trip p{q}: {1000 * pct(plain['rtts'], q):.1f} -> {1000 * pct(ray['rtts'], q):.1f} ms "
              f"(+{1000 * (pct(ray['rtts'], q) - pct(plain['rtts'], q)):.1f} ms)")
    print(f"  CPU per session beyond idle: {plain['cpu_per_session']:.3f} -> {ray['cpu_per_session']:.3f} CPU-s/s "
          f"(+{ray['cpu_per_session'] - plain['cpu_per_session']:.3f}); idle {plain['idle']:.3f} -> "
          f"{ray['idle']:.3f} cores; RSS {plain['rss']:.0f} -> {ray['rss']:.0f} MB")
    print(f"  answer heard: {plain['heard']:.3f} -> {ray['heard']:.3f} s; sessions held: {plain['held']} -> {ray['held']}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end", flush=True)


if __name__ == "__main__":
    main()
