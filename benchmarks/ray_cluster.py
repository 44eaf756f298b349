"""`serve --ray` on a Ray cluster of three nodes on this machine: routing, autoscaling and the drain, measured.

    .venv/bin/python benchmarks/ray_cluster.py [--agent sequential] [--drain-s 20] [--scale-delays 2,10]

The README's multi-machine recipe, run on one box (each `ray start` is a node of its own: its own raylet,
object store and worker processes; only the network is loopback):
    RAY_AUTH_MODE=token RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=... ray start --head --num-cpus 0
    (the same variables)                                             ray start --address HEAD --num-cpus 1   (x2)
    fullduplex serve --ray --address HEAD --autoscale 1,2 --sessions-per-replica 6 --drain-s D --scale-delays U,W
The head has no CPU to give, so each replica (1 CPU) runs on a node of its own. Calls are silence (no
answers to compute: what is measured is where calls go, not how fast they are answered), K = 6 per
replica. Then, in order:
1. up: K calls at once on the one replica (load K > 3/4 K): time until a second replica is serving,
   and the node each replica runs on;
2. at once: K more calls at the same instant while the first replica is full: how many the client saw
   refused, and how many 'busy' answers replicas gave on the way (the proxy's guard routes them again);
3. down: all but two calls on each replica hang up (load 4 < 4.5: one replica is enough): time until
   Serve drains one; a call with speech that arrives during the drain (which replica, answered?); on the
   drained replica, one call that hangs up during the drain (ends as usual) and one that outlasts it
   (cut at --drain-s: 'replica_lost', close 1011); the other replica's calls go on.
Prints a table; asserts nothing; stops every Ray process it started (`ray stop` stops every Ray on
this machine: do not run it beside another Ray).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ["RAY_AUTH_MODE"] = "token"     # read when ray is imported: this process joins the cluster too

from fullduplex.audio.frames import SAMPLE_RATE  # noqa: E402
from fullduplex.server.client import converse  # noqa: E402
from fullduplex.server.ray_serve import PROXY_ENV  # noqa: E402
from fullduplex.testing import clips  # noqa: E402
from ray_overhead import free_port  # noqa: E402

RAY = str(Path(sys.executable).parent / "ray")
K = 6                                   # sessions per replica: autoscaling aims at 0.75 K = 4.5 each
CLIP = "ljspeech-LJ002-0020"


def ray_env() -> dict:
    return {**os.environ, "RAY_AUTH_MODE": "token", **PROXY_ENV}


def start_nodes(gcs_port: int) -> None:
    common = ["--disable-usage-stats", "--include-dashboard", "false"]
    subprocess.run([RAY, "start", "--head", "--port", str(gcs_port), "--num-cpus", "0", *common], env=ray_env(),
                   check=True, capture_output=True)
    for _ in range(2):
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{gcs_port}", "--num-cpus", "1",
                        "--disable-usage-stats"], env=ray_env(), check=True, capture_output=True)


def status(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as r:
        return json.loads(r.read())


def replica_states() -> dict[str, str]:
    """Serve's own view of the chat replicas: {replica id: RUNNING / STARTING / STOPPING ...} (the
    controller's details, as its dashboard reads them)."""
    import ray
    from ray.serve.context import _get_global_client
    details = ray.get(_get_global_client()._controller.get_serve_instance_details.remote())
    chat = details.get("applications", {}).get("fullduplex", {}).get("deployments", {}).get("chat", {})
    return {r["replica_id"]: str(r["state"]) for r in chat.get("replicas", [])}


def stopping(states: dict[str, str]) -> list[str]:
    return [rid for rid, state in states.items() if "STOPPING" in state]


async def wait_for(what, limit_s: float, every_s: float = 0.5):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        value = await asyncio.to_thread(what)
        if value:
            return time.monotonic() - t0, value
        await asyncio.sleep(every_s)
    return None, None


def session_replica(run) -> str | None:
    s = next((m["session"] for m in run.metadata if m.get("type") == "session"), None)
    return s.split("-")[2] if s else None


class Call:
    """One client: ``speech`` (or silence) then silence, until it hangs up or the server ends the call."""

    def __init__(self, url: str, name: str, speech: bool = False, length_s: float = 600.0) -> None:
        self.name, self.hang_up = name, asyncio.Event()
        first = clips.read_clip(ROOT / "tests" / "data", f"{CLIP}.wav") if speech else np.zeros(0, np.float32)
        audio = np.concatenate([first, np.zeros(int(length_s * SAMPLE_RATE), np.float32)])
        self.task = asyncio.create_task(converse(url, audio, hang_up=self.hang_up))
        self.ended_at: float | None = None
        self.task.add_done_callback(lambda _t: setattr(self, "ended_at", time.monotonic()))

    @property
    def run(self):
        return self.task.result()

    @property
    def refused(self) -> bool:
        return self.task.done() and any(e.startswith("busy") for e in self.run.errors)


def outcome(call: Call, since: float) -> dict:
    run = call.run
    return {"replica": session_replica(run), "errors": run.errors, "close": run.close_code,
            "ended_after_drain_start_s": round(call.ended_at - since, 1)}


