"""The one exception for user mistakes (the CLI prints its message and exits 2), and its hints."""

from __future__ import annotations

import difflib
from typing import Callable, Iterable


class BenchError(Exception):
    """A user mistake (unknown name, bad spec, missing files, ...). One line, says what to do."""


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.5,
                 show: Callable[[str], str] = repr) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to ``name``, else ``""``.

    Up to ``n`` matches (``difflib.get_close_matches`` with ``cutoff``), each written by
    ``show`` (``repr`` by default; e.g. ``lambda c: f"zoo:{c}"``) and joined with ", ".
    """
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=cutoff)
    return f"; did you mean {', '.join(show(c) for c in close)}?" if close else ""
