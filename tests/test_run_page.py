"""The run report page: its data from a written run, and the page itself in a real headless chromium (CDP)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from lmms_eval_autorater.cli import main
from lmms_eval_autorater.judges.types import Verdict
from lmms_eval_autorater.reports import run_page
from tests.runfiles import write_run

CHROMIUM = "/usr/bin/chromium"
SPECIALIST = {"code": "GD", "value": 2.0, "text": "2 objects found", "version": "t", "candidate": 1}


def judge(task, i, doc):
    """Pairs: every third wrong; GD evidence on even docs; doc 1 of each task a failure of its own kind."""
    meta = {"model": "judge-1-2024-08-06", "fingerprint": "fp", "tools": [], "assessments": []}
    if i % 2 == 0:
        meta.update(
            tools=["GD"],
            assessments=[SPECIALIST, dict(SPECIALIST, candidate=2, value=0.0, text="none")],
            auto_analysis="counting matters here",
        )
    if i == 1:
        if doc["paradigm"] == "pairwise":
            return Verdict(
                "parse_failure", raw="I cannot decide </script><b>", error="no preference", meta=meta
            )
        return Verdict("api_error", error="HTTP 503 after the retry budget", meta=meta)
    if doc["paradigm"] == "pairwise":
        pref = doc["label"] if i % 3 else 3 - doc["label"]
        return Verdict(
            "ok", analysis=f"analysis of {doc['doc_id']}", preferred=pref, raw='{"preferred": 0}', meta=meta
        )
    score = 11 - int(doc["target"]) if task == "aigiqa" else int(doc["target"])  # aigiqa: reversed, far off
    return Verdict("ok", analysis="pointwise analysis", score=max(1, min(10, score)), raw="{}", meta=meta)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A written run over the four small tasks and its ``reports.runs.Run``."""
    from lmms_eval_autorater.reports.runs import load_runs

    _, docs = data
    out = tmp_path_factory.mktemp("run")
    write_run(out, docs, judge)
    (r,) = load_runs([out])
    return out, docs, r


def _expected(docs):
    """What the filters must show: every doc, the failures (doc 1 of each task), the docs with GD (even ones)."""
    n = sum(len(v) for v in docs.values())
    failures = sum(1 for v in docs.values() if len(v) > 1)
    gd = sum((len(v) + 1) // 2 for v in docs.values())
    return n, failures, gd


def test_page_data_matches_the_run(run):
    out, docs, r = run
    data = run_page.page_data(r, thumb=24)
    n, failures, gd = _expected(docs)
    assert len(data["docs"]) == n
    assert sum(d["status"] != "ok" for d in data["docs"]) == failures
    assert sum(any(s["code"] == "GD" for s in d["specialists"]) for d in data["docs"]) == gd
    psr = [d for d in data["docs"] if d["task"] == "psr"]
    assert psr[0]["request"] == docs["psr"][0]["request"] and set(psr[0]["images"]) == {
        "source_image",
        "image_1",
        "image_2",
    }
    # pairs: wrong exactly where the judge chose the other image; aigiqa's reversed scores are far off
    pair = [d for d in data["docs"] if d["task"] == "imagereward_pair"]
    assert [d["wrong"] for d in pair] == [d["status"] == "ok" and i % 3 == 0 for i, d in enumerate(pair)]
    assert any(d["wrong"] for d in data["docs"] if d["task"] == "aigiqa")
    summary = {t["task"]: t for t in data["tasks"]}
    assert (
        summary["psr"]["counts"]["parse_failures"] == 1 and summary["aigiqa"]["counts"]["api_failures"] == 1
    )
    assert summary["psr"]["value"] == r.tasks["psr"].metrics["accuracy"]
    # every image once, as a downscaled JPEG data URL
    from PIL import Image

    url = data["images"][psr[0]["images"]["image_1"]]
    assert url.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as img:
        assert max(img.size) <= 24
    refs = [i for d in data["docs"] for i in d["images"].values()]
    assert len(data["images"]) == len(set(refs))


class Chromium:
    """Debian's chromium, headless, driven over the DevTools protocol (one page target)."""

    def __init__(self, tmp: Path):
        self.profile = tmp / "profile"
        self.log = (tmp / "chromium.log").open("w")
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                "--window-size=1280,1400",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                pytest.fail(f"chromium did not start: {(tmp / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
        page = next(t for t in targets if t["type"] == "page")
        from websockets.sync.client import connect

        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.next_id = 0
        self.events: list[dict] = []
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]
            self.events.append(msg)

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", url=path.resolve().as_uri())
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(json.loads(self.ws.recv(timeout=60)))

    def value(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def errors(self) -> list[dict]:
        bad = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                bad.append(p)
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                bad.append(p)
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                bad.append(p)
        return bad

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)):
        pytest.skip(f"{CHROMIUM} is absent (Debian's chromium package): the page is not opened in a browser")
    pytest.importorskip("websockets", reason="the DevTools client needs the websockets package")
    browser = Chromium(tmp_path_factory.mktemp("chromium"))
    yield browser
    browser.close()


