"""What `serve --ray` costs beside the plain server, the same agent, the same clients, one machine.

    .venv/bin/python benchmarks/ray_overhead.py [--agent sequential] [--runs 3] [--idle-s 10]

Starts `fullduplex serve` and then `fullduplex serve --ray --replicas 1` (a local Ray), each as its own
process tree, and for each prints: memory (RSS of every process of the tree, summed), CPU of the whole
tree while idle, and for --runs single conversations the answer as heard by the client (first audible
agent sample after the end of the user's speech, network, codec and Ray's hops included). Prints;
asserts nothing. (Per-frame delivery jitter is not measured here.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fullduplex.audio.frames import SAMPLE_RATE  # noqa: E402
from fullduplex.server.client import converse, first_sound  # noqa: E402
from fullduplex.testing import clips  # noqa: E402

CLIP = "ljspeech-LJ002-0020"


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


def measure(name: str, extra: list[str], agent: str, runs: int, idle_s: float) -> None:
    port = free_port()
    cmd = [str(ROOT / ".venv/bin/fullduplex"), "serve", "--agent", agent, "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_up(port)
        time.sleep(3)
        pids = tree(proc.pid)
        c0 = cpu_s(pids)
        time.sleep(idle_s)
        idle = (cpu_s(tree(proc.pid)) - c0) / idle_s
        mem = rss_mb(tree(proc.pid))
        audio = clips.read_clip(ROOT / "tests" / "data", f"{CLIP}.wav")
        end = len(audio) / SAMPLE_RATE
        audio = np.concatenate([audio, np.zeros(int(6 * SAMPLE_RATE), np.float32)])
        heard = []
        for _ in range(runs):
            run = asyncio.run(converse(f"ws://127.0.0.1:{port}/api/chat", audio))
            at = first_sound(run.output, after_s=end)
            heard.append(at - end if at is not None else float("nan"))
        print(f"{name:>6}: {len(pids)} processes, RSS {mem:.0f} MB, idle CPU {100 * idle:.1f} % of a core; "
              f"answer heard {np.nanmedian(heard):.3f} s after the speech (median of {runs}: "
              f"{', '.join(f'{h:.3f}' for h in heard)})", flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="sequential")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle-s", type=float, default=10.0)
    args = ap.parse_args()
    measure("plain", [], args.agent, args.runs, args.idle_s)
    measure("ray", ["--ray", "--replicas", "1"], args.agent, args.runs, args.idle_s)


if __name__ == "__main__":
    main()
