"""The judge pipeline through the real ``openai`` client and the local server: tools (none / fixed /
all / auto) with assessments fed through the specialist interface, swap, and failure accounting."""

from __future__ import annotations

import json

import pytest

from lmms_eval_autorater.judges.backends.openai_api import OpenAIChatBackend
from lmms_eval_autorater.judges.cache import ResponseCache
from lmms_eval_autorater.judges.judge import Judge, combine_swap, swap_request
from lmms_eval_autorater.judges.pipeline import ApiCompleter, SpecialistAssessor
from lmms_eval_autorater.judges.prompts import tool_menu
from lmms_eval_autorater.judges.types import JudgeRequest, Verdict
from lmms_eval_autorater.specialists.registry import applicable
from lmms_eval_autorater.specialists.render import render_assessments
from lmms_eval_autorater.specialists.types import Assessment
from tests.datafactory import image_bytes
from tests.openai_server import Fault, OpenAIServer, image_urls, prompt_text


class FixedPool:
    """Stands in for the specialist pool: fixed values per (code, image), counting every call."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []
        self.events: list[str] = []

    def release(self, code):
        self.events.append(f"release {code}")

    def assess(self, code, items):
        self.calls.append((code, len(items)))
        self.events.append(f"assess {code}")
        return [
            Assessment(
                code=code,
                value=0.25 if "a" in it.image.rsplit("/", 1)[-1] else 0.75,
                text="cat x1 (max 0.80)" if code in ("GD", "AE") else None,
                version="fixed",
            )
            for it in items
        ]


@pytest.fixture
def images(tmp_path):
    paths = {}
    for k, name in enumerate(("src", "a", "b", "c")):
        p = tmp_path / f"{name}.png"
        p.write_bytes(image_bytes(k))
        paths[name] = str(p)
    return paths


def make_judge(server, tmp_path, tools, pool=None, swap=False, max_retries=1):
    backend = OpenAIChatBackend(model="judge-x", base_url=server.url, api_key_env=None, timeout=2)
    completer = ApiCompleter(
        backend,
        cache=ResponseCache(tmp_path / "r.sqlite"),
        concurrency=4,
        max_retries=max_retries,
        backoff_base=0.01,
        progress=False,
    )
    if not tools:
        return Judge(completer, tools=[], swap=swap)
    return Judge(
        completer,
        tools=tools,
        swap=swap,
        assess=SpecialistAssessor(pool),
        render=render_assessments,
        applicable=applicable,
        tool_menu=tool_menu,
    )


def pair_req(images, kind="generation"):
    return JudgeRequest(
        doc_key="d1",
        task_kind=kind,
        paradigm="pairwise",
        request="a cat",
        candidates=(images["a"], images["b"]),
        source=images["src"] if kind == "editing" else None,
    )


def answer_by_schema(request_json):
    fmt = request_json.get("response_format", {}).get("json_schema", {})
    if fmt.get("name") == "tool_selection":
        return json.dumps({"analysis": "need quality", "tools": ["QS", "GD"]})
    if fmt.get("name") == "pairwise_verdict":
        return json.dumps({"analysis": "image 1 is sharper", "preferred": 1})
    return json.dumps({"analysis": "fine", "score": 7})


def test_base_vlm_prompt_has_no_evidence_and_images_in_order(tmp_path, images):
    with OpenAIServer(answer_by_schema) as server:
        v = make_judge(server, tmp_path, []).judge_all([pair_req(images, "editing")])[0]
        body = server.requests[0].json
    assert v.status == "ok" and v.preferred == 1 and v.analysis == "image 1 is sharper"
    text = prompt_text(body)
    assert "specialist" not in text.lower()
    assert text.index("Source image:") < text.index("Image 1:") < text.index("Image 2:")
    assert len(image_urls(body)) == 3
    assert body["temperature"] == 0 and body["seed"] == 1234
    assert body["response_format"]["json_schema"]["strict"] is True


def test_fixed_tools_render_labelled_evidence_for_each_candidate(tmp_path, images):
    pool = FixedPool()
    with OpenAIServer(answer_by_schema) as server:
        v = make_judge(server, tmp_path, ["PA", "QS"], pool).judge_all([pair_req(images)])[0]
        text = prompt_text(server.requests[0].json)
    assert v.status == "ok" and v.meta["tools"] == ["PA", "QS"]
    assert sorted(pool.calls) == [("PA", 2), ("QS", 2)]
    assert "PAL4VST" in text and "Q-SiT" in text and "0.250" in text and "0.750" in text
    assert "GroundingDINO" not in text


def test_inapplicable_fixed_tool_is_an_error_naming_it(tmp_path, images):
    with OpenAIServer(answer_by_schema) as server:
        judge = make_judge(server, tmp_path, ["DF", "QS"], FixedPool())
        with pytest.raises(ValueError, match="DF do not apply to generation"):
            judge.judge_all([pair_req(images)])
        assert server.request_count == 0


def test_all_uses_every_applicable_specialist(tmp_path, images):
    pool = FixedPool()
    with OpenAIServer(answer_by_schema) as server:
        gen, edit = make_judge(server, tmp_path, "all", pool).judge_all(
            [pair_req(images), pair_req(images, "editing")]
        )
    assert gen.meta["tools"] == ["GD", "AE", "PA", "QS"]
    assert edit.meta["tools"] == ["GD", "AE", "PA", "QS", "DF", "DS"]
    assert {c for c, _ in pool.calls} == {"GD", "AE", "PA", "QS", "DF", "DS"}
    # one specialist in memory at a time: each pass over the docs is followed by its release
    assert all(
        pool.events[i + 1] == e.replace("assess", "release")
        for i, e in enumerate(pool.events)
        if e.startswith("assess")
    )


def test_auto_two_passes_uses_only_selected_tools(tmp_path, images):
    pool = FixedPool()
    with OpenAIServer(answer_by_schema) as server:
        v = make_judge(server, tmp_path, "auto", pool).judge_all([pair_req(images)])[0]
        first, second = (prompt_text(r.json) for r in server.requests)
    assert server.request_count == 2
    assert "Available specialists" in first and "- DF" not in first  # only applicable ones offered
    assert v.meta["auto_selected"] == ["GD", "QS"] and v.meta["tools"] == ["GD", "QS"]
    assert sorted(c for c, _ in pool.calls) == ["GD", "QS"]
    assert "Q-SiT" in second and "PAL4VST" not in second


def test_auto_unparsable_selection_is_a_failure_not_a_toolless_guess(tmp_path, images):
    def responder(req):
        if req.get("response_format", {}).get("json_schema", {}).get("name") == "tool_selection":
            return "I would like the XYZ tool"
        return answer_by_schema(req)

    with OpenAIServer(responder) as server:
        judge = make_judge(server, tmp_path, "auto", FixedPool())
        v = judge.judge_all([pair_req(images)])[0]
    assert v.status == "parse_failure" and "tool selection" in v.error
    assert server.request_count == 1 and judge.stats.selection_failures == 1


def test_swap_agreement_disagreement_and_flip(tmp_path, images):
    req = pair_req(images)
    assert swap_request(swap_request(req)) == req
    with OpenAIServer(answer_by_schema) as server:  # always "1": disagrees with itself once swapped
        judge = make_judge(server, tmp_path, [], swap=True)
        v = judge.judge_all([req])[0]
        shown = [image_urls(r.json) for r in server.requests]
    assert shown[0] == list(reversed(shown[1]))
    assert v.status == "ok" and v.preferred == 0 and v.meta["swap_flipped"] is True
    assert judge.stats.swap_flips == 1
    agree = combine_swap(Verdict("ok", preferred=2), Verdict("ok", preferred=1))
    assert agree.preferred == 2 and agree.meta["swap_flipped"] is False
    failed = combine_swap(Verdict("ok", preferred=2), Verdict("api_error", error="boom"))
    assert failed.status == "api_error"


def test_failures_are_counted_never_guessed(tmp_path, images):
    def responder(req):
        return (
            "Image 1 shows a cat while Image 2 shows a dog."
            if "cat" in prompt_text(req)
            else answer_by_schema(req)
        )

    reqs = [pair_req(images), JudgeRequest("d2", "generation", "pointwise", "a dog", (images["c"],))]
    with OpenAIServer(responder) as server:
        server.inject(Fault.http(503), times=10, match="a dog")
        judge = make_judge(server, tmp_path, [], max_retries=1)
        v1, v2 = judge.judge_all(reqs)
    assert v1.status == "parse_failure" and v1.preferred is None and "Image 2 shows a dog" in v1.raw
    assert v2.status == "api_error" and v2.score is None and "503" in v2.error
    assert (judge.stats.parse_failures, judge.stats.api_failures) == (1, 1)
