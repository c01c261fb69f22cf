"""EditReward (Wu et al., 2025): a Qwen2.5-VL (or MiMo-VL, the same architecture) editing reward model, re-implemented on
transformers 5's ``Qwen2_5_VLModel`` from the authors' inference code (github TIGER-AI-Lab/EditReward at commit
edb027e: ``EditReward/inference_edit.py``, ``model/qwen2_5_vl_trainer.py``, ``dataset/prompts.py``).

The checkpoint is the authors' ``model.safetensors`` (or ``model.pth``): a flat state dict of their
``Qwen2_5_VLRewardModelBT_MultiHead`` in the transformers 4.57 key layout, which transformers 5 shares
(``model.visual.*``, ``model.language_model.*``, ``lm_head.weight`` (dropped), ``rm_heads.head_{0,1}.{0,3,5}.*``).
The base model folder (``base_model=``) gives the config, tokenizer and processor, as their yaml's
``model_name_or_path`` does.

Their scoring (``rm_head_type="ranknet_multi_head"``, ``pooling_strategy="mean"``, the shipped configs), kept:

- one conversation per head, each with the source image, the edited image (both resized to exactly
  256 * 28 * 28 pixels, as HPSv3 does) and a text: head 0 gets the instruction-following prompt, head 1 the
  visual-quality prompt, each followed by the ``<|Reward|>`` line (a special token added to the tokenizer, so
  the checkpoint's embeddings have one row more than the base tokenizer);
- each head (Linear-ReLU-Dropout-Linear-ReLU-Linear, float32) reads the hidden state at ``<|Reward|>`` and gives
  (mu, log sigma); the two heads' outputs are averaged; the score is the averaged mu;
- no position ids are passed, so the language model gets plain 1-D positions from the attention mask's cumulative
  sum (what transformers 4.57 computes without ``input_ids``), not Qwen2.5-VL's 3-D M-RoPE positions.

Checked against the authors' code: ``scripts/make_editreward_parity_fixtures.py`` runs their
``EditRewardInferencer`` (commit edb027e, transformers 4.57.0, trl 0.8.6) on a tiny random checkpoint of their
``Qwen2_5_VLRewardModelBT_MultiHead``; ``tests/test_reward_parity.py`` finds the same final score, log sigma and
per-head (mu, log sigma) to 1e-5 (measured: 6e-7), one by one and batched. The hub checkpoints
(``TIGER-Lab/EditReward-Qwen2.5-VL-7B``, ``TIGER-Lab/EditReward-MiMo-VL-7B-SFT-2508``) hold one flat state dict at
the repository root, the layout upstream reads (a folder's ``model.pth`` first, then ``model.safetensors``).
"""

from __future__ import annotations

from typing import Any

from lmms_eval_autorater.baselines import (
    CheckpointError,
    empty_cuda_cache,
    load_into_meta_model,
    load_state_dict,
    open_image,
    pick_device,
    pick_dtype,
    resolve_dir,
    resolve_file,
)
from lmms_eval_autorater.baselines.hpsv3 import BASE_MODEL_FILES, REWARD_TOKEN, resize_image
from lmms_eval_autorater.catalog.models import EDITREWARD_BASE_MODEL, EDITREWARD_CHECKPOINT