async def scenario(port: int, drain_s: float, log) -> dict:
    url = f"ws://127.0.0.1:{port}/api/chat"
    out: dict = {}
    # 1. up: K silent calls at once fill the first replica (load K > 0.75 K)
    replica_1 = (await asyncio.to_thread(status, port))["per_replica"][0]["replica"]
    first = [Call(url, f"A{i}") for i in range(K)]
    up_s, st = await wait_for(lambda: (s := status(port))["replicas"] == 2 and s, 180)
    out["up_s"] = round(up_s, 1) if up_s else None
    out["nodes"] = {r["replica"]: r["node"][:8] for r in st["per_replica"]} if st else {}
    log(f"up: a second replica serving {out['up_s']} s after {K} calls filled the first; nodes {out['nodes']}")
    if not st:
        return out
    refused_before = st["refused_busy"]
    # 2. at once: K more calls at the same instant, while the first replica is full
    second = [Call(url, f"B{i}") for i in range(K)]
    _, st = await wait_for(lambda: (s := status(port))["active"] == 2 * K and s, 10)
    st = st or await asyncio.to_thread(status, port)
    out["at_once"] = {"calls": K, "refused_to_client": sum(c.refused for c in second),
                      "busy_answers_routed_again": st["refused_busy"] - refused_before,
                      "active_per_replica": {r["replica"]: r["active"] for r in st["per_replica"]}}
    log(f"at once: {out['at_once']}")
    # 3. down: two calls left on each replica (load 4 < 0.75 K = 4.5: one replica is enough)
    for c in first[2:] + second[2:]:
        c.hang_up.set()
    t_drop = time.monotonic()
    down_s, draining = await wait_for(lambda: stopping(replica_states()), 240)
    out["down_s"] = round(down_s, 1) if down_s else None
    log(f"down: replica {draining} draining {out['down_s']} s after the load fell")
    if not draining:
        return out
    t_drain = time.monotonic()
    drained_first = draining[0] == replica_1
    on_drained, rest = (first[:2], second[:2]) if drained_first else (second[:2], first[:2])
    late = Call(url, "D", speech=True, length_s=6.0)       # arrives during the drain
    await asyncio.sleep(2.0)
    on_drained[0].hang_up.set()                            # hangs up during the drain
    await asyncio.gather(late.task, on_drained[0].task, on_drained[1].task, return_exceptions=True)
    gone_s, _ = await wait_for(lambda: not stopping(replica_states()) and status(port)["replicas"] == 1, 60)
    out["drained_replica"] = draining[0]
    out["late_call"] = {**outcome(late, t_drain), "answered": bool(late.run.agent_text)}
    out["hung_up_in_drain"] = outcome(on_drained[0], t_drain)
    out["outlasted_drain"] = outcome(on_drained[1], t_drain)
    out["stopped_after_drain_start_s"] = round(time.monotonic() - t_drain, 1) if gone_s is not None else None
    out["load_fell_to_drain_s"] = round(t_drain - t_drop, 1)
    for c in rest:
        c.hang_up.set()
    await asyncio.gather(*(c.task for c in first + second), return_exceptions=True)
    out["others"] = [outcome(c, t_drain) for c in rest]
    out["status_after"] = {k: v for k, v in (await asyncio.to_thread(status, port)).items()
                           if k in ("replicas", "served", "refused_busy", "failed", "replicas_lost")}
    for key in ("late_call", "hung_up_in_drain", "outlasted_drain"):
        log(f"{key}: {out[key]}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", default="sequential")
    ap.add_argument("--drain-s", type=float, default=20.0)
    ap.add_argument("--scale-delays", default="2,10")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    ap.add_argument("--server-log", default="/tmp/ray_cluster_server.log", help="the server's output")
    args = ap.parse_args()
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    gcs, port = free_port(), free_port()
    server = None
    try:
        log("starting three Ray nodes (head without CPUs, two workers of 1 CPU) ...")
        start_nodes(gcs)
        server_log = Path(args.server_log)
        with server_log.open("w") as f:
            server = subprocess.Popen(
                [str(Path(sys.executable).parent / "fullduplex"), "serve", "--ray", "--address", f"127.0.0.1:{gcs}",
                 "--port", str(port), "--agent", args.agent, "--autoscale", "1,2", "--sessions-per-replica", str(K),
                 "--drain-s", str(args.drain_s), "--scale-delays", args.scale_delays],
                env=ray_env(), stderr=f, stdout=f, start_new_session=True)
        deadline = time.monotonic() + 300
        while "serving agent" not in server_log.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: see {server_log}")
            time.sleep(1.0)
        log(f"serving (its log: {server_log}); connecting to the cluster for Serve's replica states ...")
        import ray
        ray.init(address=f"127.0.0.1:{gcs}", namespace="fullduplex", logging_level="error", log_to_driver=False)
        result = asyncio.run(scenario(port, args.drain_s, log))
        print(json.dumps(result, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        subprocess.run([RAY, "stop", "--force"], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