def _count(browser) -> int:
    return int(browser.value("document.getElementById('count').dataset.matching"))


def _cards(browser) -> int:
    return browser.value("document.querySelectorAll('#docs article.doc').length")


def test_report_page_in_chromium(run, chromium, tmp_path):
    out, docs, r = run
    page = tmp_path / "report.html"
    assert main(["report", "--results", str(out), "--output", str(page), "--thumb-size", "64"]) == 0
    text = page.read_text()
    assert "</script><b>" not in text.split('id="run-data"', 1)[1].split("</script>", 1)[0]
    assert not re.search(r"(src|href)=\"https?:", text)  # nothing is loaded from the network

    chromium.open(page)
    assert chromium.errors() == []
    n, failures, gd = _expected(docs)
    assert _count(chromium) == n and _cards(chromium) == n
    assert chromium.value("document.querySelectorAll('#docs .selection').length") == gd
    assert chromium.value("document.querySelectorAll('#docs tr[data-code=GD]').length") == 2 * gd
    assert chromium.value("document.querySelectorAll('#docs img').length") > 0
    assert chromium.value("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert chromium.value("document.querySelector('#summary tr[data-task=psr]').textContent").startswith(
        "psr"
    )
    chromium.screenshot(tmp_path / "report.png")  # kept under the test's temp folder (CI artifact)

    wrong = sum(1 for d in run_page.page_data(r, images=False)["docs"] if d["wrong"])
    chromium.value("document.getElementById('f-wrong').click()")
    assert _count(chromium) == _cards(chromium) == wrong < n
    chromium.value("document.getElementById('f-wrong').click()")
    chromium.value("document.getElementById('f-failures').click()")
    assert _count(chromium) == failures
    assert chromium.value(
        "[...document.querySelectorAll('#docs article')].every(a => a.dataset.status !== 'ok')"
    )
    chromium.value("document.getElementById('f-failures').click()")
    chromium.value(
        "(s => { s.value = 'GD'; s.dispatchEvent(new Event('change')); })(document.getElementById('f-specialist'))"
    )
    assert _count(chromium) == gd
    chromium.value(
        "(s => { s.value = 'psr'; s.dispatchEvent(new Event('change')); })(document.getElementById('f-task'))"
    )
    assert _count(chromium) == (len(docs["psr"]) + 1) // 2
    # the raw answer is one click away, shown as text (the markup in it is not parsed)
    chromium.value(
        "(s => { s.value = ''; s.dispatchEvent(new Event('change')); })(document.getElementById('f-specialist'))"
    )
    chromium.value("document.querySelector('#docs article[data-status=parse_failure] summary').click()")
    assert chromium.value("document.querySelector('#docs article[data-status=parse_failure] details').open")
    assert chromium.value(
        "document.querySelector('#docs article[data-status=parse_failure] pre.raw').textContent"
    ) == ("I cannot decide </script><b>")
    q = docs["psr"][0]["request"]
    chromium.value(
        f"(s => {{ s.value = {json.dumps(q)}; s.dispatchEvent(new Event('input')); }})"
        "(document.getElementById('f-prompt'))"
    )
    assert _count(chromium) == sum(d["request"] == q for d in docs["psr"])
    assert chromium.errors() == []


def test_large_page_paginates(chromium, tmp_path):
    """3,000 docs: 50 cards in the DOM at a time; next shows the next 50; loads in well under a few seconds."""
    records = [
        {
            "doc_id": f"d{i}",
            "group": f"g{i // 4}",
            "label": 1 + i % 2,
            "pred": 1,
            "status": "ok",
            "request": f"p {i}",
        }
        for i in range(3000)
    ]
    docs = run_page.page_docs("imagereward_pair", "pairwise", records, {})
    data = {
        "run": {"model": "m", "model_args": {}, "date": "d", "results_file": "r", "versions": {}},
        "tasks": [
            {
                "task": "imagereward_pair",
                "paradigm": "pairwise",
                "metric": "accuracy",
                "value": 0.5,
                "ci_low": 0.48,
                "ci_high": 0.52,
                "n_docs": 3000,
                "counts": {"n_scored": 3000},
                "conventions": "",
            }
        ],
        "docs": docs,
        "images": [],
        "far_off": run_page.FAR_OFF,
    }
    page = tmp_path / "big.html"
    page.write_text(run_page.render(data))
    start = time.monotonic()
    chromium.open(page)
    elapsed = time.monotonic() - start
    assert chromium.errors() == []
    assert _count(chromium) == 3000 and _cards(chromium) == 50
    assert chromium.value("document.querySelector('#docs article').dataset.id") == "d0"
    chromium.value("document.getElementById('next').click()")
    assert chromium.value("document.querySelector('#docs article').dataset.id") == "d50"
    assert "51–100 of 3000" in chromium.value("document.getElementById('count').textContent")
    chromium.value("document.getElementById('f-wrong').click()")
    assert _count(chromium) == 1500 and _cards(chromium) == 50
    assert elapsed < 10, elapsed