# the authors' prompts (EditReward/dataset/prompts.py and data_collator_qwen_edit.py), verbatim
INSTRUCTION_EDIT_FOLLOWING = """
You are tasked with evaluating an edited image **in comparison with the original source image** based on **Instruction Following & Semantic Fidelity**, and assigning a score from 1 to 4, with 1 being the worst and 4 being the best.  
This dimension focuses on how accurately, completely, and exclusively the model executed the given text instruction.

**Inputs Provided:**  
- Source Image (before editing)  
- Edited Image (after applying the instruction)  
- Text Instruction  

**Sub-Dimensions to Evaluate:**

- **Semantic Accuracy:**  
  Assess whether the edited content accurately captures the semantics of the instruction. The edited result should precisely match the intended meaning. For example, if the instruction is "replace apples with oranges," the object must clearly be oranges, not other fruits.

- **Completeness of Editing:**  
  Check whether **all parts** of the instruction are fully executed. For multi-step edits (e.g., "replace a red car with a blue bicycle"), both the color change and the object replacement must be done without omissions.

- **Exclusivity of Edit (No Over-Editing):**  
  Ensure that only the requested parts are changed. The rest of the image (as seen in the source) should remain unaltered. For example, if the instruction only involves replacing an object, the background, lighting, and unrelated objects should not be unnecessarily modified.

**Scoring Criteria:**
- **4 (Very Good):** Perfectly accurate, complete, and exclusive execution of the instruction.  
- **3 (Relatively Good):** Largely correct, but with minor omissions or slight over-editing.  
- **2 (Relatively Poor):** Major misinterpretation, incomplete edits, or noticeable unintended changes.  
- **1 (Very Poor):** Instruction ignored or completely wrong execution.

Text instruction - {text_prompt}
"""  # noqa: W291, E501 (upstream's trailing spaces and long lines are part of the prompt)
INSTRUCTION_EDIT_QUALITY = """
You are tasked with evaluating an edited image **in comparison with the original source image** based on **Visual Quality & Realism**, and assigning a score from 1 to 4, with 1 being the worst and 4 being the best.  
This dimension focuses on how realistic, artifact-free, and aesthetically appealing the edited image is, while remaining consistent with the source image.

**Inputs Provided:**  
- Source Image (before editing)  
- Edited Image (after applying the instruction)  
- Text Instruction  

**Sub-Dimensions to Evaluate:**

- **Plausibility & Physical Consistency:**  
  Check whether the edit aligns with the laws of physics and the scene context. Lighting, shadows, reflections, perspective, size, and interactions with the environment should all appear natural compared to the source image.

- **Artifact-Free Quality:**  
  Look for technical flaws such as blur, distortions, pixel misalignment, unnatural textures, or seams around edited regions. High-quality results should be free from such visible artifacts.

- **Aesthetic Quality:**  
  Evaluate the overall harmony and visual appeal. The image should look natural, balanced, and pleasant. Colors, composition, and atmosphere should enhance the image rather than degrade it.

**Scoring Criteria:**
- **4 (Very Good):** Perfectly realistic, artifact-free, seamless, and aesthetically pleasing.  
- **3 (Relatively Good):** Mostly realistic and clean, with only minor flaws that do not significantly distract.  
- **2 (Relatively Poor):** Noticeable physical inconsistencies or visible artifacts that make the edit unnatural.  
- **1 (Very Poor):** Severe artifacts, incoherent composition, or visually unusable result.

Text instruction - {text_prompt}
"""  # noqa: W291, E501 (upstream's trailing spaces and long lines are part of the prompt)
REWARD_SUFFIX = """
Please provide the overall ratings of this image: <|Reward|>

END
"""
#: head i reads the conversation built with HEAD_PROMPTS[i]
HEAD_PROMPTS = (INSTRUCTION_EDIT_FOLLOWING, INSTRUCTION_EDIT_QUALITY)
_HEAD_LAYERS = (0, 3, 5)


def build_prompt_texts(instruction: str) -> tuple[str, ...]:
    """The text of each head's conversation: its instruction prompt with ``instruction``, then the reward line."""
    return tuple(p.format(text_prompt=instruction) + REWARD_SUFFIX for p in HEAD_PROMPTS)


def _build_module(config, head_dims: list[list[tuple[int, int]]]):
    import torch
    from transformers import Qwen2_5_VLModel

    def head(dims):
        (i0, o0), (i1, o1), (i2, o2) = dims
        return torch.nn.Sequential(
            torch.nn.Linear(i0, o0),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.05),
            torch.nn.Linear(i1, o1),
            torch.nn.ReLU(),
            torch.nn.Linear(i2, o2),
        )

    class _EditRewardModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = Qwen2_5_VLModel(config)
            self.rm_heads = torch.nn.ModuleDict({f"head_{i}": head(d) for i, d in enumerate(head_dims)})

    with torch.device("meta"):
        return _EditRewardModule()


