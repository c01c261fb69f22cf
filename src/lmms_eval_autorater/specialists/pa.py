"""PA: PAL4VST perceptual-artifact ratio = fraction of pixels segmented as artifact (class 1).

PAL4VST (Zhang et al., ICCV 2023) is an mmseg UperNet on a Swin backbone, trained on 512x512
crops. Two ways to run the released "unified" checkpoint:

* Path A (``pa_model`` = hub id or folder in HF format): transformers
  ``UperNetForSemanticSegmentation`` with a Swin backbone, made from the mmseg ``.pth`` with
  ``python -m lmms_eval_autorater.specialists.pa convert --checkpoint <mmseg .pth> --out <folder>``.
* Path B (``pa_model`` ends with ``.pt``): ``torch.jit.load`` of the released TorchScript
  ``end2end.pt`` (mmdeploy export; static 1x3x512x512 input, batch 1, outputs the argmax label map).

Preprocessing, as in the release's ``pipeline.json``/``test_torchscript.py``: RGB, resized to
512x512 without keeping the aspect ratio (bilinear, as mmseg's Resize), normalised with the ImageNet
mean/std in 0..255 units (123.675, 116.28, 103.53 / 58.395, 57.12, 57.375). The ratio is taken on the
512x512 mask. The default ``pal4vst-unified`` looks for either form under
``default_cache_dir()/pal4vst/swin-large_upernet_unified_512x512/``.

Backbone: PAL4VST's config ``swin-large_upernet_unified_512x512.py`` sets embed_dims=128,
depths (2, 2, 18, 2), heads (4, 8, 16, 32), window 12 (Swin-B sizes despite the file name);
the converter does not trust this and reads every size from the checkpoint's tensors.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from lmms_eval_autorater.images import load_image
from lmms_eval_autorater.kvstore import default_cache_dir
from lmms_eval_autorater.specialists.base import Specialist, SpecialistInput, missing_dependency
from lmms_eval_autorater.specialists.registry import SPECS
from lmms_eval_autorater.specialists.types import Assessment

RESOLUTION = 512
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
ARTIFACT_CLASS = 1
DEFAULT_ALIAS = "pal4vst-unified"
DEFAULT_DIR_NAME = "swin-large_upernet_unified_512x512"
#: the backbone PAL4VST's config declares; the converter compares the checkpoint against it and warns on mismatch
PAL4VST_SWIN = {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "window_size": 12}

# --- mmseg -> HF key map ------------------------------------------------------------------------
# (mmseg regex, HF template). Tensors are copied unchanged except:
#   * attn.w_msa.qkv (3C x C) is split into attention.q_proj / k_proj / v_proj (thirds, in q, k, v order);
#   * downsample.reduction / downsample.norm are re-ordered: mmseg's PatchMerging gathers the 2x2
#     neighbourhood with nn.Unfold (channel = c*4 + kernel position, positions row-major
#     (0,0),(0,1),(1,0),(1,1)) while HF concatenates the quadrants (0,0),(1,0),(0,1),(1,1) as whole
#     C-blocks (channel = quadrant*C + c);
#   * attn.w_msa.relative_position_index is dropped (HF recomputes it; same indexing).
# HF's backbone.swin.layernorm is not part of the backbone's forward and stays at its identity init.
_SWIN_BLOCK = r"backbone\.stages\.(\d+)\.blocks\.(\d+)\."
_HF_BLOCK = r"backbone.swin.encoder.layers.\1.blocks.\2."
_CONV_MODULE = r"((?:psp_modules\.\d+\.1)|bottleneck|lateral_convs\.\d+|fpn_convs\.\d+|fpn_bottleneck|convs\.\d+|conv_cat)"
KEY_MAP: list[tuple[str, str]] = [
    (r"backbone\.patch_embed\.projection\.", "backbone.swin.embeddings.patch_embeddings.projection."),
    (r"backbone\.patch_embed\.norm\.", "backbone.swin.embeddings.norm."),
    (_SWIN_BLOCK + r"norm1\.", _HF_BLOCK + "layernorm_before."),
    (_SWIN_BLOCK + r"norm2\.", _HF_BLOCK + "layernorm_after."),
    (
        _SWIN_BLOCK + r"attn\.w_msa\.relative_position_bias_table$",
        _HF_BLOCK + "attention.relative_position_bias.relative_position_bias_table",
    ),
    (_SWIN_BLOCK + r"attn\.w_msa\.proj\.", _HF_BLOCK + "attention.o_proj."),
    (_SWIN_BLOCK + r"ffn\.layers\.0\.0\.", _HF_BLOCK + "mlp.fc1."),
    (_SWIN_BLOCK + r"ffn\.layers\.1\.", _HF_BLOCK + "mlp.fc2."),
    (r"backbone\.stages\.(\d+)\.downsample\.", r"backbone.swin.encoder.layers.\1.downsample."),
    (r"backbone\.norm(\d)\.", None),  # -> backbone.hidden_states_norms.stage{i+1}. (handled in code)
    (r"(decode_head|auxiliary_head)\.conv_seg\.", r"\1.classifier."),
    (r"(decode_head|auxiliary_head)\." + _CONV_MODULE + r"\.conv\.", r"\1.\2.conv."),
    (r"(decode_head|auxiliary_head)\." + _CONV_MODULE + r"\.bn\.", r"\1.\2.batch_norm."),
]
_QKV = re.compile(_SWIN_BLOCK + r"attn\.w_msa\.qkv\.(weight|bias)$")
_REL_INDEX = re.compile(_SWIN_BLOCK + r"attn\.w_msa\.relative_position_index$")
_UNFOLD_PERM = [0, 2, 1, 3]  # unfold kernel position <-> HF quadrant (a self-inverse permutation)


def _unfold_to_quadrant(t, *, inverse: bool = False):
    """Re-order a PatchMerging tensor between mmseg (unfold) and HF (quadrant) channel layouts."""
    if t.ndim == 2:  # reduction weight (out, 4C)
        out, n = t.shape
        if not inverse:  # mmseg (out, C, 4) -> HF (out, 4, C)
            return t.reshape(out, n // 4, 4).transpose(1, 2)[:, _UNFOLD_PERM, :].reshape(out, n)
        return t.reshape(out, 4, n // 4)[:, _UNFOLD_PERM, :].transpose(1, 2).reshape(out, n)
    n = t.shape[0]  # norm weight/bias (4C,)
    if not inverse:
        return t.reshape(n // 4, 4).transpose(0, 1)[_UNFOLD_PERM, :].reshape(n)
    return t.reshape(4, n // 4)[_UNFOLD_PERM, :].transpose(0, 1).reshape(n)


def _strip_prefix(state_dict: dict) -> dict:
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def mmseg_to_hf_state_dict(state_dict: dict) -> dict:
    """Rename (and split/re-order where needed) an mmseg UperNet+Swin state dict into HF names."""
    sd = _strip_prefix(state_dict)
    out: dict = {}
    unmapped = []
    for key, value in sd.items():
        if _REL_INDEX.match(key):
            continue
        m = _QKV.match(key)
        if m:
            q, k, v = value.chunk(3, dim=0)
            base = f"backbone.swin.encoder.layers.{m.group(1)}.blocks.{m.group(2)}.attention."
            for name, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                out[f"{base}{name}.{m.group(3)}"] = part.clone()
            continue
        for pattern, template in KEY_MAP:
            if re.match(pattern, key):
                if template is None:
                    i = int(re.match(pattern, key).group(1))
                    new = re.sub(pattern, f"backbone.hidden_states_norms.stage{i + 1}.", key)
                else:
                    new = re.sub(pattern, template, key)
                if ".downsample." in key and (".reduction." in key or ".norm." in key):
                    value = _unfold_to_quadrant(value)
                out[new] = value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise ValueError(
            f"mmseg checkpoint has {len(unmapped)} key(s) with no HF counterpart, e.g. {unmapped[:5]}"
        )
    return out


def hf_to_mmseg_state_dict(state_dict: dict) -> dict:
    """The inverse map (HF -> mmseg names and layouts); used to test the converter and to document it."""
    out: dict = {}
    qkv: dict[str, dict[str, object]] = {}
    blk = r"backbone\.swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\."
    mm_blk = r"backbone.stages.\1.blocks.\2."
    inverse = [
        (r"backbone\.swin\.embeddings\.patch_embeddings\.projection\.", "backbone.patch_embed.projection."),
        (r"backbone\.swin\.embeddings\.norm\.", "backbone.patch_embed.norm."),
        (blk + r"layernorm_before\.", mm_blk + "norm1."),
        (blk + r"layernorm_after\.", mm_blk + "norm2."),
        (
            blk + r"attention\.relative_position_bias\.relative_position_bias_table$",
            mm_blk + "attn.w_msa.relative_position_bias_table",
        ),
        (blk + r"attention\.o_proj\.", mm_blk + "attn.w_msa.proj."),
        (blk + r"mlp\.fc1\.", mm_blk + "ffn.layers.0.0."),
        (blk + r"mlp\.fc2\.", mm_blk + "ffn.layers.1."),
        (r"backbone\.swin\.encoder\.layers\.(\d+)\.downsample\.", r"backbone.stages.\1.downsample."),
        (r"(decode_head|auxiliary_head)\.classifier\.", r"\1.conv_seg."),
        (r"(decode_head|auxiliary_head)\." + _CONV_MODULE + r"\.conv\.", r"\1.\2.conv."),
        (r"(decode_head|auxiliary_head)\." + _CONV_MODULE + r"\.batch_norm\.", r"\1.\2.bn."),
    ]
    for key, value in state_dict.items():
        if key.startswith("backbone.swin.layernorm."):
            continue
        m = re.match(blk + r"attention\.(q_proj|k_proj|v_proj)\.(weight|bias)$", key)
        if m:
            qkv.setdefault(
                f"backbone.stages.{m.group(1)}.blocks.{m.group(2)}.attn.w_msa.qkv.{m.group(4)}", {}
            )[m.group(3)] = value
            continue
        m = re.match(r"backbone\.hidden_states_norms\.stage(\d)\.", key)
        if m:
            out[
                re.sub(
                    r"backbone\.hidden_states_norms\.stage(\d)\.", f"backbone.norm{int(m.group(1)) - 1}.", key
                )
            ] = value
            continue
        for pattern, template in inverse:
            if re.match(pattern, key):
                if ".downsample." in key:
                    value = _unfold_to_quadrant(value, inverse=True)
                out[re.sub(pattern, template, key)] = value
                break
        else:
            raise ValueError(f"HF key {key!r} has no mmseg counterpart")
    import torch

    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]], dim=0)
    return out


def infer_upernet_config(state_dict: dict, pool_scales: tuple[int, ...] = (1, 2, 3, 6)):
    """Build the ``UperNetConfig`` (Swin backbone) whose sizes match the mmseg checkpoint's tensors."""
    from transformers import SwinConfig, UperNetConfig

    sd = _strip_prefix(state_dict)
    proj = sd["backbone.patch_embed.projection.weight"]
    embed_dim, in_chans, patch, _ = proj.shape
    stages = sorted({int(m.group(1)) for k in sd if (m := re.match(r"backbone\.stages\.(\d+)\.", k))})
    depths, heads, windows, ratios = [], [], [], []
    for s in stages:
        blocks = {
            int(m.group(1)) for k in sd if (m := re.match(rf"backbone\.stages\.{s}\.blocks\.(\d+)\.", k))
        }
        depths.append(len(blocks))
        table = sd[f"backbone.stages.{s}.blocks.0.attn.w_msa.relative_position_bias_table"]
        heads.append(int(table.shape[1]))
        side = int(round(math.sqrt(table.shape[0])))
        if side * side != table.shape[0]:
            raise ValueError(f"stage {s}: relative position table of {table.shape[0]} rows is not square")
        windows.append((side + 1) // 2)
        dim = embed_dim * 2**s
        ratios.append(sd[f"backbone.stages.{s}.blocks.0.ffn.layers.0.0.weight"].shape[0] / dim)
    if len(set(windows)) != 1 or len(set(ratios)) != 1:
        raise ValueError(f"stages disagree on window size {windows} or mlp ratio {ratios}")
    if "backbone.absolute_pos_embed" in sd:
        raise NotImplementedError("checkpoints with an absolute position embedding are not supported")
    qkv_bias = "backbone.stages.0.blocks.0.attn.w_msa.qkv.bias" in sd
    n_psp = len({k.split(".")[2] for k in sd if k.startswith("decode_head.psp_modules.")})
    if n_psp != len(pool_scales):
        raise ValueError(f"checkpoint has {n_psp} pyramid pooling branches but pool_scales={pool_scales}")
    backbone = SwinConfig(
        image_size=RESOLUTION,
        patch_size=int(patch),
        num_channels=int(in_chans),
        embed_dim=int(embed_dim),
        depths=depths,
        num_heads=heads,
        window_size=windows[0],
        mlp_ratio=float(ratios[0]),
        qkv_bias=qkv_bias,
        use_absolute_embeddings=False,
        out_features=[f"stage{i + 1}" for i in range(len(stages))],
    )
    classifier = sd["decode_head.conv_seg.weight"]
    aux = [k for k in sd if k.startswith("auxiliary_head.")]
    kwargs = {}
    if aux:
        aux_conv = sd["auxiliary_head.convs.0.conv.weight"]
        kwargs = dict(
            auxiliary_in_channels=int(aux_conv.shape[1]),
            auxiliary_channels=int(aux_conv.shape[0]),
            auxiliary_num_convs=len({k.split(".")[2] for k in aux if k.startswith("auxiliary_head.convs.")}),
            auxiliary_concat_input=any(k.startswith("auxiliary_head.conv_cat.") for k in aux),
        )
    return UperNetConfig(
        backbone_config=backbone,
        hidden_size=int(sd["decode_head.bottleneck.conv.weight"].shape[0]),
        num_labels=int(classifier.shape[0]),
        pool_scales=list(pool_scales),
        use_auxiliary_head=bool(aux),
        id2label={0: "normal", 1: "artifact"} if classifier.shape[0] == 2 else None,
        **kwargs,
    )


def describe_backbone(config) -> dict:
    """The Swin sizes of an UperNet config, for logs and comparison with ``PAL4VST_SWIN``."""
    b = config.backbone_config
    return {
        "embed_dim": b.embed_dim,
        "depths": list(b.depths),
        "num_heads": list(b.num_heads),
        "window_size": b.window_size,
    }


def load_mmseg_checkpoint(path: str | Path, trust: bool = False) -> dict:
    """Read an mmseg ``.pth`` (tensors only unless ``trust``: full unpickling runs code from the file)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError and others
        if not trust:
            raise ValueError(
                f"{path}: not loadable with weights_only=True ({exc}); if you trust the file, rerun with "
                "--trust-checkpoint"
            ) from exc
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return _strip_prefix(ckpt)


def convert_checkpoint(checkpoint: str | Path, out: str | Path, trust: bool = False) -> dict:
    """Convert an mmseg PAL4VST checkpoint to an HF folder; returns the backbone sizes read from it."""
    from transformers import UperNetForSemanticSegmentation

    sd = load_mmseg_checkpoint(checkpoint, trust=trust)
    config = infer_upernet_config(sd)
    hf_sd = mmseg_to_hf_state_dict(sd)
    model = UperNetForSemanticSegmentation(config)
    missing, unexpected = model.load_state_dict(hf_sd, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.swin.layernorm.")]
    if missing or unexpected:
        raise ValueError(f"conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.save_pretrained(out)
    return describe_backbone(config)


# --- the specialist -------------------------------------------------------------------------------


def default_location() -> Path:
    """Where ``pa_model=pal4vst-unified`` is looked for."""
    return default_cache_dir() / "pal4vst" / DEFAULT_DIR_NAME


def resolve_model(name: str) -> tuple[str, str]:
    """(kind, location): kind "torchscript" for a ``.pt`` file, "hf" for a folder or hub id."""
    if name == DEFAULT_ALIAS:
        folder = default_location()
        if (folder / "config.json").is_file():
            return "hf", str(folder)
        if (folder / "end2end.pt").is_file():
            return "torchscript", str(folder / "end2end.pt")
        raise FileNotFoundError(
            f"PAL4VST weights not found under {folder}. Download the released TorchScript end2end.pt "
            "(https://github.com/owenzlz/PAL4VST, 'unified' checkpoint) into that folder, or convert the "
            f"mmseg .pth with: python -m lmms_eval_autorater.specialists.pa convert --checkpoint <pth> --out {folder}; "
            "or pass pa_model=<path to end2end.pt | HF folder | hub id>"
        )
    if name.endswith(".pt"):
        return "torchscript", name
    return "hf", name


class PAL4VST(Specialist):
    """Artifact ratio from PAL4VST, through an HF UperNet (batched) or the released TorchScript (one by one)."""

    spec = SPECS["PA"]

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        local_files_only: bool | None = None,
        batch_size: int = 4,
        resolution: int = RESOLUTION,
        artifact_class: int = ARTIFACT_CLASS,
    ) -> None:
        super().__init__(model=model, device=device, local_files_only=local_files_only, batch_size=batch_size)
        self.resolution = int(resolution)
        self.artifact_class = int(artifact_class)
        self._model = None

    @property
    def version(self) -> str:
        return f"{super().version}:res={self.resolution}"

    def _load(self) -> None:
        try:
            import torch
        except ImportError as exc:
            raise missing_dependency("torch", self.spec.extra) from exc
        from lmms_eval_autorater.runtime import default_device

        self._device = default_device(self.device)
        self._kind, where = resolve_model(self.model_name)
        if self._kind == "torchscript":
            if not Path(where).is_file():
                raise FileNotFoundError(f"PAL4VST TorchScript file not found: {where}")
            self._model = torch.jit.load(where, map_location=self._device).eval()
            return
        try:
            from transformers import UperNetForSemanticSegmentation
        except ImportError as exc:
            raise missing_dependency("transformers", self.spec.extra) from exc
        # float32 everywhere: the model is small and the ratio is an argmax near a decision boundary
        self._model = (
            UperNetForSemanticSegmentation.from_pretrained(
                where, local_files_only=bool(self.local_files_only), dtype=torch.float32
            )
            .to(self._device)
            .eval()
        )

    def preprocess(self, ref: str):
        """One image as a normalised (1, 3, R, R) float tensor (RGB, resized without keeping aspect)."""
        import numpy as np
        import torch
        from PIL import Image

        img = load_image(ref, field="image").resize((self.resolution, self.resolution), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)
        mean = torch.tensor(MEAN).view(3, 1, 1)
        std = torch.tensor(STD).view(3, 1, 1)
        return ((x - mean) / std).unsqueeze(0)

    def _labels(self, out):
        """Label map (N, H, W) from logits (N, K, H, W) or an mmdeploy argmax map (N, 1, H, W) / (N, H, W)."""
        if hasattr(out, "logits"):
            out = out.logits
        elif isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim == 4 and out.shape[1] > 1:
            return out.argmax(dim=1)
        if out.ndim == 4:
            out = out[:, 0]
        return (out.round() if out.is_floating_point() else out).long()

    def _assess_batch(self, items: list[SpecialistInput]) -> list[Assessment]:
        import torch

        x = torch.cat([self.preprocess(it.image) for it in items]).to(self._device)
        with torch.inference_mode():
            if self._kind == "torchscript":  # the mmdeploy export is static, batch 1
                labels = torch.cat([self._labels(self._model(x[i : i + 1])) for i in range(len(items))])
            else:
                labels = self._labels(self._model(pixel_values=x))
        ratios = (labels == self.artifact_class).float().mean(dim=(1, 2)).cpu().tolist()
        return [Assessment(code="PA", value=float(r), version=self.version) for r in ratios]


def main(argv: list[str] | None = None) -> int:
    """CLI: ``convert --checkpoint <mmseg .pth> --out <folder>``."""
    parser = argparse.ArgumentParser(prog="python -m lmms_eval_autorater.specialists.pa")
    sub = parser.add_subparsers(dest="cmd", required=True)
    conv = sub.add_parser(
        "convert", help="convert an mmseg PAL4VST checkpoint to a transformers UperNet folder"
    )
    conv.add_argument(
        "--checkpoint", required=True, help="mmseg .pth (e.g. PAL4VST's unified pytorch checkpoint)"
    )
    conv.add_argument("--out", required=True, help="output folder (pass it as pa_model=...)")
    conv.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling if the file holds more than tensors (runs code from the file)",
    )
    args = parser.parse_args(argv)
    sizes = convert_checkpoint(args.checkpoint, args.out, trust=args.trust_checkpoint)
    print(f"backbone read from the checkpoint: {sizes}")
    if sizes != PAL4VST_SWIN:
        print(f"note: differs from PAL4VST's released config {PAL4VST_SWIN}", file=sys.stderr)
    print(f"saved to {args.out}; use pa_model={args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
