"""A first run that ends honestly: every cause a user can act on ends the real command with one line
and a non-zero exit, never lmms-eval's traceback-and-exit-0; a checkpoint that is not cached while the
hub cannot be used fails at once, naming the model, its argument and the local-folder alternative."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.datafactory import standard_data
from tests.openai_server import OpenAIServer

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(tmp: Path, env_extra: dict, *args: str, tool: str = "lmms-eval") -> tuple[int, str, str]:
    """Run a real command in ``tmp`` with a clean key environment; (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "GEMINI", "HF_"))}
    env.update({"HF_HOME": str(tmp / "hf"), "AUTORATER_CACHE_DIR": str(tmp / "cache"), **env_extra})
    proc = subprocess.run(
        [str(BIN / tool), *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout, proc.stderr


def _the_line(rc: int, out: str, err: str) -> str:
    """The one error line of a failed run: exit 1, no traceback anywhere, the line last on stderr."""
    assert rc == 1, (rc, err[-2000:])
    assert "Traceback" not in out + err, (out + err)[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(("lmms-eval-autorater: error: ", "lmms-eval-autorater score: error: ")), line
    assert not line.rstrip().endswith(":"), line
    return line


def test_the_readme_command_without_a_key_names_the_variable(tmp_path):
    # the README's first command as a new user types it: no key, no data folder, no network
    rc, out, err = _run(
        tmp_path,
        {"HF_HUB_OFFLINE": "1"},
        "--model", "autorater_gpt4o", "--tasks", "imagereward_pair", "--limit", "50",
        "--output_path", "results", "--log_samples",
    )  # fmt: skip
    line = _the_line(rc, out, err)
    assert "OPENAI_API_KEY" in line
    assert not list((tmp_path / "results").rglob("*_results.json"))


def test_missing_data_bad_argument_and_damaged_cache_each_end_in_one_line(tmp_path):
    with OpenAIServer() as server:
        base = ["--model", "autorater_openai", "--tasks", "psr", "--output_path", "results"]
        args = f"base_url={server.url},model=judge"
        empty = tmp_path / "empty"
        empty.mkdir()
        # missing data: the line names the missing file and where the layout is documented
        rc, out, err = _run(tmp_path, {"AUTORATER_DATA_DIR": str(empty)}, *base, "--model_args", args)
        line = _the_line(rc, out, err)
        assert str(empty / "psr") in line and "README.md" in line
        data = standard_data(tmp_path / "data")
        env = {"AUTORATER_DATA_DIR": str(data)}
        # a bad model argument: named, before anything is sent
        rc, out, err = _run(tmp_path, env, *base, "--model_args", f"{args},tools=XY")
        assert "XY" in _the_line(rc, out, err)
        # a damaged cache file: named with the remedy
        cache = tmp_path / "damaged"
        cache.mkdir()
        (cache / "responses.sqlite").write_bytes(b"this is not a database" * 100)
        rc, out, err = _run(tmp_path, env, *base, "--model_args", f"{args},cache_dir={cache}")
        assert str(cache / "responses.sqlite") in _the_line(rc, out, err)
        assert server.request_count == 0


def test_an_uncached_specialist_fails_at_once_without_network(tmp_path):
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "a.png")
    (tmp_path / "gens.jsonl").write_text(
        json.dumps({"id": "1", "prompt": "a red square", "image": "a.png"}) + "\n"
    )
    port = _closed_port()
    with OpenAIServer() as server:
        start = time.monotonic()
        rc, out, err = _run(
            tmp_path,
            {"HF_ENDPOINT": f"http://127.0.0.1:{port}"},  # the hub refuses every connection
            "score", "--input", "gens.jsonl", "--model", "autorater_openai",
            "--model_args", f"base_url={server.url},model=judge,tools=GD", "--output", "scores.jsonl",
            tool="lmms-eval-autorater",
        )  # fmt: skip
        took = time.monotonic() - start
    line = _the_line(rc, out, err)
    assert "specialist GD" in line and "gd_model='IDEA-Research/grounding-dino" in line, line
    assert f"unreachable (127.0.0.1:{port}" in line and "pass gd_model=<that folder>" in line, line
    assert took < 120, took  # the hub client's retries alone took 147 s before


@pytest.mark.parametrize(
    ("model", "arg"),
    [
        ("hpsv3", "checkpoint='MizzenAI/HPSv3'"),
        ("qsit", "pretrained="),
        ("autorater_internvl", "pretrained="),
    ],
)
def test_offline_checkpoints_name_their_argument(tmp_path, model, arg):
    data = standard_data(tmp_path / "data")
    rc, out, err = _run(
        tmp_path,
        {"AUTORATER_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"},
        "--model", model, "--tasks", "imagereward_point", "--output_path", "results",
    )  # fmt: skip
    line = _the_line(rc, out, err)
    assert arg in line and "offline (HF_HUB_OFFLINE is set)" in line and "<that folder>" in line, line
