"""Build the dev suite: Full-Duplex-Bench v1 scenarios cut from real recordings, plus synthetic ones.

``build_suite(out_dir)`` writes ``<out>/<source>/<kind>/<name>/`` folders (source: real | synthetic;
kind: pause | turn_taking | interrupt | backchannel, and FDB v1.5's overlap_interrupt |
overlap_backchannel | overlap_side_talk | overlap_background from ``suite_overlap``), each holding ``input.wav`` (16 kHz mono PCM16,
the user's channel), exactly one annotation file in FDB's layout (see ``scenarios.py``) and
``meta.json`` (``source``, ``origin``, ``licence``). The real scenarios come from ``suite_real``
(the shared data's labelled recordings), the synthetic ones from ``suite_synthetic`` (Piper).

The build is deterministic: the same data and seed give byte-identical files. Each scenario is
written into a hidden temporary folder and renamed into place, so an interrupted build never leaves
half a scenario (the loader skips dot-folders; the next build removes them). Scenario folders this
builder wrote before and did not write again (a changed seed, fewer kinds) are removed at the end, so
the suite on disk is exactly what the summary says.

Full-Duplex-Bench's own files (CC BY-NC 4.0) are never read into, or copied to, the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf

from ..audio.frames import SAMPLE_RATE
from ..errors import UserError
from .draft import Draft
from .scenarios import ALL_KINDS, ANNOTATION_FILES, INPUT, KINDS, META, OVERLAP_KINDS

SOURCES = ("real", "synthetic")
BUILDER = "fullduplex.bench.suite"  # meta.json mark: folders with it are ours to replace or prune
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data beside the repo

# Licence texts shipped in the data's licenses/ folder, by the origin that needs them. AMI (CC BY 4.0)
# and LJ Speech (public domain) have no text there: LICENCES.md attributes them.
LICENCE_FILES = {
    "pyannote": "pyannote-audio.MIT.txt",
    "jfk": "openai-whisper.MIT.txt",
    "lhotse": "lhotse.Apache-2.0.txt",
    "amazon-transcribe": "amazon-transcribe-live-call-analytics.Apache-2.0.txt",
}
NON_COMMERCIAL = "Full-Duplex-Bench"  # CC BY-NC: evaluation only, never inside the suite we build

LICENCES_MD = """# Licences of this suite's audio

