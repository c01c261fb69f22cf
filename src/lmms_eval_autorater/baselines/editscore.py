"""EditScore (Luo et al., 2025): a generative editing reward model, re-implemented from the ``editscore`` 0.2
package (PyPI; ``editscore/__init__.py``, ``utils.py``, ``vie_prompts.py``, ``mllm_tools/qwen25vl.py``,
``qwen25vl_vllm.py``, ``openai.py``).

The model is Qwen2.5-VL-7B-Instruct with the LoRA ``EditScore/EditScore-7B`` merged (peft's ``merge_and_unload``,
as their ``Qwen25VL`` does). Each edit is asked twice per pass:

- SC (semantic consistency): the source image, the edited image and the SC prompt with the instruction; the answer
  holds two scores (editing success, over-editing);
- PQ (perceptual quality): the edited image alone and the PQ prompt; two scores (naturalness, artifacts).

The prompts are their ``vie_prompts`` text with "10" replaced by ``score_range`` (25 by default), rendered with
their own chat template (``apply_chat_template``: the default system turn, then ``<img1>: `` / ``<img2>: `` before
each image, then the prompt). Each answer is read by their ``mllm_output_to_dict`` rules (the JSON between the
outer braces; ``json.loads`` after smart quotes are straightened, else ``json_repair`` after their fixers), scores
are divided by ``score_range / 10``; per pass ``overall = sqrt(min(SC scores) * min(PQ scores))``; ``num_pass``
passes (pass ``i`` sampled with seed ``seed + i``) are averaged (``reduction="average_last"``; ``"average_first"``:
``sqrt(mean SC[0] * mean PQ)``, their ``evaluate``'s rule).

Where the package guesses, this module does not: their ``evaluate`` re-asks twice and then draws a random score
(``guess_if_cannot_parse``), their ``batch_evaluate`` puts ``score_range / 2`` for an answer without scores and
for a score out of range. Here such an answer makes the doc's score NaN with the reason kept (``failure``), which
the lmms-eval wrapper counts as a parse failure; a pass that failed is never averaged away.

Sampling (their defaults: temperature 0.7, top-p 0.9, top-k 20, at most 512 new tokens) is seeded per answer: in
process, each answer draws from its own generator seeded ``seed + pass`` (what their ``set_seed`` before a
one-answer ``generate`` gives), so a batch gives the same texts as one-by-one calls; served, the seed goes with
each request (vLLM seeds each request, as their vLLM backend does). ``temperature=0`` is greedy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmms_eval_autorater.baselines import (
    CheckpointError,
    empty_cuda_cache,
    open_image,
    pick_device,
    pick_dtype,
    resolve_dir,
)
from lmms_eval_autorater.catalog.models import EDITSCORE_BASE_MODEL, EDITSCORE_LORA
from lmms_eval_autorater.errors import UsageError

#: the package whose prompts, template and rules these are
EDITSCORE_PACKAGE = "editscore==0.2"

# -- their prompts (editscore 0.2, vie_prompts.py), verbatim ------------------------------------------------
CONTEXT = """You are a professional digital artist. You will have to evaluate the effectiveness of the AI-generated image(s) based on given rules.
All the input images are AI-generated. All human in the images are AI-generated too. so you need not worry about the privacy confidentials.

IMPORTANT: You will have to give your output in this way (Keep your reasoning concise and short.):
{
"reasoning" : "...",
"score" : [...]
}
"""  # noqa: E501
TWO_IMAGE_EDIT_RULE = """RULES:

Two images will be provided: The first being the original AI-generated image and the second being an edited version of the first.
The objective is to evaluate how successfully the editing instruction has been executed in the second image.

Note that sometimes the two images might look identical due to the failure of image edit.
"""  # noqa: E501
TIE_RULE_SC = """
From scale 0 to 10: 
A score from 0 to 10 will be given based on the success of the editing. (0 indicates that the scene in the edited image does not follow the editing instruction at all. 10 indicates that the scene in the edited image follow the editing instruction text perfectly.)
A second score from 0 to 10 will rate the degree of overediting in the second image. (0 indicates that the scene in the edited image is completely different from the original. 10 indicates that the edited image can be recognized as a minimal edited yet effective version of original.)
Put the score in a list such that output score = [score1, score2], where 'score1' evaluates the editing success and 'score2' evaluates the degree of overediting.

Editing instruction: <instruction>
"""  # noqa: W291, E501
RULE_PQ = """RULES:

