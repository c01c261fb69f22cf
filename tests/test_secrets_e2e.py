"""No credential reaches a shared file: a planted API key and URL credentials, through every real writer.

A run through the real lmms-eval CLI with the key in the environment, then every command that writes
something a person shares (submission and its model-index, validate, leaderboard, report, table, score
and arena): no file under the run's folders, the cache folder included, holds the key. A ``base_url``
with ``user:password@`` is refused at start with one line that does not echo the password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.clitools import TruthResponder, run_cli
from tests.openai_server import OpenAIServer

pytestmark = pytest.mark.slow
KEY = "sk-PLANTED-7f3a9c1e5b"
PASSWORD = "pa55-PLANTED-word"
BIN = Path(sys.executable).parent


def _cmd(tmp: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "GEMINI"))} | env
    return subprocess.run(
        [str(BIN / "lmms-eval-autorater"), *args],
        cwd=tmp,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _files_holding(root: Path, needle: str) -> list[str]:
    data = needle.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


def test_a_planted_key_and_url_credentials_appear_in_no_file_or_message(tmp_path, data):
    root, docs = data
    tasks = ("psr", "imagereward_pair")
    env = {
        "AUTORATER_DATA_DIR": str(root),
        "AUTORATER_CACHE_DIR": str(tmp_path / "cache"),
        "OPENAI_API_KEY": KEY,
    }
    with OpenAIServer(TruthResponder({t: docs[t] for t in tasks}), require_key=KEY) as server:
        results, log = run_cli(
            tmp_path, env, "--model", "autorater_openai", "--model_args",
            f"base_url={server.url},model=judge-1", "--tasks", ",".join(tasks),
        )  # fmt: skip
        assert results is not None, log[-3000:]
        assert KEY not in log
        run_dir = tmp_path / "out0"
        results_file = next(run_dir.rglob("*_results.json"))
        outputs = [
            ("submission", "--results", str(run_dir), "--output", "sub.json", "--name", "planted"),
            ("validate", "sub.json"),
            ("leaderboard", "sub.json", "--output", "board"),
            ("report", "--results", str(run_dir), "--output", "report.html"),
            ("table", "--results", str(run_dir), "--output", "table2", "--row", f"GPT-4o={results_file}"),
        ]
        for args in outputs:
            proc = _cmd(tmp_path, env, *args)
            assert proc.returncode in (0, 3), (
                args,
                proc.stderr[-2000:],
            )  # validate: 3 = checked without data
            assert KEY not in proc.stdout + proc.stderr
        # score and arena on a user's generations, CSV included
        for i in range(2):
            Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(tmp_path / f"g{i}.png")
        gens = [{"id": str(i), "prompt": "a blue square", "image": f"g{i}.png"} for i in range(2)]
        (tmp_path / "gens.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gens))
        args = f"base_url={server.url},model=judge-1"
        for cmd in (
            ("score", "--input", "gens.jsonl", "--model", "autorater_openai", "--model_args", args, "--output", "s.csv"),
            ("arena", "--input", "gens.jsonl", "--input", "gens.jsonl", "--model", "autorater_openai",
             "--model_args", args, "--output", "arena"),
        ):  # fmt: skip
            proc = _cmd(tmp_path, env, *cmd)
            assert KEY not in proc.stdout + proc.stderr
        assert _files_holding(tmp_path, KEY) == []
        # credentials in the URL: refused at start, one line, the password echoed nowhere
        host = server.url.split("//", 1)[1]
        proc = _cmd(
            tmp_path, env, "score", "--input", "gens.jsonl", "--model", "autorater_openai",
            "--model_args", f"base_url=http://user:{PASSWORD}@{host},model=judge-1", "--output", "x.csv",
        )  # fmt: skip
        assert proc.returncode == 1
        [line] = proc.stderr.strip().splitlines()[-1:]
        assert "base_url" in line and "api_key_env=" in line, line
        assert PASSWORD not in proc.stdout + proc.stderr
        assert not (tmp_path / "x.csv").exists()
        assert _files_holding(tmp_path, PASSWORD) == []
