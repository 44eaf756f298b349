"""Benchmark scenarios in Full-Duplex-Bench v1's folder layout, loaded strictly.

A scenario is a folder holding ``input.wav`` (the user's channel) and one annotation file that says
which behaviour it tests and where the event is on the input's timeline:

- ``pause.json``       a pause inside the user's turn (the agent should stay quiet);
- ``turn_taking.json`` where the user's turn ends (the agent should take the turn, quickly);
- ``interrupt.json``   where the user interrupts the agent (items carry "context" and "interrupt", the
  user's words before and during the interruption, instead of "text");
- ``backchannel.json`` (ours) the real listener's backchannels ``[{"text": "[BACKCHANNEL]",
  "timestamp": [s, e]}]``; empty for a monologue with no listener.
- ``overlap_interrupt.json``, ``overlap_backchannel.json``, ``overlap_side_talk.json``,
  ``overlap_background.json`` (FDB v1.5's four behaviours, ours in this layout): the user's turn, room
  for the agent's answer, then something overlapping that answer. Exactly one item: ``"timestamp"`` the
  overlap's speech, ``"text"`` its words (or ``[BACKCHANNEL]``/``[BACKGROUND]`` where not transcribed),
  ``"turn"`` ``[start, end]`` the user's turn before it (it ends before the overlap starts) and
  optional ``"context"`` (the turn's words) and ``"level_db"`` (background: dB below the user).

Each file is a JSON list of ``{"text": ..., "timestamp": [start, end]}``. FDB's own backchannel
scenarios (``icc_backchannel/{ID}/``) carry no annotation at all: a folder with only ``input.wav``
under a folder whose name contains "backchannel" is one, and its numeric folder name is the key of its
human timing histogram in FDB's ``icc_gt_distribution.json``.

Other files in a folder (FDB's ``transcription.json``, a model's ``output.wav``/``output.json``, …)
are ignored, except an optional ``meta.json`` ``{"source": "real" | "synthetic" | "fdb", "recordings":
[names], ...}`` (``recordings``: the recording(s) a real scenario was cut from, for scoring a model only
on recordings it was not fitted on).

``load_suite`` never stops at a bad folder: each one becomes a ``ScenarioError`` that names the file
and what is wrong, and the rest of the suite still runs.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from ..errors import UserError

KINDS = ("pause", "turn_taking", "interrupt", "backchannel")   # FDB v1's four
# FDB v1.5's four: something overlaps the agent's answer (``overlap.py`` scores them).
OVERLAP_KINDS = ("overlap_interrupt", "overlap_backchannel", "overlap_side_talk", "overlap_background")
ALL_KINDS = KINDS + OVERLAP_KINDS
ANNOTATION_FILES = {f"{kind}.json": kind for kind in ALL_KINDS}
SOURCES = ("real", "synthetic", "fdb")
INPUT = "input.wav"
META = "meta.json"


@dataclass
class Scenario:
    id: str                      # path relative to the suite root, '/'-separated
    kind: str                    # one of ALL_KINDS
    dir: Path
    input_path: Path
    annotation: list[dict] = field(default_factory=list)
    icc_key: str | None = None   # FDB backchannel id: key of its human histogram in icc_gt_distribution.json
    source: str = "fdb"          # "real" | "synthetic" | "fdb" (meta.json; FDB's own data by default)
    recordings: tuple[str, ...] = ()   # source recording names (meta.json), empty when not given

    @property
    def span(self) -> tuple[float, float] | None:
        """The annotated event ``(start, end)`` — FDB reads only the first item — or None."""
        if not self.annotation:
            return None
        start, end = self.annotation[0]["timestamp"]
        return float(start), float(end)


@dataclass
class ScenarioError:
    dir: Path
    message: str

    def __str__(self) -> str:
        return self.message


class _Invalid(Exception):
    """One problem with one scenario folder; becomes a ScenarioError."""


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _read_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _Invalid(f"{path}: not UTF-8 text; save it as UTF-8 JSON") from None
    except OSError as e:
        raise _Invalid(f"{path}: cannot read it ({e.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _Invalid(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def _check_annotation(path: Path, kind: str, data) -> list[dict]:
    shape = 'a JSON list of {"text": ..., "timestamp": [start, end]}'
    if not isinstance(data, list):
        raise _Invalid(f"{path}: must be {shape}, not a JSON {type(data).__name__}")
    # FDB's scripts read item 0 of these; an empty list is only meaningful for backchannels
    # (a monologue: the speaker had no listener).
    if not data and kind != "backchannel":
        raise _Invalid(f"{path}: is an empty list; it needs at least one {shape}")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise _Invalid(f"{path}: item {i} must be an object like " + '{"text": ..., "timestamp": [start, end]}')
        ts = item.get("timestamp")
        ok = (isinstance(ts, (list, tuple)) and len(ts) == 2 and all(_is_number(t) for t in ts)
              and 0 <= ts[0] <= ts[1])
        if not ok:
            raise _Invalid(f"{path}: each item needs a 'timestamp' [start, end] of seconds with "
                           f"0 <= start <= end (item {i} has {ts!r})")
        # FDB's interrupt.json items carry "context" and "interrupt" (its scripts read them) but no "text".
        required = ("context", "interrupt") if kind == "interrupt" else ("text",)
        for key in required:
            if not isinstance(item.get(key), str):
                raise _Invalid(f"{path}: each item needs a '{key}' string (item {i} has {item.get(key)!r})")
    if kind in OVERLAP_KINDS:
        _check_overlap(path, data)
    return data


def _check_overlap(path: Path, data: list) -> None:
    """An overlap annotation: one item, whose "turn" [start, end] ends before the overlap starts."""
    if len(data) != 1:
        raise _Invalid(f"{path}: an overlap scenario has exactly one item (the overlap), not {len(data)}")
    item = data[0]
    turn = item.get("turn")
    if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(_is_number(t) for t in turn)
            and 0 <= turn[0] <= turn[1] <= item["timestamp"][0]):
        raise _Invalid(f"{path}: the item needs a 'turn' [start, end] of seconds: the user's turn, ending "
                       f"before the overlap starts at {item['timestamp'][0]} (it has {turn!r})")
    for key in ("context",):
        if key in item and item[key] is not None and not isinstance(item[key], str):
            raise _Invalid(f"{path}: '{key}' must be a string or null, not {item[key]!r}")
    if "level_db" in item and not _is_number(item["level_db"]):
        raise _Invalid(f"{path}: 'level_db' must be a number of dB, not {item['level_db']!r}")


def _check_input(path: Path) -> None:
    if not path.is_file():
        raise _Invalid(f"{path}: missing; every scenario folder needs the user's audio as input.wav")
    if path.stat().st_size == 0:
        raise _Invalid(f"{path}: is empty (0 bytes); give the user's recording")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise _Invalid(f"{path}: not a readable audio file ({e})") from None
    if info.frames == 0:
        raise _Invalid(f"{path}: holds no audio samples")


def _meta(folder: Path) -> tuple[str, tuple[str, ...]]:
    """(source, recordings) from meta.json; ("fdb", ()) without one."""
    path = folder / META
    if not path.exists():
        return "fdb", ()
    meta = _read_json(path)
    if not isinstance(meta, dict):
        raise _Invalid(f'{path}: must be a JSON object like {{"source": "real"}}')
    source = meta.get("source", "fdb")
    if source not in SOURCES:
        raise _Invalid(f"{path}: 'source' must be one of {', '.join(SOURCES)}, not {source!r}")
    recordings = meta.get("recordings", [])
    if not (isinstance(recordings, list) and all(isinstance(r, str) for r in recordings)):
        raise _Invalid(f"{path}: 'recordings' must be a list of recording names, not {recordings!r}")
    return source, tuple(recordings)


def _load_one(root: Path, folder: Path) -> Scenario:
    rel = folder.relative_to(root)
    sid = root.name if rel == Path(".") else rel.as_posix()
    present = sorted(name for name in ANNOTATION_FILES if (folder / name).is_file())
    if len(present) > 1:
        raise _Invalid(f"{folder}: holds {' and '.join(present)}; a scenario has exactly one annotation file")
    _check_input(folder / INPUT)
    source, recordings = _meta(folder)
    if not present:
        # FDB's ICC backchannel folders: input.wav only, under e.g. icc_backchannel/.
        names = [root.name, *rel.parts]
        if not any("backchannel" in n.lower() for n in names):
            raise _Invalid(f"{folder}: no annotation file; add one of {', '.join(ANNOTATION_FILES)}")
        return Scenario(sid, "backchannel", folder, folder / INPUT, [],
                        icc_key=folder.name if folder.name.isdigit() else None, source=source, recordings=recordings)
    name = present[0]
    kind = ANNOTATION_FILES[name]
    annotation = _check_annotation(folder / name, kind, _read_json(folder / name))
    return Scenario(sid, kind, folder, folder / INPUT, annotation, icc_key=None, source=source,
                    recordings=recordings)


def _candidate_folders(root: Path) -> list[Path]:
    """Every folder holding input.wav or an annotation file (one without the other is an error)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if INPUT in filenames or any(name in filenames for name in ANNOTATION_FILES):
            found.append(Path(dirpath))
    return sorted(found)


def load_suite(root: str | os.PathLike) -> tuple[list[Scenario], list[ScenarioError]]:
    """All scenarios under ``root`` (sorted by id), and one error per folder that is not usable."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: no such folder; give a folder of scenarios (each with input.wav)")
    if not root.is_dir():
        raise UserError(f"{root} is a file; give a folder of scenarios (each with input.wav)")
    folders = _candidate_folders(root)
    if not folders:
        raise UserError(f"{root} holds no scenario: no folder in it has an input.wav and an annotation file")
    scenarios, errors = [], []
    for folder in folders:
        try:
            scenarios.append(_load_one(root, folder))
        except _Invalid as e:
            errors.append(ScenarioError(folder, str(e)))
    return scenarios, errors