The image is an AI-generated image.
The objective is to evaluate how successfully the image has been generated.

From scale 0 to 10: 
A score from 0 to 10 will be given based on image naturalness. 
(
    0 indicates that the scene in the image does not look natural at all or give a unnatural feeling such as wrong sense of distance, or wrong shadow, or wrong lighting. 
    10 indicates that the image looks natural.
)
A second score from 0 to 10 will rate the image artifacts. 
(
    0 indicates that the image contains a large portion of distortion, or watermark, or scratches, or blurred faces, or unusual body parts, or subjects not harmonized. 
    10 indicates the image has no artifacts.
)
Put the score in a list such that output score = [naturalness, artifacts]
"""  # noqa: W291, E501
#: their answer to a refused request (``EditScore.evaluate`` gives up parsing on it)
REFUSAL = "I'm sorry, but I can't assist with that request."
#: their sampling settings (``mllm_tools/qwen25vl.py``: ``generate(max_new_tokens=512, top_p=0.9, top_k=20)``)
TOP_P = 0.9
TOP_K = 20
MAX_NEW_TOKENS = 512
REDUCTIONS = ("average_last", "average_first")
SERVED_FORMATS = ("qwen", "openai")


def sc_prompt(instruction: str, score_range: int = 25) -> str:
    """Their SC prompt (``EditScore.SC_prompt`` with the instruction put in)."""
    rule = TIE_RULE_SC.replace("10", str(score_range))
    return "\n".join([CONTEXT, TWO_IMAGE_EDIT_RULE, rule]).replace("<instruction>", instruction)


def pq_prompt(score_range: int = 25) -> str:
    """Their PQ prompt (``EditScore.PQ_prompt``)."""
    return "\n".join([CONTEXT, RULE_PQ.replace("10", str(score_range))])


def chat_text(prompt: str, num_images: int) -> str:
    """Their ``apply_chat_template`` (``mllm_tools/qwen25vl.py``): default system turn, ``<imgN>: `` before each image."""
    template = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    template += "".join(
        f"<img{i}>: <|vision_start|><|image_pad|><|vision_end|>" for i in range(1, num_images + 1)
    )
    return template + f"{prompt}<|im_end|>\n<|im_start|>assistant\n"


# -- their parse rule (editscore 0.2 utils.mllm_output_to_dict with give_up_parsing=False) ------------------


class AnswerError(ValueError):
    """An answer that gives no usable scores (their code would guess, re-ask or crash here)."""


def _fix_json(input_str: str) -> str:
    import regex as re

    fixed_str = re.sub(r"(\w+):", r'"\1":', input_str)

    def format_value(match):
        key, value, comma = match.groups()
        value = value.strip()
        if re.match(r"^-?\d+(\.\d+)?$", value):
            value = f"[{value}]"
        elif re.match(r"^(true|false|null)$", value, re.IGNORECASE):
            pass
        else:
            value = f'"{value}"'
        return f"{key}: {value}{comma}"

    return re.sub(r'(".*?"):(.*?)(,|})', format_value, fixed_str)


def _repair_reasoning_field(json_str: str) -> str:
    import regex as re

    pattern = re.compile(r'("reasoning"\s*:\s*")(.*?)(?="\s*[,}])', re.DOTALL)
    return pattern.sub(lambda m: m.group(1) + m.group(2).replace('"', '\\"'), json_str)


def _fallback_repair_json(s: str) -> str:
    import regex as re

    lowered = s.lower()
    m_reason = re.search(r'"?reasoning"?\s*[:：]', lowered)
    m_score = re.search(r'"?score"?\s*[:：]', lowered)
    reasoning_text = ""
    if m_reason and m_score:
        raw = s[m_reason.end() : m_score.start()].strip()
        raw = re.sub(r"^[\s,{\[]+", "", raw)
        raw = re.sub(r"[\s,}\]]+$", "", raw)
        if raw.startswith(("'", '"')):
            raw = raw[1:]
        if raw.endswith(("'", '"')):
            raw = raw[:-1]
        raw = raw.replace('\\"', '"').replace("\\'", "'")
        raw = re.sub(r"[“”]", '"', raw)
        reasoning_text = re.sub(r"[‘’]", "'", raw).strip()
    else:
        m_loose = re.search(
            r'"?reasoning"?\s*[:：]\s*["\']?(.*?)["\']?\s*(,|$)', s, re.DOTALL | re.IGNORECASE
        )
        if m_loose:
            text = m_loose.group(1).strip().replace('\\"', '"').replace("\\'", "'")
            text = re.sub(r"[“”]", '"', text)
            reasoning_text = re.sub(r"[‘’]", "'", text)
    nums = re.findall(r"-?\d+(?:\.\d+)?", s[m_score.end() :] if m_score else s)
    scores = [float(n) for n in nums[:2]]
    scores += [0.0] * (2 - len(scores))  # theirs pads with zeros: kept, the range check comes after
    return json.dumps({"reasoning": reasoning_text, "score": scores}, ensure_ascii=False)


def _robust_json_fix(s: str) -> Any:
    """Their ``robust_json_fix``: ``json_repair.loads``, then after each of their fixers, then their fallback."""
    try:
        import json_repair
    except ImportError as exc:  # pragma: no cover - an install without the extra
        raise UsageError(
            "editscore reads answers with json_repair, as the editscore package does: "
            "pip install 'lmms-eval-autorater[rewards]' (or json-repair)"
        ) from exc
    try:
        return json_repair.loads(s)
    except Exception:
        pass
    for fixer in (_fix_json, _repair_reasoning_field):
        s = fixer(s)
        try:
            return json_repair.loads(s)
        except Exception:
            continue
    try:
        return json_repair.loads(_fallback_repair_json(s))
    except Exception:
        return False


def parse_answer(text: str) -> Any:
    """What their ``mllm_output_to_dict(text, give_up_parsing=False)`` returns: the parsed JSON (usually a dict),
    or ``False`` where they find no JSON (their ``evaluate`` then re-asks and finally guesses)."""
    import regex as re

    delimiter = "||V^=^V||"
    if text.count(delimiter) == 2:
        start, end = text.find(delimiter) + len(delimiter), text.rfind(delimiter)
    else:
        start, end = text.find("{"), text.rfind("}") + 1
        if start == -1 or end == 0:
            start, end = text.find("["), text.rfind("]") + 1
            if re.match(r"^\[\d+, ?\d+\]$", text[start:end]):
                text = json.dumps({"score": json.loads(text[start:end]), "reasoning": "list of scores"})
            elif _is_int_between_0_and_10(text):
                text = json.dumps({"score": [int(text)], "reasoning": "a number"})
            else:
                return False
            start, end = 0, len(text)
    if start == -1 or end == -1 or start == end:
        return False
    json_str = text[start:end].strip().replace("\n", "")
    try:
        json_str = json_str.replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'")
        data = json.loads(json_str)
        if not isinstance(data["score"], list):
            data["score"] = [data["score"]]
        return data
    except Exception:
        return _robust_json_fix(json_str)


def _is_int_between_0_and_10(s: str) -> bool:
    try:
        return 0 <= int(s) <= 10
    except ValueError:
        return False


def answer_scores(text: str, score_range: int, *, what: str, need: int) -> list[float]:
    """The scores of one answer, unscaled, checked: at least ``need`` numbers, the lowest within [0, score_range].

    Raises ``AnswerError`` (with the reason) where their code would guess, clamp or crash."""
    if text.strip() == REFUSAL:
        raise AnswerError(f"{what}: the model refused ({REFUSAL!r})")
    data = parse_answer(text)
    if data is False:
        raise AnswerError(f"{what}: no JSON and no score list in the answer")
    scores = data.get("score") if isinstance(data, dict) else None
    if isinstance(scores, (int, float)) and not isinstance(scores, bool):
        scores = [scores]
    if not isinstance(scores, list) or not scores:
        raise AnswerError(f"{what}: no 'score' list in the answer")
    if not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores):
        raise AnswerError(f"{what}: scores {scores!r} are not all numbers")
    if len(scores) < need:
        raise AnswerError(f"{what}: {len(scores)} score(s) {scores!r}, {need} expected")
    values = [float(s) for s in scores]
    if not all(math.isfinite(v) for v in values) or not 0 <= min(values) <= score_range:
        # the score that counts (the minimum) out of range: their batch_evaluate puts score_range / 2 there
        raise AnswerError(f"{what}: scores {values!r}, the lowest outside 0..{score_range}")
    return values


@dataclass(frozen=True)
class PassScores:
    """One pass of one edit, scaled to 0..10 (their ``evaluate``'s per-pass dict)."""

    prompt_following: float
    consistency: float
    perceptual_quality: float
    overall: float


def pass_scores(sc_text: str, pq_text: str, score_range: int = 25) -> PassScores:
    """Their per-pass rule: scores / (score_range / 10); overall = sqrt(min(SC) * min(PQ)); ``AnswerError``
    where they would guess or crash."""
    scale = score_range / 10
    sc = answer_scores(sc_text, score_range, what="SC answer", need=2)
    pq = answer_scores(pq_text, score_range, what="PQ answer", need=1)
    sc_score, pq_score = min(sc) / scale, min(pq) / scale
    return PassScores(sc[0] / scale, sc[1] / scale, pq_score, math.sqrt(sc_score * pq_score))


def reduce_passes(passes: Sequence[PassScores], reduction: str = "average_last") -> dict[str, float]:
    """Their ``evaluate``'s averages over passes; ``average_first`` recomputes overall from the averages."""
    n = len(passes)
    out = {
        "prompt_following": math.fsum(p.prompt_following for p in passes) / n,
        "consistency": math.fsum(p.consistency for p in passes) / n,
        "perceptual_quality": math.fsum(p.perceptual_quality for p in passes) / n,
        "overall": math.fsum(p.overall for p in passes) / n,
    }
    if reduction == "average_first":
        out["overall"] = math.sqrt(out["prompt_following"] * out["perceptual_quality"])
    return out


# -- what the model is asked --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """One question to the model: its images (references or PIL images, in order) and its prompt text."""

    images: tuple[Any, ...]
    prompt: str


#: asks -> per ask the answer text, or the exception it failed with for good (served: after the retries)
Generate = Callable[[list[Ask], int], list["str | BaseException"]]


@dataclass
class EditScoreResult:
    """One edit: ``overall`` (NaN when it failed), the averaged parts, each pass's answers, and why it failed."""

    overall: float
    parts: dict[str, float] = field(default_factory=dict)
    answers: list[tuple[str, str]] = field(default_factory=list)
    #: (``parse_failure`` or ``api_error``, reason) when the doc has no score
    failure: tuple[str, str] | None = None


class EditScoreScorer:
    """EditScore per (instruction, source image, edited image): ``overall`` in 0..10, higher is better.

    ``transport`` given: the served path (an OpenAI-compatible server, see ``served_request``); else the model
    runs in process with transformers (``pretrained`` + ``lora`` merged, or a merged folder with ``lora=none``).
    """

    def __init__(
        self,
        pretrained: str = EDITSCORE_BASE_MODEL,
        lora: str | None = EDITSCORE_LORA,
        device: str | None = None,
        batch_size: int = 4,
        local_files_only: bool | None = None,
        dtype: str | None = None,
        num_pass: int = 1,
        seed: int = 42,
        temperature: float = 0.7,
        score_range: int = 25,
        reduction: str = "average_last",
        max_new_tokens: int = MAX_NEW_TOKENS,
        transport: Callable | None = None,
        served_format: str = "qwen",
    ) -> None:
        if reduction not in REDUCTIONS:
            raise UsageError(f"editscore: reduction={reduction!r}, expected one of {', '.join(REDUCTIONS)}")
        if served_format not in SERVED_FORMATS:
            raise UsageError(
                f"editscore: served_format={served_format!r}, expected one of {', '.join(SERVED_FORMATS)}"
            )
        if int(num_pass) < 1 or int(score_range) < 1 or float(temperature) < 0 or int(max_new_tokens) < 1:
            raise UsageError(
                f"editscore: num_pass={num_pass}, score_range={score_range}, max_new_tokens={max_new_tokens} "
                f"must be >= 1 and temperature={temperature} >= 0"
            )
        self.pretrained = str(pretrained)
        self.lora = None if lora in (None, "", "none", "None") else str(lora)
        self.device_arg = device
        self.batch_size = max(1, int(batch_size))
        self.local_files_only = local_files_only
        self.dtype_arg = dtype
        self.num_pass = int(num_pass)
        self.seed = int(seed)
        self.temperature = float(temperature)
        self.score_range = int(score_range)
        self.reduction = reduction
        self.max_new_tokens = int(max_new_tokens)
        self.transport = transport
        self.served_format = served_format
        self.model = None

    # -- in process ---------------------------------------------------------------------------------------

    def load(self) -> EditScoreScorer:
        """Load the model now (in process; otherwise done on the first ``score``). Served: nothing to load."""
        if self.transport is not None or self.model is not None:
            return self
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        base = resolve_dir(self.pretrained, local_files_only=self.local_files_only, what="EditScore base model",
                           arg="pretrained")  # fmt: skip
        self.device = pick_device(self.device_arg)
        self.dtype = pick_dtype(self.device, self.dtype_arg)
        try:
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, dtype=self.dtype)
            processor = AutoProcessor.from_pretrained(base)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"EditScore base model {base}: cannot load ({exc})") from exc
        if self.lora is not None:
            try:
                from peft import PeftModel
            except ImportError as exc:
                raise UsageError(
                    "editscore: lora= is merged with peft, which is not installed: "
                    "pip install 'lmms-eval-autorater[rewards]' (or pass lora=none with an already merged model)"
                ) from exc
            adapter = resolve_dir(self.lora, local_files_only=self.local_files_only, what="EditScore LoRA",
                                  arg="lora")  # fmt: skip
            try:
                model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise CheckpointError(f"EditScore LoRA {adapter}: cannot merge into {base} ({exc})") from exc
        self.model = model.to(self.device).eval()
        self.processor = processor
        return self

    def release(self) -> None:
        """Free the model and its device memory."""
        self.model = None
        empty_cuda_cache()

    def model_inputs(self, asks: list[Ask]):
        """The processor's batch for ``asks`` (their ``prepare_input``: ``qwen_vl_utils.process_vision_info`` on
        the images, their chat template), left-padded for batched generation."""
        from qwen_vl_utils import process_vision_info

        texts, images = [], []
        for ask in asks:
            content = [{"type": "image", "image": open_image(i)} for i in ask.images]
            image_inputs, _ = process_vision_info([{"role": "user", "content": content}])
            images += image_inputs
            texts.append(chat_text(ask.prompt, len(ask.images)))
        self.processor.tokenizer.padding_side = "left"
        return self.processor(text=texts, images=images, padding=True, return_tensors="pt")

    def generate_local(self, asks: list[Ask], seed: int) -> list[str]:
        """Answer texts (their ``inference``: sampled, trimmed, special tokens skipped, stripped), each answer
        sampled from its own generator seeded ``seed``."""
        import torch

        self.load()
        out: list[str] = []
        for start in range(0, len(asks), self.batch_size):
            batch = self.model_inputs(asks[start : start + self.batch_size]).to(self.device)
            batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
            kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": False}
            if self.temperature > 0:
                rows = batch["input_ids"].shape[0]
                kwargs["logits_processor"] = [_seeded_sampler(seed, rows, self.temperature, self.device)]
            with torch.inference_mode():
                ids = self.model.generate(**batch, **kwargs)
            trimmed = ids[:, batch["input_ids"].shape[1] :]
            texts = self.processor.batch_decode(
                trimmed, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
            out += [t.strip() for t in texts]
        return out

    # -- served -------------------------------------------------------------------------------------------

    def served_request(self, ask: Ask, seed: int):
        """The chat request of one ask.

        ``served_format="qwen"`` (default, for a vLLM serving the merged model): text ``<imgN>: `` before each
        image, then the prompt; the server's Qwen2.5-VL chat template adds the default system turn, so the
        model reads exactly their ``apply_chat_template``; the image bytes go unchanged. ``"openai"``: their
        ``openai`` backbone's content (the prompt first, then each image as RGB JPEG, PIL's default quality).
        Sampling: their temperature, top-p, seed per request; top-k 20 as vLLM's extra field (qwen only)."""
        from lmms_eval_autorater.specialists.served import ServedRequest, image_part

        if self.served_format == "openai":
            content = [{"type": "text", "text": ask.prompt}] + [_jpeg_part(i) for i in ask.images]
            extra: dict[str, Any] = {}
        else:
            content = []
            for n, img in enumerate(ask.images, start=1):
                content += [{"type": "text", "text": f"<img{n}>: "}, image_part(_ref(img))]
            content.append({"type": "text", "text": ask.prompt})
            extra = {"top_k": TOP_K} if self.temperature > 0 else {}
        sampling = {"temperature": self.temperature, "seed": seed}
        if self.temperature > 0:
            sampling["top_p"] = TOP_P
        return ServedRequest(
            messages=({"role": "user", "content": content},),
            max_tokens=self.max_new_tokens,
            extra_body={**extra, "sampling": sampling},
        )

    def generate_served(self, asks: list[Ask], seed: int) -> list[str | BaseException]:
        """Answer texts from the server, or the error a request failed with after the transport's retries."""
        assert self.transport is not None
        answers = self.transport([self.served_request(a, seed) for a in asks])
        return [a if isinstance(a, BaseException) else (a.text or "").strip() for a in answers]

    # -- scoring ------------------------------------------------------------------------------------------

    def generate(self, asks: list[Ask], seed: int) -> list[str | BaseException]:
        """The answers to ``asks`` at ``seed``, served or in process."""
        if self.transport is not None:
            return self.generate_served(asks, seed)
        return list(self.generate_local(asks, seed))

    def score_detailed(
        self, instructions: list[str], sources: list[Any], images: list[Any]
    ) -> list[EditScoreResult]:
        """One result per (instruction, source image, edited image)."""
        if not (len(instructions) == len(sources) == len(images)):
            raise ValueError(
                f"{len(instructions)} instructions, {len(sources)} sources, {len(images)} edited images: "
                "give one of each per edit"
            )
        n = len(images)
        asks = [Ask((s, e), sc_prompt(i, self.score_range)) for i, s, e in zip(instructions, sources, images)]
        asks += [Ask((e,), pq_prompt(self.score_range)) for e in images]
        passes: list[list[PassScores]] = [[] for _ in range(n)]
        results = [EditScoreResult(math.nan) for _ in range(n)]
        for p in range(self.num_pass):
            answers = self.generate(asks, self.seed + p)
            for k in range(n):
                res = results[k]
                sc, pq = answers[k], answers[n + k]
                if res.failure is not None:
                    continue
                bad = next((a for a in (sc, pq) if isinstance(a, BaseException)), None)
                if bad is not None:
                    res.failure = ("api_error", f"pass {p}: {bad}")
                    continue
                res.answers.append((str(sc), str(pq)))
                try:
                    passes[k].append(pass_scores(str(sc), str(pq), self.score_range))
                except AnswerError as exc:
                    res.failure = ("parse_failure", f"pass {p}: {exc}")
        for k, res in enumerate(results):
            if res.failure is None:
                res.parts = reduce_passes(passes[k], self.reduction)
                res.overall = res.parts["overall"]
        return results

    def score(self, instructions: list[str], sources: list[Any], images: list[Any]) -> list[float]:
        """``overall`` per edit; NaN where an answer gave no usable scores (see ``score_detailed``)."""
        return [r.overall for r in self.score_detailed(instructions, sources, images)]


def _ref(image: Any) -> str:
    if isinstance(image, str):
        return image
    raise UsageError("editscore served: images must be file references (paths), got a PIL image")


def _jpeg_part(image: Any) -> dict:
    """Their ``openai`` backbone's image part: ``load_image`` (EXIF transpose, RGB), JPEG at PIL's default, base64."""
    import base64
    import io

    from PIL import ImageOps

    img = ImageOps.exif_transpose(open_image(image)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return {
        "type": "image_url",
        "image_url": {"url": f"data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode('utf-8')}"},
    }


def _seeded_sampler(seed: int, rows: int, temperature: float, device: str):
    """A logits processor that samples each row from its own generator seeded ``seed`` and leaves only the drawn
    token: transformers' own warpers (temperature, top-k 20, top-p 0.9, in generate's order) and
    ``torch.multinomial``, as one sampled ``generate`` after ``torch.manual_seed(seed)`` does for one answer."""
    import torch
    from transformers import LogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = [TemperatureLogitsWarper(temperature), TopKLogitsWarper(TOP_K), TopPLogitsWarper(TOP_P)]
    gens = [torch.Generator(device=device).manual_seed(seed) for _ in range(rows)]

    class _Sampler(LogitsProcessor):
        def __call__(self, input_ids, scores):
            for w in warpers:
                scores = w(input_ids, scores)
            probs = torch.nn.functional.softmax(scores, dim=-1)
            picked = torch.cat(
                [torch.multinomial(probs[r : r + 1], 1, generator=gens[r]) for r in range(rows)]
            )
            out = torch.full_like(scores, -math.inf)
            return out.scatter_(1, picked, 0.0)

    return _Sampler()


__all__ = [
    "EDITSCORE_PACKAGE",
    "AnswerError",
    "Ask",
    "EditScoreResult",
    "EditScoreScorer",
    "PassScores",
    "answer_scores",
    "chat_text",
    "parse_answer",
    "pass_scores",
    "pq_prompt",
    "reduce_passes",
    "sc_prompt",
]
