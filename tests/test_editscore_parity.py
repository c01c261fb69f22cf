"""EditScore equals the authors' code (the ``editscore`` 0.2 package) on a tiny random Qwen2.5-VL + LoRA.

The fixtures (``tests/fixtures/parity/editscore/``) were written by ``scripts/make_editscore_parity_fixtures.py``,
which ran the package in its own venv (transformers 4.57.1, peft 0.17.1, json-repair 0.52.3): (a) the model inputs
of their ``prepare_input``, (b) the answers their ``inference`` sampled (bfloat16, seeds 42 and 43), (c) what their
``evaluate`` / ``batch_evaluate`` make of a corpus of answers, (d) the messages their ``openai`` backbone sent to the
recording server and the scores it gave. Here the project's scorer (transformers 5) does the same and must agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.openai_server import OpenAIServer

FIX = Path(__file__).parent / "fixtures" / "parity"
ES = FIX / "editscore"
IMAGES = FIX / "images"
DATA = json.loads((ES / "editscore.json").read_text(encoding="utf-8"))


def _scorer(**kw):
    from lmms_eval_autorater.baselines.editscore import EditScoreScorer

    return EditScoreScorer(str(ES / "base"), lora=str(ES / "lora"), device="cpu", **kw)


def _asks():
    from lmms_eval_autorater.baselines.editscore import Ask, pq_prompt, sc_prompt

    out = []
    for c in DATA["cases"]:
        src, edit = str(IMAGES / c["source"]), str(IMAGES / c["edited"])
        out.append(("SC", Ask((src, edit), sc_prompt(c["instruction"], 25))))
        out.append(("PQ", Ask((edit,), pq_prompt(25))))
    return out


def test_model_inputs_equal_their_prepare_input():
    """(a) token ids, mask, pixel values and image grid of each question, as their prepare_input built them."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("qwen_vl_utils")
    theirs = np.load(ES / "inputs.npz")
    scorer = _scorer(dtype="bfloat16").load()
    for n, (kind, ask) in enumerate(_asks()):
        mine = scorer.model_inputs([ask])
        key = f"{n // 2}_{kind}"
        assert mine["input_ids"].numpy().tolist() == theirs[f"{key}_input_ids"].tolist(), key
        assert mine["attention_mask"].numpy().tolist() == theirs[f"{key}_attention_mask"].tolist(), key
        assert mine["image_grid_thw"].numpy().tolist() == theirs[f"{key}_image_grid_thw"].tolist(), key
        assert np.allclose(mine["pixel_values"].float().numpy(), theirs[f"{key}_pixel_values"], atol=1e-6), (
            key
        )
    # the image prefixes and the source image are really in the SC question
    text = scorer.processor.tokenizer.decode(theirs["0_SC_input_ids"][0])
    assert text.count("<|vision_start|>") == 2 and "<img1>: " in text and "<img2>: " in text