class EditRewardScorer:
    """EditReward per (instruction, source image, edited image): the two heads' mean mu, higher is better."""

    def __init__(
        self,
        checkpoint: str = EDITREWARD_CHECKPOINT,
        base_model: str = EDITREWARD_BASE_MODEL,
        device: str | None = None,
        batch_size: int = 2,
        local_files_only: bool | None = None,
        dtype: str | None = None,
        attn_implementation: str = "sdpa",
    ) -> None:
        self.checkpoint = str(checkpoint)
        self.base_model = str(base_model)
        self.device_arg = device
        self.batch_size = max(1, int(batch_size))
        self.local_files_only = local_files_only
        self.dtype_arg = dtype
        self.attn_implementation = attn_implementation
        self.model = None

    def _checkpoint_file(self):
        """The checkpoint file: as upstream's ``EditRewardInferencer``, a folder's ``model.pth`` wins over its
        ``model.safetensors``; a hub id (both released repos hold a root ``model.safetensors``) is asked for
        ``model.safetensors``, then ``model.pth``."""
        from pathlib import Path

        folder = Path(self.checkpoint).expanduser()
        if folder.is_dir() and (folder / "model.pth").is_file():
            return folder / "model.pth"
        try:
            return resolve_file(
                self.checkpoint,
                "model.safetensors",
                local_files_only=self.local_files_only,
                what="EditReward checkpoint",
            )
        except CheckpointError as first:
            try:
                return resolve_file(
                    self.checkpoint,
                    "model.pth",
                    local_files_only=self.local_files_only,
                    what="EditReward checkpoint",
                )
            except CheckpointError:
                raise first from None

    def load(self) -> EditRewardScorer:
        """Resolve files and load the model now (otherwise done on first ``score``)."""
        if self.model is not None:
            return self
        from transformers import AutoConfig, AutoProcessor

        ckpt = self._checkpoint_file()
        base = resolve_dir(
            self.base_model,
            local_files_only=self.local_files_only,
            what="EditReward base model",
            allow_patterns=BASE_MODEL_FILES,
            arg="base_model",
        )
        sd = load_state_dict(ckpt, what="EditReward checkpoint")
        sd.pop("lm_head.weight", None)
        heads = sorted({k.split(".")[1] for k in sd if k.startswith("rm_heads.")})
        if heads != ["head_0", "head_1"]:
            raise CheckpointError(
                f"EditReward checkpoint {ckpt}: rm_heads {heads} are not the two heads of ranknet_multi_head "
                "(head_0: instruction following, head_1: visual quality)"
            )
        head_dims = []
        for h in heads:
            keys = {k for k in sd if k.startswith(f"rm_heads.{h}.")}
            want = {f"rm_heads.{h}.{i}.{p}" for i in _HEAD_LAYERS for p in ("weight", "bias")}
            if keys != want:
                raise CheckpointError(
                    f"EditReward checkpoint {ckpt}: {h} keys {sorted(keys)} are not {sorted(want)}"
                )
            head_dims.append([tuple(reversed(sd[f"rm_heads.{h}.{i}.weight"].shape)) for i in _HEAD_LAYERS])
        embed = sd.get("model.language_model.embed_tokens.weight")
        if embed is None:
            raise CheckpointError(
                f"EditReward checkpoint {ckpt}: no model.language_model.embed_tokens.weight "
                "(expected the transformers 4.57 key layout of Qwen2_5_VLForConditionalGeneration)"
            )
        try:
            config = AutoConfig.from_pretrained(base)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"EditReward base model: cannot read the config in {base}: {exc}") from exc
        if config.model_type != "qwen2_5_vl":
            raise CheckpointError(
                f"EditReward base model {base}: model_type {config.model_type!r}, not qwen2_5_vl"
            )
        text_cfg = getattr(config, "text_config", config)
        text_cfg.vocab_size = embed.shape[
            0
        ]  # resized to the tokenizer + <|Reward|>: the checkpoint's rows rule
        for c in (config, text_cfg, config.vision_config):
            c._attn_implementation = self.attn_implementation

        processor = AutoProcessor.from_pretrained(base, local_files_only=True)
        tok = processor.tokenizer
        if REWARD_TOKEN not in tok.get_vocab():
            tok.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
        self.reward_token_id = tok.convert_tokens_to_ids(REWARD_TOKEN)
        if self.reward_token_id != embed.shape[0] - 1:
            raise CheckpointError(
                f"EditReward: {REWARD_TOKEN} gets id {self.reward_token_id} from the tokenizer of {self.base_model}, "
                f"but the checkpoint has {embed.shape[0]} embedding rows (expected id {embed.shape[0] - 1}): "
                "wrong base model?"
            )
        self.device = pick_device(self.device_arg)
        self.dtype = pick_dtype(self.device, self.dtype_arg)
        module = _build_module(config, head_dims)
        load_into_meta_model(
            module,
            sd,
            self.device,
            self.dtype,
            keep_float32=("rm_heads.",),
            what=f"EditReward checkpoint {ckpt}",
        )
        self.model = module.eval()
        self.processor = processor
        return self

    def release(self) -> None:
        """Free the model and its device memory."""
        self.model = None
        empty_cuda_cache()

    def score(self, instructions: list[str], sources: list[Any], images: list[Any]) -> list[float]:
        """One reward per (instruction, source image, edited image); images are PIL images or reference strings."""
        return [d["score"] for d in self.score_details(instructions, sources, images)]

    def score_details(self, instructions: list[str], sources: list[Any], images: list[Any]) -> list[dict]:
        """Per edit: ``score`` and ``log_sigma`` (the heads' mean, as upstream pools them) and ``heads``, each
        head's (mu, log sigma) (head 0: instruction following, head 1: visual quality)."""
        if not (len(instructions) == len(sources) == len(images)):
            raise ValueError(
                f"{len(instructions)} instructions, {len(sources)} sources, {len(images)} edited images: "
                "give one of each per edit"
            )
        self.load()
        out: list[dict] = []
        for start in range(0, len(images), self.batch_size):
            sl = slice(start, start + self.batch_size)
            out.extend(self._score_batch(instructions[sl], sources[sl], images[sl]))
        return out

    def _head_outputs(self, head: int, texts: list[str], pil: list) -> Any:
        import torch

        conversations = [
            [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": t}]}]
            for t in texts
        ]
        chat = [
            self.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        batch = self.processor(text=chat, images=pil, padding=True, return_tensors="pt")
        input_ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        is_reward = input_ids == self.reward_token_id
        if (is_reward.sum(-1) == 0).any():
            raise ValueError(f"{REWARD_TOKEN} missing from a tokenised prompt (truncated?)")
        # the template's own token is the last one (an instruction could contain the text "<|Reward|>" too)
        pos = input_ids.shape[1] - 1 - is_reward.flip(-1).int().argmax(-1)
        # upstream passes no positions and no input ids: 1-D positions from the mask, the same on every rope axis
        position_ids = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
        position_ids = position_ids.unsqueeze(0).expand(3, -1, -1)
        with torch.inference_mode():
            hidden = self.model.model(
                input_ids=input_ids,
                attention_mask=mask,
                pixel_values=batch["pixel_values"].to(self.device, self.dtype),
                image_grid_thw=batch["image_grid_thw"].to(self.device),
                position_ids=position_ids,
                use_cache=False,
            ).last_hidden_state
            picked = hidden[torch.arange(hidden.shape[0], device=self.device), pos].float()
            return self.model.rm_heads[f"head_{head}"](picked)

    def _score_batch(self, instructions: list[str], sources: list[Any], images: list[Any]) -> list[dict]:
        import torch

        pil = []
        for src, img in zip(sources, images):  # per conversation: source first, then the edited image
            pil += [resize_image(open_image(src)), resize_image(open_image(img))]
        texts = [build_prompt_texts(i) for i in instructions]
        per_head = torch.stack(
            [self._head_outputs(h, [t[h] for t in texts], pil) for h in range(len(HEAD_PROMPTS))]
        ).cpu()  # [heads, B, 2] = (mu, log sigma)
        mean = per_head.mean(0)  # pooling_strategy "mean"
        return [
            {
                "score": float(mean[b, 0]),
                "log_sigma": float(mean[b, 1]),
                "heads": [[float(v) for v in per_head[h, b]] for h in range(per_head.shape[0])],
            }
            for b in range(mean.shape[0])
        ]


__all__ = ["EditRewardScorer", "build_prompt_texts"]
