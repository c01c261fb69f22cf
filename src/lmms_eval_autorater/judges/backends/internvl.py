"""Local InternVL judge backend on transformers' native ``InternVLForConditionalGeneration`` (``-hf`` checkpoints).

Greedy, batched with left padding, one process per GPU under ``accelerate launch`` (data parallel: each rank
loads its own copy on ``cuda:{LOCAL_RANK}``; the lmms-eval wrapper shards the docs). Prompts with different
numbers of images share a batch: the processor flattens every image's tiles into one ``pixel_values`` tensor in
prompt order and the model scatters them onto the ``<IMG_CONTEXT>`` placeholders in the same order, so no
grouping by image count is needed (the test checks batched == unbatched on mixed 2- and 3-image prompts).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmms_eval_autorater import runtime
from lmms_eval_autorater.catalog.models import INTERNVL_CHECKPOINT
from lmms_eval_autorater.judges.types import BackendError, ChatImage, ChatPrompt, Completion
from lmms_eval_autorater.runtime import empty_cuda_cache, resolve_dtype

if TYPE_CHECKING:
    import torch

#: at most this many 448px tiles per image (plus a thumbnail) unless ``max_patches=`` says otherwise
DEFAULT_MAX_PATCHES = 6


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _file_identity(path: Path, chunk: int = 1 << 16) -> bytes:
    """Cheap identity of a (possibly huge) weight file: name, size, first and last 64 KiB."""
    size = path.stat().st_size
    h = hashlib.sha256(f"{path.name}:{size}".encode())
    with path.open("rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            h.update(f.read(chunk))
    return h.digest()


def chat_messages(prompt: ChatPrompt) -> tuple[list[dict], list[Any]]:
    """Chat messages (system, then one user turn interleaving ``{"type": "image"}`` and text parts) and the
    decoded PIL images in order: what the backend sends at inference and ``train`` trains on, one function."""
    from PIL import Image

    content: list[dict] = []
    images: list[Any] = []
    for part in prompt.parts:
        if isinstance(part, ChatImage):
            try:
                img = Image.open(io.BytesIO(part.data))
                img.load()
            except OSError as e:  # PIL's UnidentifiedImageError is an OSError
                raise BackendError(f"undecodable {part.mime} image: {e}") from e
            images.append(img.convert("RGB"))
            content.append({"type": "image"})
        else:
            content.append({"type": "text", "text": str(part)})
    messages: list[dict] = []
    if prompt.system:
        messages.append({"role": "system", "content": [{"type": "text", "text": prompt.system}]})
    messages.append({"role": "user", "content": content})
    return messages, images


#: alternatives kept per generated token (OpenAI's maximum, ``judges.logprobs.TOP_LOGPROBS``)
TOP_K = 20


def logprobs_from_steps(tok: Any, ids: list[int], top: list[tuple[list[float], list[int]]]) -> list:
    """OpenAI-shaped ``logprobs.content`` for generated ``ids`` from each step's top log-probabilities.

    Each token's text is what it adds to the decoded answer (decode of the tokens up to it minus decode of
    those before, so multi-byte and space-marker pieces spell the answer); an alternative's text is what it
    would have added after the previous token. Special tokens add nothing; the answer's outer whitespace
    (``strip()``) is trimmed from the first and last pieces, so the pieces spell the stripped answer."""

    def piece(before: list[int], token: int) -> str:
        head = tok.decode(before, skip_special_tokens=True)
        return tok.decode([*before, token], skip_special_tokens=True)[len(head) :]

    content = []
    for k, token in enumerate(ids):
        before = ids[max(0, k - 1) : k]
        vals, alts = top[k] if k < len(top) else ([], [])
        chosen_lp = next((v for v, a in zip(vals, alts) if a == token), None)
        content.append(
            {
                "token": piece(before, token),
                "logprob": chosen_lp if chosen_lp is not None else float("-inf"),
                "bytes": None,
                "top_logprobs": [
                    {"token": piece(before, a), "logprob": float(v), "bytes": None}
                    for v, a in zip(vals, alts)
                ],
            }
        )
    full = "".join(c["token"] for c in content)
    lead, trail = len(full) - len(full.lstrip()), len(full) - len(full.rstrip())
    for c in content:  # the whitespace that ``strip()`` removed from the text, trimmed from the pieces
        cut = min(lead, len(c["token"]))
        c["token"], lead = c["token"][cut:], lead - cut
    for c in reversed(content):
        cut = min(trail, len(c["token"]))
        c["token"], trail = c["token"][: len(c["token"]) - cut], trail - cut
    return content


def tiling_kwargs(
    crop_to_patches: bool | None = None,
    min_patches: int | None = None,
    max_patches: int | None = DEFAULT_MAX_PATCHES,
) -> dict[str, Any]:
    """The image processor settings that differ from the checkpoint's own (None keeps the processor's value):
    passed as ``images_kwargs`` at inference and set on ``processor.image_processor`` for training."""
    kw: dict[str, Any] = {}
    if crop_to_patches is not None:
        kw["crop_to_patches"] = crop_to_patches
    if min_patches is not None:
        kw["min_patches"] = min_patches
    if max_patches is not None:
        kw["max_patches"] = max_patches
    return kw


class InternVLBackend:
    """InternVL (``-hf``) judge backend: ``generate(list[ChatPrompt]) -> list[Completion]``, loaded lazily.

    Images are tiled by the GotOcr2 processor (``crop_to_patches``; ``None`` keeps the processor's default, on
    for InternVL) into at most ``max_patches`` 448px tiles plus a thumbnail, each ``image_seq_length`` tokens.
    ``json_schema`` on prompts is not enforced (no constrained decoding); the judge's parser validates the text.
    """

    def __init__(
        self,
        pretrained: str = INTERNVL_CHECKPOINT,
        device: str | None = None,
        dtype: str | Any = "auto",
        max_new_tokens: int = 1024,
        batch_size: int = 4,
        local_files_only: bool | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,
        crop_to_patches: bool | None = None,
        min_patches: int | None = None,
        max_patches: int | None = DEFAULT_MAX_PATCHES,
        revision: str | None = None,
        output_scores: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.pretrained = str(pretrained)
        self._device_arg = device
        self._dtype_arg = dtype
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self._local_files_only_arg = local_files_only
        self.trust_remote_code = trust_remote_code
        self.attn_implementation = attn_implementation
        self.crop_to_patches = crop_to_patches
        self.min_patches = min_patches
        self.max_patches = max_patches
        self.revision = revision
        #: ``scoring=expected``: keep the logits of the generation it makes (``output_scores``; no second
        #: pass) as OpenAI-shaped log-probabilities on each ``Completion``
        self.output_scores = bool(output_scores)
        self._last_top: list | None = None
        self._model: Any = None
        self._processor: Any = None
        self._device: str | None = None
        self._dtype: Any = None
        self._fingerprint: str | None = None

    # -- identity and placement -------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The hub id, or the folder name when ``pretrained`` is a local folder."""
        p = Path(self.pretrained)
        return p.resolve().name if p.is_dir() else self.pretrained

    @property
    def local_files_only(self) -> bool:
        """Explicit setting, else True when offline per env or when ``pretrained`` is an existing folder."""
        return runtime.local_files_only(self.pretrained, self._local_files_only_arg)

    @contextmanager
    def _checkpoint_errors(self) -> Iterator[None]:
        """A checkpoint missing from the local cache while the hub cannot be used: one line naming
        ``pretrained=`` and the local-folder alternative, instead of the loader's OSError."""
        try:
            yield
        except OSError as exc:
            if self.local_files_only and not Path(self.pretrained).expanduser().exists():
                raise runtime.checkpoint_unavailable(self.pretrained, "pretrained", "InternVL judge") from exc
            raise

    @property
    def rank(self) -> int:
        """Global rank of this process under ``accelerate launch``/torchrun (0 when alone)."""
        return _env_int("RANK", 0)

    @property
    def world_size(self) -> int:
        """Number of data-parallel processes (1 when alone)."""
        return max(1, _env_int("WORLD_SIZE", 1))

    @property
    def local_rank(self) -> int:
        """Rank on this host; picks the GPU when ``device`` is None."""
        return _env_int("LOCAL_RANK", 0)

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (False before the first ``generate`` and after ``release``)."""
        return self._model is not None

    @property
    def device(self) -> str:
        """Resolved device: the ``device`` arg, else ``cuda:{LOCAL_RANK}`` when CUDA is present, else ``cpu``."""
        if self._device is None:
            import torch

            if self._device_arg is not None:
                self._device = str(self._device_arg)
            elif torch.cuda.is_available():
                # modulo: a rank restricted by CUDA_VISIBLE_DEVICES to one GPU sees it as cuda:0
                self._device = f"cuda:{self.local_rank % max(1, torch.cuda.device_count())}"
            else:
                self._device = "cpu"
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """Resolved dtype (``runtime.resolve_dtype``): ``auto`` is bf16 on CUDA where supported (else fp16),
        float32 on CPU."""
        if self._dtype is None:
            self._dtype = resolve_dtype(self._dtype_arg, self.device)
        return self._dtype

    @property
    def fingerprint(self) -> str:
        """Short identity of config + weights: the hub commit when loaded from a snapshot, else a content hash."""
        if self._fingerprint is None:
            self._fingerprint = self._compute_fingerprint()
        return self._fingerprint

    def _compute_fingerprint(self) -> str:
        from transformers.utils.hub import cached_file, extract_commit_hash

        with self._checkpoint_errors():
            config_path = cached_file(
                self.pretrained, "config.json", local_files_only=self.local_files_only, revision=self.revision
            )
        commit = extract_commit_hash(config_path, None)
        if commit:
            return commit[:12]
        folder = Path(config_path).parent
        h = hashlib.sha256(Path(config_path).read_bytes())
        for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
            h.update(_file_identity(f))
        return "sha256:" + h.hexdigest()[:16]

    def gen_params(self) -> dict[str, Any]:
        """Every setting that changes this judge's answers (part of the response-cache key): numerics
        (dtype, device type, attention implementation), image tiling and generation settings."""
        return {
            "greedy": True,
            "max_new_tokens": self.max_new_tokens,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device_type": self.device.split(":")[0],
            "attn_implementation": self.attn_implementation,
            "crop_to_patches": self.crop_to_patches,
            "min_patches": self.min_patches,
            "max_patches": self.max_patches,
            "trust_remote_code": self.trust_remote_code,
            **({"output_scores": True} if self.output_scores else {}),
        }

    # -- lifecycle -------------------------------------------------------------------------------------

    def load(self) -> None:
        """Load processor and model now (``generate`` calls this on first use)."""
        if self._model is not None:
            return
        from transformers import AutoProcessor, InternVLForConditionalGeneration

        common = {
            "local_files_only": self.local_files_only,
            "trust_remote_code": self.trust_remote_code,
            "revision": self.revision,
        }
        with self._checkpoint_errors():
            processor = AutoProcessor.from_pretrained(self.pretrained, **common)
        processor.tokenizer.padding_side = "left"
        # device_map places the weights straight on this rank's device (no full CPU copy first)
        kwargs: dict[str, Any] = dict(common, dtype=self.dtype, device_map=self.device)
        if self.attn_implementation:
            kwargs["attn_implementation"] = self.attn_implementation
        model = InternVLForConditionalGeneration.from_pretrained(self.pretrained, **kwargs)
        model.eval()
        self._processor, self._model = processor, model
        if self._fingerprint is None:  # resolve now, while the files are known to be reachable
            self._fingerprint = self._compute_fingerprint()

    def release(self) -> None:
        """Drop the model and processor and return GPU memory (e.g. before loading another judge)."""
        self._model = None
        self._processor = None
        import gc

        gc.collect()
        empty_cuda_cache()

    # -- inference -------------------------------------------------------------------------------------

    @staticmethod
    def _messages(prompt: ChatPrompt) -> tuple[list[dict], list[Any]]:
        """Chat messages and decoded images of ``prompt`` (see ``chat_messages``, shared with training)."""
        return chat_messages(prompt)

    def _images_kwargs(self) -> dict[str, Any]:
        return tiling_kwargs(self.crop_to_patches, self.min_patches, self.max_patches)

    def build_inputs(self, prompts: list[ChatPrompt]) -> Any:
        """Tokenized, left-padded model inputs (a ``BatchFeature`` on CPU) for one batch of prompts."""
        self.load()
        proc = self._processor
        texts: list[str] = []
        images: list[Any] = []
        for prompt in prompts:
            messages, imgs = self._messages(prompt)
            texts.append(proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
            images.extend(imgs)
        kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
            kwargs["images_kwargs"] = self._images_kwargs()
        return proc(**kwargs)

    def _eos_ids(self) -> set[int]:
        eos = self._model.generation_config.eos_token_id
        if eos is None:
            eos = self._processor.tokenizer.eos_token_id
        if eos is None:
            return set()
        return {int(e) for e in eos} if isinstance(eos, (list, tuple)) else {int(eos)}

    def _generate_token_ids(self, prompts: list[ChatPrompt]) -> list[tuple[list[int], int]]:
        """Greedy new-token ids per prompt (cut after the first EOS, which is kept) and its prompt length;
        with ``output_scores`` the per-step log-softmax top alternatives land in ``self._last_top``."""
        import torch

        inputs = self.build_inputs(prompts).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        eos_ids = self._eos_ids()
        tok = self._processor.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else min(eos_ids, default=0)
        with torch.inference_mode():
            out = self._model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=pad_id,
                **({"output_scores": True, "return_dict_in_generate": True} if self.output_scores else {}),
            )
        self._last_top = None
        if self.output_scores:
            # per step: (top log-probabilities, their ids), [batch, k] each, from the logits of this generation
            steps = [torch.log_softmax(s.float(), dim=-1).topk(TOP_K, dim=-1) for s in out.scores]
            self._last_top = [(v.cpu().tolist(), i.cpu().tolist()) for v, i in steps]
            out = out.sequences
        prompt_len = inputs["input_ids"].shape[1]
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        result = []
        for row, n_prompt in zip(out[:, prompt_len:].tolist(), prompt_tokens, strict=True):
            stop = next((j for j, t in enumerate(row) if t in eos_ids), None)
            result.append((row if stop is None else row[: stop + 1], int(n_prompt)))
        return result

    def _generate_batch(self, prompts: list[ChatPrompt]) -> list[Completion]:
        results = self._generate_token_ids(prompts)
        tok = self._processor.tokenizer
        eos_ids = self._eos_ids()
        out = []
        for b, (ids, n_prompt) in enumerate(results):
            text = tok.decode(ids, skip_special_tokens=True).strip()
            top = None
            if self._last_top is not None:
                top = [(vals[b], idx[b]) for vals, idx in self._last_top[: len(ids)]]
            out.append(
                Completion(
                    text=text,
                    model=self.model_name,
                    fingerprint=self.fingerprint,
                    usage={"prompt_tokens": n_prompt, "completion_tokens": len(ids)},
                    finish_reason="stop" if ids and ids[-1] in eos_ids else "length",
                    logprobs=None if top is None else logprobs_from_steps(tok, ids, top),
                )
            )
        return out

    def generate(self, prompts: list[ChatPrompt]) -> list[Completion]:
        """Greedy completions for ``prompts`` in order, ``batch_size`` at a time; loads the model on first use."""
        results: list[Completion] = []
        for start in range(0, len(prompts), self.batch_size):
            results.extend(self._generate_batch(list(prompts[start : start + self.batch_size])))
        return results
