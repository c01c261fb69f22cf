"""Judge-argument parsing shared by every entry point: typed values and errors that name the argument."""

from __future__ import annotations

from lmms_eval_autorater.errors import ModelArgError
from lmms_eval_autorater.redact import redact_url, url_secrets
from lmms_eval_autorater.specialists.registry import SPECS

#: the specialist codes, in the order the judge reads them (the registry is the one list)
SPECIALIST_CODES: tuple[str, ...] = tuple(SPECS)


def check_base_url(base_url: str | None, name: str = "base_url") -> None:
    """Refuse a URL that carries credentials (``user:password@`` or a key in the query string): it would
    be copied into every file and message that names the endpoint, and the client would send it as
    Basic auth instead of the key. One line naming the argument and the alternative (``api_key_env=``)."""
    if not base_url:
        return
    found = url_secrets(str(base_url))
    if found:
        raise ModelArgError(
            f"model argument {name}={redact_url(str(base_url))!r} carries credentials ({', '.join(found)}): "
            "remove them from the URL and put the key in an environment variable named by api_key_env= "
            "(e.g. api_key_env=MY_SERVER_KEY); nothing was sent"
        )


def check_server_url(url: str, name: str) -> None:
    """A server's URL argument (``ae_base_url=``, editscore's ``base_url=``): no credentials in it
    (``check_base_url``) and an http(s) scheme; one line naming the argument otherwise."""
    check_base_url(url, name)
    if not url.startswith(("http://", "https://")):
        raise ModelArgError(
            f"model argument {name}={url!r}: expected an http(s) URL, e.g. http://host:8000/v1"
        )


__all__ = [
    "ModelArgError",
    "SPECIALIST_CODES",
    "check_base_url",
]  # ModelArgError: errors.ModelArgError, re-exported


def as_bool(name: str, value) -> bool:
    """Parse a boolean argument (lmms-eval already turns 'true'/'false' into bools)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ModelArgError(f"model argument {name}={value!r}: expected true or false")


def as_int(name: str, value, minimum: int | None = None) -> int:
    """Parse an integer argument with an optional lower bound."""
    try:
        out = int(value)
        if isinstance(value, float) and value != out:
            raise ValueError
    except (TypeError, ValueError):
        raise ModelArgError(f"model argument {name}={value!r}: expected an integer") from None
    if minimum is not None and out < minimum:
        raise ModelArgError(f"model argument {name}={value!r}: must be >= {minimum}")
    return out


def as_float(name: str, value) -> float:
    """Parse a float argument."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ModelArgError(f"model argument {name}={value!r}: expected a number") from None


def parse_tools(value, task_kind: str | None = None) -> str | list[str]:
    """``tools=none|all|auto|GD+QS`` -> [] | "all" | "auto" | ["GD", "QS"] (codes joined by '+', case-insensitive).

    The one parser of the argument: codes come back in registry order; an unknown, repeated or empty
    code is an error, and so is, when ``task_kind`` is given, a code that does not apply to it.
    """
    from lmms_eval_autorater.specialists.registry import applicable

    text = str(value if value is not None else "").strip()
    low = text.lower()
    ok = applicable(task_kind) if task_kind is not None else list(SPECIALIST_CODES)
    if low in ("none", ""):
        return []
    if low in ("all", "auto"):
        return low
    if "," in text:
        raise ModelArgError(f"model argument tools={text!r}: join codes with '+', e.g. tools=DF+GD+QS")
    codes = [c.strip().upper() for c in text.split("+")]
    if any(not c for c in codes):
        raise ModelArgError(f"model argument tools={text!r}: empty code; join codes with '+', e.g. GD+QS")
    unknown = [c for c in dict.fromkeys(codes) if c not in SPECIALIST_CODES]
    if unknown:
        raise ModelArgError(
            f"model argument tools={text!r}: unknown specialist code(s) {', '.join(unknown)}; "
            f"known codes: {', '.join(SPECIALIST_CODES)}, or none, all, auto"
        )
    if len(set(codes)) != len(codes):
        raise ModelArgError(f"model argument tools={text!r}: a code is repeated")
    wrong = [c for c in dict.fromkeys(codes) if c not in ok]
    if wrong:
        raise ModelArgError(
            f"model argument tools={text!r}: specialist(s) {', '.join(wrong)} do not apply to {task_kind} "
            f"tasks; applicable to {task_kind}: {', '.join(ok)} (or none, all, auto)"
        )
    return [c for c in SPECIALIST_CODES if c in codes]


def as_opt_float(name: str, value) -> float | None:
    """Parse an optional float argument (None or '' stay None)."""
    return None if value in (None, "") else as_float(name, value)


def parse_model_args(text: str | dict | None, *, strict: bool = True) -> dict[str, str]:
    """``key=value,key=value`` (lmms-eval's ``--model_args`` syntax) -> a dict of strings.

    ``strict=False`` (reading other tools' results files) keeps a bare ``key`` as ``key=""``; a dict is
    taken as already parsed.
    """
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not strict:
            out[key.strip()] = value.strip()
            continue
        if not sep or not key.strip():
            raise ModelArgError(f"--model_args item {item!r}: expected key=value (items joined by commas)")
        out[key.strip()] = value.strip()
    return out


def check_known(model: str, kwargs: dict, allowed: set[str]) -> None:
    """Reject unknown ``--model_args`` keys, naming them and listing the accepted ones."""
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ModelArgError(
            f"{model}: unknown model argument(s) {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}"
        )