def test_sampled_answers_equal_their_inference():
    """(b) their seeded sampling (temperature 0.7, top-k 20, top-p 0.9, repetition penalty of the generation
    config) on the merged tiny model, bfloat16 as their code loads it, one question at a time as they ask."""
    pytest.importorskip("peft")
    scorer = _scorer(dtype="bfloat16", batch_size=1)
    asks = _asks()
    for seed in DATA["seeds"]:
        got = scorer.generate_local([a for _, a in asks], seed)
        expected = [DATA["cases"][n // 2]["answers"][kind][str(seed)] for n, (kind, _) in enumerate(asks)]
        assert got == expected, seed
    assert len({t for c in DATA["cases"] for v in c["answers"].values() for t in v.values()}) == 12


def test_batched_answers_equal_one_by_one_answers():
    """Each answer draws from its own seeded generator: a batch (left-padded, float32) gives the one-by-one texts.
    (In bfloat16 the padding changes the logits enough to change a draw after a few dozen tokens.)"""
    pytest.importorskip("peft")
    asks = [a for _, a in _asks()]
    one = _scorer(batch_size=1).generate_local(asks, 42)
    assert _scorer(batch_size=6).generate_local(asks, 42) == one
    assert _scorer(batch_size=1).generate_local(asks, 43) != one


def test_parse_and_score_rule_equal_theirs_where_they_do_not_guess():
    """(c) where their evaluate gives a score without guessing, ours equals it to 1e-9; where it guesses or raises
    (and batch_evaluate falls back to score_range / 2), ours is a parse failure."""
    from lmms_eval_autorater.baselines.editscore import AnswerError, pass_scores

    agreed = failed = 0
    for item in DATA["corpus"]:
        for role in ("as_SC", "as_PQ"):
            sc, pq = (item["text"], DATA["good_pq"]) if role == "as_SC" else (DATA["good_sc"], item["text"])
            theirs = item[role]["evaluate"]
            if "overall" in theirs and not theirs["guessed"]:
                assert pass_scores(sc, pq, 25).overall == pytest.approx(theirs["overall"], abs=1e-9), (
                    role,
                    sc,
                    pq,
                )
                agreed += 1
            else:
                with pytest.raises(AnswerError):
                    pass_scores(sc, pq, 25)
                failed += 1
    assert agreed >= 20 and failed >= 15  # the corpus exercises both sides


def test_served_messages_and_scores_equal_their_openai_backbone():
    """(d) served_format=openai sends the content their openai backbone sent (prompt, then JPEG images) and scores
    the same fixed answers the same."""
    pytest.importorskip("openai")
    from lmms_eval_autorater.models.baseline_models import _editscore_transport

    good_sc, good_pq = DATA["good_sc"], DATA["good_pq"]

    def responder(body):
        return good_sc if "Editing instruction:" in json.dumps(body["messages"]) else good_pq

    with OpenAIServer(responder) as server:
        transport = _editscore_transport("editscore-served", server.url, None, None, None)
        scorer = _scorer(transport=transport, served_format="openai")
        for case in DATA["served"]:
            before = len(server.requests)
            got = scorer.score(
                [case["instruction"]], [str(IMAGES / case["source"])], [str(IMAGES / case["edited"])]
            )
            sent = [q.json["messages"] for q in server.requests[before:]]
            assert sorted(map(json.dumps, sent)) == sorted(map(json.dumps, case["messages"]))
            assert got[0] == pytest.approx(case["overall"], abs=1e-9)
            for q in server.requests[before:]:  # their sampling settings go with each request
                assert q.json["temperature"] == 0.7 and q.json["top_p"] == 0.9 and q.json["seed"] == 42
                assert q.json["max_tokens"] == 512


def test_served_qwen_format_renders_their_chat_template():
    """served_format=qwen: the tiny checkpoint's Qwen2.5-VL chat template, applied by a server to the messages we
    send, gives exactly their apply_chat_template text; the image bytes are the files' own."""
    import base64

    from transformers import AutoProcessor

    from lmms_eval_autorater.baselines.editscore import Ask, chat_text, sc_prompt

    scorer = _scorer(transport=lambda reqs: [], served_format="qwen")
    src, edit = str(IMAGES / "rgb_wide.png"), str(IMAGES / "rgb_tall.png")
    prompt = sc_prompt("make the sky red", 25)
    req = scorer.served_request(Ask((src, edit), prompt), 42)
    processor = AutoProcessor.from_pretrained(ES / "base")
    messages = [
        {
            "role": m["role"],
            "content": [{"type": "image"} if p["type"] == "image_url" else p for p in m["content"]],
        }
        for m in req.messages
    ]
    rendered = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == chat_text(prompt, 2)
    urls = [p["image_url"]["url"] for p in req.messages[0]["content"] if p["type"] == "image_url"]
    assert [base64.b64decode(u.split(",", 1)[1]) for u in urls] == [
        Path(src).read_bytes(),
        Path(edit).read_bytes(),
    ]
    assert req.extra_body == {"top_k": 20, "sampling": {"temperature": 0.7, "seed": 42, "top_p": 0.9}}
