"""Cells of the tables we write for other programs: CSV for spreadsheets, Markdown for pages.

* ``csv_cell``: OWASP's rule against CSV (formula) injection: a text cell that starts with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return gets a leading single quote, so Excel, LibreOffice and Google
  Sheets show it as text instead of evaluating ``=HYPERLINK(...)``, ``=cmd|...`` or ``@SUM(...)``.
  Numbers are left alone (``-0.5`` is a number, not a formula).
* ``md_cell``: a Markdown table cell: HTML escaped (``<``, ``>``, ``&``, quotes), ``|`` escaped so a name
  cannot add columns, line breaks turned into spaces so it cannot end the row.

Ground floor: imports nothing of ours; every CSV and Markdown writer of the package uses these.
"""

from __future__ import annotations

import html
from typing import Any

#: the first characters that make a spreadsheet evaluate a cell (OWASP "CSV Injection")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text == text.strip() and "_" not in text


def csv_cell(value: Any) -> Any:
    """``value`` safe for a CSV cell: a string starting with a formula character is prefixed with ``'``
    (a string that is a plain number, ``-0.5``, is a number to a spreadsheet too and is left alone)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _is_number(value):
        return "'" + value
    return value


def csv_uncell(value: Any) -> Any:
    """The inverse of ``csv_cell`` for a reader of our own CSV: ``'=x`` back to ``=x``."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def csv_frame(frame: Any) -> Any:
    """A copy of a pandas DataFrame with ``csv_cell`` applied to every text cell (and column name)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or str(out[col].dtype) == "string":
            out[col] = out[col].map(csv_cell, na_action="ignore")
    out.columns = [csv_cell(c) for c in out.columns]
    return out


def md_cell(value: Any) -> str:
    """``value`` as the text of one Markdown table cell: HTML escaped, ``|`` escaped, on one line."""
    text = html.escape(str(value), quote=True)
    return " ".join(text.replace("|", "\\|").splitlines()).replace("\r", " ")


__all__ = ["FORMULA_PREFIXES", "csv_cell", "csv_frame", "csv_uncell", "md_cell"]
