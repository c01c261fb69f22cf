"""The models as data: every lmms-eval model id of the plugin, what it is, and the facts about it.

The one place a model's identity is written (like ``tasks/catalog.py`` for the benchmarks): the lmms-eval
registry, the judge factory's presets, ``reproduce``, ``table``, ``submission``, the baselines and the
specialists read it. Every checkpoint id and the default judge snapshot is written here and nowhere else.
Class paths are strings (``"module:Class"``), imported only when a model is chosen; this module imports
nothing of the package, so every floor may read it.

The paper's judge variants are rows too: ``<judge>_all`` and ``<judge>_auto`` fix ``tools=``,
``<judge>_grid`` judges each task with its own subset (the paper's, or a ``grid`` result's), and
``autorater_internvl_ft`` / ``autorater_internvl_ft_all`` are a fine-tuned InternVL (``pretrained=``
of a checkpoint made by ``lmms-eval-autorater train``) judging without / with every specialist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

# -- checkpoints and snapshots (each written only here) ------------------------------------------

#: the paper's GPT-4o judge: a dated snapshot, so that results are reproducible
GPT4O_SNAPSHOT = "gpt-4o-2024-08-06"
GEMINI_MODEL = "gemini-2.5-pro"
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta/openai/"
#: the paper's open judge (transformers' -hf conversion) and the base of fine-tuning
INTERNVL_CHECKPOINT = "OpenGVLab/InternVL3-8B-hf"
HPSV3_CHECKPOINT = "MizzenAI/HPSv3"
HPSV3_BASE_MODEL = "Qwen/Qwen2-VL-7B-Instruct"
IMAGEREWARD_CHECKPOINT = "THUDM/ImageReward"
IMAGEREWARD_TOKENIZER = "bert-base-uncased"
#: the reward models users compare against (issue 20)
PICKSCORE_CHECKPOINT = "yuvalkirstain/PickScore_v1"
#: PickScore's processor lives in LAION's CLIP-H repo (the authors' code loads it from there)
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
#: torchmetrics' default CLIPScore model
CLIPSCORE_CHECKPOINT = "openai/clip-vit-large-patch14"
#: HPSv2.1: the ``hpsv2`` package's file in its hub repo, on open_clip's ViT-H-14
HPSV2_CHECKPOINT = "xswu/HPSv2"
HPSV2_FILE = "HPS_v2.1_compressed.pt"
HPSV2_ARCH = "ViT-H-14"
#: EditReward on Qwen2.5-VL-7B; the MiMo-VL variant is the same architecture:
#: checkpoint=TIGER-Lab/EditReward-MiMo-VL-7B-SFT-2508,base_model=XiaomiMiMo/MiMo-VL-7B-SFT-2508.
#: Where each id was read: both checkpoint ids from the authors' hub collection (huggingface.co/collections/
#: TIGER-Lab/editreward: EditReward-Qwen2.5-VL-7B, EditReward-MiMo-VL-7B-SFT-2508; the repo's config file name
#: "EditReward-Qwen2.5-7B-VL" is NOT the hub id); the base ids from model_name_or_path of the authors' yamls
#: (TIGER-AI-Lab/EditReward@edb027e: config/EditReward-Qwen2.5-7B-VL.yaml, config/EditReward-MiMo-VL-7B-SFT-2508.yaml).
#: File layout (one flat model.safetensors at the repo root, as upstream's EditRewardInferencer reads it): from
#: third-party code that downloads it (hf_hub_download(..., "model.safetensors") for MiMo-VL; a snapshot loaded
#: strictly by EditRewardInferencer for Qwen2.5-VL); the model cards themselves were not readable here.
EDITREWARD_CHECKPOINT = "TIGER-Lab/EditReward-Qwen2.5-VL-7B"
EDITREWARD_BASE_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
#: EditScore (the ``editscore`` 0.2 package's README): a LoRA on Qwen2.5-VL-7B-Instruct, merged at load; the other sizes
#: are LoRAs too: lora=EditScore/EditScore-32B,pretrained=Qwen/Qwen2.5-VL-32B-Instruct (and -72B likewise)
EDITSCORE_LORA = "EditScore/EditScore-7B"
EDITSCORE_BASE_MODEL = EDITREWARD_BASE_MODEL  # the same Qwen2.5-VL-7B-Instruct
#: Q-SiT: the QS specialist and the ``qsit`` baseline run the same checkpoint
QSIT_CHECKPOINT = "zhangzicheng/q-sit"
GROUNDING_DINO_CHECKPOINT = "IDEA-Research/grounding-dino-base"
AESEXPERT_CHECKPOINT = "qyuan/AesMMIT_LLaVA_v1.5_7b_240325"

#: specialist code -> its default hub checkpoint (the others name a variant their own code knows)
SPECIALIST_CHECKPOINTS: dict[str, str] = {
    "GD": GROUNDING_DINO_CHECKPOINT,
    "AE": AESEXPERT_CHECKPOINT,
    "QS": QSIT_CHECKPOINT,
}


@dataclass(frozen=True)
class JudgePreset:
    """What a judge name means: backend kind and the defaults a user need not type."""

    kind: Literal["api", "local"]
    model: str | None = None
    base_url: str | None = None
    #: environment variable holding the API key; None: $OPENAI_API_KEY when set, else no key (local servers)
    key_env: str | None = None
    provider: str = "openai"
    send_seed: bool = True
    required: tuple[str, ...] = ()
    example: str = ""


#: what a variant fixes: ``tools=all`` / ``tools=auto``, each task's own subset (``grid``), or no tools
VariantTools = Literal["all", "auto", "grid", "none"]


@dataclass(frozen=True)
class ModelEntry:
    """One lmms-eval model id: its kind, lazy class path and the facts the rest of the package reads."""

    id: str
    #: ``api`` / ``local``: an AutoRater judge; ``baseline``: a released scorer of Table 2
    kind: Literal["api", "local", "baseline"]
    class_path: str
    #: judges: the factory's preset
    preset: JudgePreset | None = None
    #: baselines: the model arguments that name the paper's checkpoints (what the README and reproduce pass)
    defaults: Mapping[str, str] = field(default_factory=dict)
    #: the default checkpoint or API snapshot
    checkpoint: str | None = None
    #: the group of Table 2 rows (``group`` in paper.yaml); None: no paper row
    paper_group: str | None = None
    #: released weights (True), a closed API (False), or whatever the user points it at (None)
    open_weights: bool | None = None
    #: the lmms-eval ``--batch_size`` reproduce passes (None: lmms-eval's default)
    batch_size: int | None = None
    #: variants: the judge they are a variant of, and the tools they fix
    base: str | None = None
    tools: VariantTools | None = None
    #: scorers made for one task kind (``generation``: prompt and image; ``editing``: source, instruction,
    #: edited image): a task of the other kind is refused at start. None: any task (the paper's baselines)
    task_kind: Literal["generation", "editing"] | None = None
    #: the reward models: the name of their row beside Table 2's (the paper's rows are named in paper.yaml)
    row: str | None = None

    def applies_to(self, task_kind: str) -> bool:
        """Whether this model scores tasks of ``task_kind`` (``generation`` or ``editing``)."""
        return self.task_kind is None or self.task_kind == task_kind

    @property
    def is_judge(self) -> bool:
        """An AutoRater judge (API or local), a variant or not."""
        return self.kind in ("api", "local")

    @property
    def is_variant(self) -> bool:
        """A paper variant of a judge (fixes ``tools=``; the user may not set it)."""
        return self.base is not None


_JUDGES = "lmms_eval_autorater.models.judge_models"
_BASELINES = "lmms_eval_autorater.models.baseline_models"

_GPT4O = ModelEntry(
    "autorater_gpt4o",
    "api",
    f"{_JUDGES}:AutoraterGPT4o",
    preset=JudgePreset("api", model=GPT4O_SNAPSHOT, key_env="OPENAI_API_KEY"),
    checkpoint=GPT4O_SNAPSHOT,
    paper_group="gpt-4o",
    open_weights=False,
)
_GEMINI = ModelEntry(
    "autorater_gemini",
    "api",
    f"{_JUDGES}:AutoraterGemini",
    preset=JudgePreset(
        "api",
        model=GEMINI_MODEL,
        base_url=GEMINI_BASE_URL,
        key_env="GEMINI_API_KEY",
        provider="gemini",
        send_seed=False,  # the endpoint documents no seed
    ),
    checkpoint=GEMINI_MODEL,
    paper_group="gemini",
    open_weights=False,
)
_OPENAI = ModelEntry(
    "autorater_openai",
    "api",
    f"{_JUDGES}:AutoraterOpenAICompatible",
    preset=JudgePreset(
        "api",
        provider="openai-compatible",
        required=("base_url", "model"),
        example="base_url=http://127.0.0.1:8000/v1,model=OpenGVLab/InternVL3-8B",
    ),
)
_INTERNVL = ModelEntry(
    "autorater_internvl",
    "local",
    f"{_JUDGES}:AutoraterInternVL",
    preset=JudgePreset("local", model=INTERNVL_CHECKPOINT),
    checkpoint=INTERNVL_CHECKPOINT,
    paper_group="internvl",
    open_weights=True,
    batch_size=4,
)


def _variant(base: ModelEntry, suffix: str, cls: str, tools: VariantTools, **preset_changes) -> ModelEntry:
    """``<base>_<suffix>``: the base judge with ``tools`` fixed (and its preset changed as given)."""
    assert base.preset is not None
    return replace(
        base,
        id=f"{base.id}_{suffix}",
        class_path=f"{_JUDGES}:{cls}",
        preset=replace(base.preset, **preset_changes),
        base=base.id,
        tools=tools,
    )


_FT_EXAMPLE = "pretrained=ckpt/internvl3-8b-ft-{}  (a checkpoint of lmms-eval-autorater train)"

#: model id -> entry, in the order lmms-eval lists them
MODELS: dict[str, ModelEntry] = {
    e.id: e
    for e in (
        _GPT4O,
        _GEMINI,
        _OPENAI,
        _INTERNVL,
        ModelEntry(
            "hpsv3",
            "baseline",
            f"{_BASELINES}:HPSv3Model",
            defaults={"checkpoint": HPSV3_CHECKPOINT, "base_model": HPSV3_BASE_MODEL},
            checkpoint=HPSV3_CHECKPOINT,
            paper_group="baselines",
            open_weights=True,
            batch_size=4,
        ),
        ModelEntry(
            "imagereward",
            "baseline",
            f"{_BASELINES}:ImageRewardModel",
            defaults={"checkpoint": IMAGEREWARD_CHECKPOINT, "tokenizer": IMAGEREWARD_TOKENIZER},
            checkpoint=IMAGEREWARD_CHECKPOINT,
            paper_group="baselines",
            open_weights=True,
            batch_size=8,
        ),
        ModelEntry(
            "qsit",
            "baseline",
            f"{_BASELINES}:QSiTModel",
            defaults={"pretrained": QSIT_CHECKPOINT},
            checkpoint=QSIT_CHECKPOINT,
            paper_group="baselines",
            open_weights=True,
            batch_size=8,
        ),
        # the reward models users compare against (group REWARD_GROUP: rows beside Table 2, no paper numbers)
        ModelEntry(
            "pickscore",
            "baseline",
            f"{_BASELINES}:PickScoreModel",
            defaults={"checkpoint": PICKSCORE_CHECKPOINT, "processor": PICKSCORE_PROCESSOR},
            checkpoint=PICKSCORE_CHECKPOINT,
            paper_group="reward_models",
            open_weights=True,
            batch_size=16,
            task_kind="generation",
            row="PickScore",
        ),
        ModelEntry(
            "hpsv2",
            "baseline",
            f"{_BASELINES}:HPSv2Model",
            defaults={"checkpoint": HPSV2_CHECKPOINT, "arch": HPSV2_ARCH},
            checkpoint=HPSV2_CHECKPOINT,
            paper_group="reward_models",
            open_weights=True,
            batch_size=16,
            task_kind="generation",
            row="HPSv2.1",
        ),
        ModelEntry(
            "clipscore",
            "baseline",
            f"{_BASELINES}:CLIPScoreModel",
            defaults={"checkpoint": CLIPSCORE_CHECKPOINT},
            checkpoint=CLIPSCORE_CHECKPOINT,
            paper_group="reward_models",
            open_weights=True,
            batch_size=16,
            task_kind="generation",
            row="CLIPScore",
        ),
        ModelEntry(
            "editreward",
            "baseline",
            f"{_BASELINES}:EditRewardModel",
            defaults={"checkpoint": EDITREWARD_CHECKPOINT, "base_model": EDITREWARD_BASE_MODEL},
            checkpoint=EDITREWARD_CHECKPOINT,
            paper_group="reward_models",
            open_weights=True,
            batch_size=2,
            task_kind="editing",
            row="EditReward",
        ),
        ModelEntry(
            "editscore",
            "baseline",
            f"{_BASELINES}:EditScoreModel",
            defaults={"pretrained": EDITSCORE_BASE_MODEL, "lora": EDITSCORE_LORA},
            checkpoint=EDITSCORE_LORA,
            paper_group="reward_models",
            open_weights=True,
            batch_size=4,
            task_kind="editing",
            row="EditScore",
        ),
        _variant(_GPT4O, "all", "AutoraterGPT4oAll", "all"),
        _variant(_GPT4O, "auto", "AutoraterGPT4oAuto", "auto"),
        _variant(_GPT4O, "grid", "AutoraterGPT4oGrid", "grid"),
        _variant(_GEMINI, "all", "AutoraterGeminiAll", "all"),
        _variant(_GEMINI, "auto", "AutoraterGeminiAuto", "auto"),
        _variant(_GEMINI, "grid", "AutoraterGeminiGrid", "grid"),
        _variant(_INTERNVL, "all", "AutoraterInternVLAll", "all"),
        _variant(_INTERNVL, "auto", "AutoraterInternVLAuto", "auto"),
        _variant(_INTERNVL, "grid", "AutoraterInternVLGrid", "grid"),
        _variant(
            _INTERNVL,
            "ft",
            "AutoraterInternVLFt",
            "none",
            required=("pretrained",),
            example=_FT_EXAMPLE.format("notools"),
        ),
        _variant(
            _INTERNVL,
            "ft_all",
            "AutoraterInternVLFtAll",
            "all",
            required=("pretrained",),
            example=_FT_EXAMPLE.format("tools"),
        ),
    )
}


def model_entry(model_id: str) -> ModelEntry:
    """The entry of ``model_id``; an unknown id raises ``KeyError`` listing the known ones."""
    if model_id not in MODELS:
        raise KeyError(f"unknown model {model_id!r}; known: {', '.join(MODELS)}")
    return MODELS[model_id]


def judges(*, variants: bool = True) -> list[ModelEntry]:
    """The AutoRater judges (API and local), with or without the paper's variants, in catalog order."""
    return [e for e in MODELS.values() if e.is_judge and (variants or not e.is_variant)]


def baselines() -> list[ModelEntry]:
    """The Table 2 baselines (released scorers), in catalog order."""
    return [e for e in MODELS.values() if e.kind == "baseline"]


#: the ``paper_group`` of the reward models users compare against: rows beside Table 2 (no paper numbers)
REWARD_GROUP = "reward_models"


def reward_models() -> list[ModelEntry]:
    """The reward models users compare against (PickScore, HPSv2.1, CLIPScore, ...), in catalog order."""
    return [e for e in MODELS.values() if e.paper_group == REWARD_GROUP]


def default_args(model_id: str) -> str:
    """A baseline's default checkpoint arguments as lmms-eval's ``k=v,k=v`` (empty for the judges)."""
    return ",".join(f"{k}={v}" for k, v in model_entry(model_id).defaults.items())


__all__ = [
    "GPT4O_SNAPSHOT",
    "INTERNVL_CHECKPOINT",
    "MODELS",
    "QSIT_CHECKPOINT",
    "REWARD_GROUP",
    "SPECIALIST_CHECKPOINTS",
    "JudgePreset",
    "ModelEntry",
    "baselines",
    "default_args",
    "judges",
    "model_entry",
    "reward_models",
]
