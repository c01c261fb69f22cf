"""The arena's pictures: the ratings chart (PNG) and the page of order disagreements (self-contained HTML).

The chart is drawn with matplotlib's Agg canvas directly (no pyplot, no global backend switch). The page
embeds every image as a base64 ``data:`` URL and its style inline: it opens offline and loads nothing.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from pathlib import Path

#: a disagreement for the page: id, prompt, source (path or None), a, b (generator names), image_a,
#: image_b (paths), and per order ("first": a shown as image 1; "second": b shown as image 1) the
#: generator that order preferred and the judge's analysis
Disagreement = dict


def _replace(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_ratings_png(
    path: str | os.PathLike,
    names: Sequence[str],
    ratings: Sequence[float | None],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    *,
    title: str = "Arena ratings",
    xlabel: str = "rating",
) -> None:
    """A horizontal chart of ``ratings`` with their CI bars, best at the top (unrated generators left out)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def num(x):
        return float(x) if x is not None and math.isfinite(float(x)) else math.nan

    rows = [(n, num(r), num(lo), num(hi)) for n, r, lo, hi in zip(names, ratings, lows, highs)]
    rows = [row for row in rows if math.isfinite(row[1])]
    rows.sort(key=lambda row: row[1])  # the last drawn is the top row
    fig = Figure(figsize=(7.0, 1.2 + 0.45 * max(len(rows), 1)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(len(rows)))
    values = [r for _, r, _, _ in rows]
    # max(0, .): a bootstrap that redraws identical data gives its bounds equal to the point up to rounding
    left = [max(0.0, r - lo) if math.isfinite(lo) else 0.0 for _, r, lo, _ in rows]
    right = [max(0.0, hi - r) if math.isfinite(hi) else 0.0 for _, r, _, hi in rows]
    ax.errorbar(values, ys, xerr=[left, right], fmt="o", color="#1f4e79", ecolor="#7aa6d6", capsize=4)
    ax.set_yticks(ys)
    ax.set_yticklabels([n for n, *_ in rows])
    ax.axvline(0.0, color="#999999", linewidth=0.8, linestyle=":")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    if not rows:
        ax.text(0.5, 0.5, "no rated generator", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _replace(Path(path), buf.getvalue())


def data_url(path: str | os.PathLike) -> str:
    """The image file at ``path`` as a ``data:<mime>;base64,...`` URL (its bytes unchanged)."""
    data = Path(path).read_bytes()
    mime = "application/octet-stream"
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            mime = Image.MIME.get(img.format or "", mime)
    except Exception:  # an undecodable file was never judged; show whatever the browser makes of it
        pass
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } .meta { color: #555; }
section.disagreement { border: 1px solid #ccc; border-radius: 6px; padding: 1em; margin: 1em 0; }
.prompt { font-size: 1.05em; margin: 0.3em 0 0.8em; white-space: pre-wrap; }
.images { display: flex; gap: 1em; flex-wrap: wrap; }
figure { margin: 0; } figure img { max-width: 320px; max-height: 320px; border: 1px solid #ddd; }
figcaption { text-align: center; font-weight: 600; margin-top: 0.3em; }
.orders { display: flex; gap: 1em; flex-wrap: wrap; margin-top: 0.8em; }
.order { flex: 1 1 300px; background: #f6f6f6; border-radius: 4px; padding: 0.6em; }
.analysis { white-space: pre-wrap; font-size: 0.92em; }
"""


def _figure(src: str, caption: str) -> str:
    return (
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def disagreements_html(
    items: Sequence[Disagreement], *, title: str = "Arena: order disagreements", note: str = ""
) -> str:
    """The page: one section per disagreement (prompt, the images, what each order preferred and why)."""
    e = html.escape
    cache: dict[str, str] = {}

    def url(path: str) -> str:
        if path not in cache:
            cache[path] = data_url(path)
        return cache[path]

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="meta">{e(note)}</p>' if note else "",
        f'<p class="meta">{len(items)} disagreement{"" if len(items) == 1 else "s"}.</p>',
    ]
    if not items:
        parts.append("<p>None: the judge gave the same verdict in both image orders every time.</p>")
    for d in items:
        a, b = str(d["a"]), str(d["b"])
        figures = []
        if d.get("source"):
            figures.append(_figure(url(d["source"]), "source"))
        figures.append(_figure(url(d["image_a"]), a))
        figures.append(_figure(url(d["image_b"]), b))
        orders = []
        for key, label in (
            ("first", f"order 1: {a} as image 1, {b} as image 2"),
            ("second", f"order 2: {b} as image 1, {a} as image 2"),
        ):
            o = d[key]
            orders.append(
                f'<div class="order {key}"><div><b>{e(label)}</b></div>'
                f"<div>preferred: <b>{e(str(o['preferred']))}</b></div>"
                f'<div class="analysis">{e(str(o.get("analysis") or ""))}</div></div>'
            )
        parts.append(
            f'<section class="disagreement" data-id="{e(str(d["id"]))}" data-a="{e(a)}" data-b="{e(b)}">'
            f"<h2>{e(str(d['id']))}: {e(a)} vs {e(b)}</h2>"
            f'<div class="prompt">{e(str(d["prompt"]))}</div>'
            f'<div class="images">{"".join(figures)}</div>'
            f'<div class="orders">{"".join(orders)}</div></section>'
        )
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p) + "\n"


def write_disagreements_html(path: str | os.PathLike, items: Sequence[Disagreement], **kwargs) -> None:
    """Write ``disagreements_html(items, **kwargs)`` to ``path`` (atomically)."""
    _replace(Path(path), disagreements_html(items, **kwargs).encode("utf-8"))