| scenarios | audio from | licence |
|---|---|---|
| `real/*/pyannote-sample-*` | the 2-speaker telephone sample shipped in pyannote-audio (original corpus not stated) | MIT (`pyannote-audio.MIT.txt`) |
| `real/*/ami-es2003*` | AMI Meeting Corpus ES2003a/b, first 30 s of the mix | CC BY 4.0 (AMI Consortium, https://groups.inf.ed.ac.uk/ami/corpus/) |
| `real/*/ami-pyannote-*` | AMI Meeting Corpus excerpts (30 s each) from pyannote-audio's test data | CC BY 4.0 (AMI); pyannote-audio MIT (`pyannote-audio.MIT.txt`) |
| `real/*/phone-auto-repairs-49-*` | a role-played car-repair phone call from aws-samples/amazon-transcribe-live-call-analytics (8 kHz, both sides mixed) | Apache-2.0 (`amazon-transcribe-live-call-analytics.Apache-2.0.txt`) |
| `real/*/ami-es2011a-*` | AMI Meeting Corpus ES2011a headset, 40-46 s, via lhotse's test fixtures | CC BY 4.0 (AMI); lhotse Apache-2.0 (`lhotse.Apache-2.0.txt`) |
| `real/*/librispeech-*` | LibriSpeech 2412-153948-0000, via lhotse's test fixtures | CC BY 4.0 (LibriSpeech, Panayotov et al.); lhotse Apache-2.0 |
| `real/*/ljspeech-*` | LJ Speech LJ002-0020 / LJ002-0035, via lhotse's test fixtures | public domain (LJ Speech); lhotse Apache-2.0 |
| `real/*/jfk-*` | J. F. Kennedy's inaugural address (1961), as in openai-whisper's tests | public domain; openai-whisper MIT (`openai-whisper.MIT.txt`) |
| `synthetic/*` | speech synthesised by Piper with the en_US-joe-medium voice from scripts in `fullduplex.bench.suite_synthetic` | voice: MIT package, CC0 dataset; Piper's runtime (GPL-3.0) does not license its output |

`real/overlap_background/*` mix two of the recordings above (the user's, and a speaker of another one
band-limited to 300-3400 Hz and 10-20 dB below the user): both licences apply, `meta.json` names both.

The real scenarios are edited cuts (other speakers' audio replaced by silence, utterances spliced);
`meta.json` in each folder names the file and time span it came from. Full-Duplex-Bench's own
example data (CC BY-NC 4.0) is not part of this suite.
"""


@dataclass
class SuiteSummary:
    root: Path
    counts: dict[str, dict[str, int]]           # source -> kind -> scenarios written
    scenarios: list[str] = field(default_factory=list)  # ids ("real/pause/jfk-002.24"), sorted
    skipped: list[str] = field(default_factory=list)    # real candidates left out, and why
    seconds: float = 0.0

    def total(self, source: str | None = None) -> int:
        return sum(n for src, kinds in self.counts.items() if source in (None, src) for n in kinds.values())

    def __str__(self) -> str:
        built = {k for kinds in self.counts.values() for k in kinds}
        shown = [k for k in KINDS if k in built or not built & set(OVERLAP_KINDS)]
        shown += [k for k in OVERLAP_KINDS if k in built]
        width = {k: max(13, len(k) + 2) for k in shown}
        head = f"{'':10s}" + "".join(f"{k:>{width[k]}s}" for k in shown) + f"{'total':>8s}"
        rows = [head]
        for src in SOURCES:
            if src in self.counts:
                rows.append(f"{src:10s}" + "".join(f"{self.counts[src].get(k, 0):{width[k]}d}" for k in shown)
                            + f"{self.total(src):8d}")
        rows.append(f"wrote {self.total()} scenarios to {self.root} in {self.seconds:.1f} s")
        if self.skipped:
            rows.append(f"left out {len(self.skipped)} real candidates:")
            rows += [f"  {line}" for line in self.skipped]
        return "\n".join(rows)


# -- the build -----------------------------------------------------------------------------------

def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    path = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    if not ((path / "conversations").is_dir() and (path / "asr").is_dir()):
        raise UserError(f"{path}: not the shared evaluation data (no conversations/ and asr/ in it); "
                        f"pass --data with the folder that holds them")
    return path


def build_suite(out_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None, seed: int = 0,
                synthetic: bool = True, progress: Callable[[str], None] | None = None, *,
                kinds: Iterable[str] = ALL_KINDS, limit: int | None = None) -> SuiteSummary:
    """Build the dev suite into ``out_dir``; returns what was written, per source and kind.

    ``data_dir`` defaults to ../shared/data beside the repo. ``seed`` drives the synthetic part (the
    real part has no randomness). ``kinds`` and ``limit`` (at most this many scenarios per source and
    kind, the first in the builder's fixed order) make small suites for quick runs and tests.
    """
    started = time.monotonic()
    data = resolve_data_dir(data_dir)
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown:
        raise UserError(f"unknown scenario kind(s) {', '.join(unknown)}; choose from {', '.join(ALL_KINDS)}")
    say = progress or (lambda msg: None)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)

    # Imported here: the synthetic builder needs Piper, which a real-only build must not require.
    from . import suite_real
    skipped: list[str] = []
    sources = {"real": lambda: suite_real.real_drafts(data, kinds, skipped)}
    if synthetic:
        from . import suite_synthetic
        sources["synthetic"] = lambda: suite_synthetic.synthetic_drafts(seed, kinds, limit, say)

    counts: dict[str, dict[str, int]] = {}
    written: list[str] = []
    for source, make in sources.items():
        counts[source] = {k: 0 for k in kinds}
        for draft in make():
            if limit is not None and counts[source][draft.kind] >= limit:
                continue
            sid = write_scenario(root, draft)
            counts[source][draft.kind] += 1
            written.append(sid)
            say(f"wrote {sid}")
        _prune(root, source, set(written))
    write_licences(root, data, sources=counts)
    return SuiteSummary(root, counts, sorted(written), skipped, time.monotonic() - started)


def write_scenario(root: Path, draft: Draft) -> str:
    """Write one scenario folder atomically (temp folder, then rename); returns its id."""
    if draft.kind not in ALL_KINDS:
        raise ValueError(f"unknown kind {draft.kind!r}")
    rel = Path(draft.source) / draft.kind / draft.name
    final = root / rel
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{draft.name}.", suffix=".part", dir=final.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the suite is ordinary data
        sf.write(str(tmp / INPUT), np.clip(draft.audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
        annotation_name = next(name for name, kind in ANNOTATION_FILES.items() if kind == draft.kind)
        (tmp / annotation_name).write_text(json.dumps(draft.annotation, indent=2) + "\n", encoding="utf-8")
        meta = {**draft.meta, "builder": BUILDER}
        (tmp / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{draft.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / "x")
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return rel.as_posix()


def _is_ours(folder: Path) -> bool:
    try:
        return json.loads((folder / META).read_text(encoding="utf-8")).get("builder") == BUILDER
    except (OSError, ValueError, AttributeError):
        return False


def _prune(root: Path, source: str, keep: set[str]) -> None:
    """Remove this builder's leftovers under <root>/<source>: temp folders of an interrupted build and
    scenarios not written this time. Folders it did not write are left alone."""
    for kind_dir in sorted((root / source).glob("*")):
        if not kind_dir.is_dir():
            continue
        for folder in sorted(kind_dir.iterdir()):
            if not folder.is_dir():
                continue
            leftover = folder.name.startswith(".") and folder.name.endswith((".part", ".old"))
            stale = (not folder.name.startswith(".") and folder.relative_to(root).as_posix() not in keep
                     and _is_ours(folder))
            if leftover or stale:
                shutil.rmtree(folder)


def write_licences(root: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                   sources: Iterable[str] = SOURCES) -> list[Path]:
    """Copy the licence texts the suite's audio needs from the data's licenses/ folder, and write
    LICENCES.md (which scenario comes from where, under which licence). Never the CC BY-NC ones."""
    root, data = Path(root), resolve_data_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    if "real" in sources:
        for name in sorted(set(LICENCE_FILES.values())):
            src = data / "licenses" / name
            if src.is_file() and not name.startswith(NON_COMMERCIAL):
                dst = root / "licenses" / name
                dst.parent.mkdir(exist_ok=True)
                shutil.copyfile(src, dst)
                written.append(dst)
    md = root / "LICENCES.md"
    md.write_text(LICENCES_MD, encoding="utf-8")
    return [*written, md]
