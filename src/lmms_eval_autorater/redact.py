"""The one redaction rule for everything this package writes or says: model args, URLs and messages.

Ground floor (imports nothing of ours). Every writer (submission, run report, table, score, arena, the
batch ledger, logs and error messages that name an endpoint) passes what it shows through these
functions, so there is one rule, not one per writer:

* an argument whose name has a secret word in it (``key``, ``token``, ``secret``, ``password``, ``auth``,
  ``credential``, ... as a word: ``api_key``, ``hf_token``; not ``max_tokens``) is dropped;
  ``api_key_env`` names a variable, not a key, and is kept, as is ``token_param``;
* a URL loses its ``user:password@`` part and the values of key-like query parameters
  (``key``, ``api_key``, ``apikey``, ``token``, ``access_token``, ``sig``, ``signature``, ``secret``,
  ``password``, ``auth``) become ``***``;
* free text has every URL in it redacted the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: words of an argument name (split at ``_``, ``-``, ``.``; case-insensitive) that mark its value secret
SECRET_WORDS = frozenset(
    {"key", "apikey", "token", "secret", "password", "passwd", "pwd", "auth", "authorization", "credential",
     "credentials", "cookie", "bearer"}
)  # fmt: skip
#: argument names that contain such a word but hold no secret (a variable's name, a parameter's name)
PUBLIC_ARGS = frozenset({"api_key_env", "token_param"})
#: query-string parameters (lower case) that carry credentials
SECRET_QUERY = frozenset(
    {"key", "api_key", "apikey", "api-key", "token", "access_token", "sig", "signature", "secret", "password",
     "auth", "x-goog-api-key", "code"}
)  # fmt: skip
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()\[\]{},]+")
MASK = "***"


def url_secrets(url: str) -> list[str]:
    """What in ``url`` is a credential: ``"user:password@"`` (or ``"user@"``) and each key-like query
    parameter name; empty when the URL carries none (or is not a URL)."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return []
    found = []
    if "@" in parts.netloc:
        found.append("user:password@" if ":" in parts.netloc.rsplit("@", 1)[0] else "user@")
    found += [
        f"?{k}=" for k, _ in parse_qsl(parts.query, keep_blank_values=True) if k.lower() in SECRET_QUERY
    ]
    return found


def redact_url(url: str) -> str:
    """``url`` without ``user:password@`` and with key-like query values masked; other text unchanged."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc or not url_secrets(str(url)):
        return str(url)  # nothing to remove: the text stays byte for byte
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_QUERY for k, _ in pairs):
            query = urlencode([(k, MASK if k.lower() in SECRET_QUERY else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through ``redact_url`` (for messages and logs)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), str(text))


def is_secret_arg(name: str) -> bool:
    """Whether a model argument called ``name`` holds a secret (and is never written)."""
    words = re.split(r"[_\-.\s]+", str(name).strip().lower())
    return name not in PUBLIC_ARGS and any(w in SECRET_WORDS for w in words)


def public_model_args(model_args: Mapping[str, Any]) -> dict[str, Any]:
    """``model_args`` as any file may show them: secret-named arguments dropped, credentials removed from
    URLs (in any value), every other value kept as given (strings stay strings)."""
    out: dict[str, Any] = {}
    for key, value in model_args.items():
        if is_secret_arg(str(key)):
            continue
        out[key] = redact_text(value) if isinstance(value, str) else value
    return out


def public_model_args_text(text: str) -> str:
    """A ``key=value,key=value`` string (lmms-eval's ``--model_args``) with the same rule applied."""
    items = []
    for item in str(text or "").split(","):
        key, sep, value = item.partition("=")
        if sep and is_secret_arg(key.strip()):
            continue
        items.append(f"{key}{sep}{redact_text(value)}" if sep else redact_text(item))
    return ",".join(items)


__all__ = [
    "MASK",
    "is_secret_arg",
    "public_model_args",
    "public_model_args_text",
    "redact_text",
    "redact_url",
    "url_secrets",
]
