"""Parse what the user asks for: a budget (`params=0.2`, `latency=25`, `drop=0.005`, `channels=0.5`) and
fixed ranks."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from compression.errors import BudgetError

BUDGET_HELP = (
    "budget is one or more comma-separated terms: params=<share of parameters kept, 0-1 or N%>, "
    "latency=<ms per frame>, drop=<max metric drop, 0-1 or N%>, channels=<share of each inverted-residual "
    "block's hidden channels kept (structured pruning, done first), 0-1 or N%>; e.g. 'params=0.2', "
    "'latency=25,drop=0.005' or 'channels=0.5'"
)


@dataclass(frozen=True)
class Budget:
    """`params`/`latency` are targets ranks are lowered until they are met; `drop` is a limit never crossed
    (alone, it means: compress as far as the limit allows). `channels` prunes hidden channels before any
    factorization (`compression.prune`); alone, nothing is factorized."""

    params: float | None = None
    latency_ms: float | None = None
    drop: float | None = None
    channels: float | None = None

    @property
    def factorizes(self) -> bool:
        """Whether any term asks the rank search for something."""
        return self.params is not None or self.latency_ms is not None or self.drop is not None

    def describe(self) -> str:
        terms = []
        if self.params is not None:
            terms.append(f"params={self.params:g}")
        if self.latency_ms is not None:
            terms.append(f"latency={self.latency_ms:g}ms")
        if self.drop is not None:
            terms.append(f"drop={self.drop:g}")
        if self.channels is not None:
            terms.append(f"channels={self.channels:g}")
        return ",".join(terms)


def _number(key: str, raw: str, unit: str = "") -> float:
    text = raw.strip().lower()
    percent = text.endswith("%")
    if percent:
        text = text[:-1]
    elif unit and text.endswith(unit):
        text = text[: -len(unit)]
    try:
        value = float(text)
    except ValueError:
        raise BudgetError(f"budget term {key}={raw!r}: not a number. {BUDGET_HELP}") from None
    if not math.isfinite(value):
        raise BudgetError(f"budget term {key}={raw!r}: must be finite")
    return value / 100.0 if percent else value


def parse_budget(text: str) -> Budget:
    """`'params=0.2'` -> Budget(params=0.2); raises BudgetError naming the bad term."""
    if not isinstance(text, str) or not text.strip():
        raise BudgetError(f"empty budget. {BUDGET_HELP}")
    values: dict[str, float] = {}
    for term in text.split(","):
        key, sep, raw = term.partition("=")
        key = key.strip().lower()
        if not sep or not raw.strip():
            raise BudgetError(f"budget term {term.strip()!r} is not key=value. {BUDGET_HELP}")
        if key in values:
            raise BudgetError(f"budget term {key!r} given twice")
        if key in ("params", "channels"):
            value = _number(key, raw)
            if not 0.0 < value <= 1.0:
                raise BudgetError(f"{key}={raw.strip()} must be a share in (0, 1] (e.g. 0.5 or 50%)")
        elif key == "latency":
            value = _number(key, raw, unit="ms")
            if value <= 0.0:
                raise BudgetError(f"latency={raw.strip()} must be a positive number of milliseconds")
        elif key == "drop":
            value = _number(key, raw)
            if not 0.0 <= value < 1.0:
                raise BudgetError(f"drop={raw.strip()} must be in [0, 1) (e.g. 0.005 or 0.5%)")
        else:
            raise BudgetError(f"unknown budget term {key!r}. {BUDGET_HELP}")
        values[key] = value
    return Budget(
        params=values.get("params"),
        latency_ms=values.get("latency"),
        drop=values.get("drop"),
        channels=values.get("channels"),
    )


_RANK_TERM = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*=\s*(\S+)\s*$")


def parse_rank_terms(terms: Iterable[str]) -> dict[str, int]:
    """CLI `--rank layer.name=16` terms -> {name: rank}; malformed terms raise BudgetError."""
    ranks: dict[str, int] = {}
    for term in terms:
        match = _RANK_TERM.match(term)
        if not match:
            raise BudgetError(f"--rank {term!r} must look like layer.name=16")
        name, raw = match.groups()
        try:
            rank = int(raw)
        except ValueError:
            raise BudgetError(f"--rank {term!r}: rank {raw!r} is not an integer") from None
        if name in ranks:
            raise BudgetError(f"--rank given twice for layer {name!r}")
        ranks[name] = rank
    return ranks


def validate_fixed_ranks(fixed: Mapping[str, int], full_ranks: Mapping[str, int]) -> dict[str, int]:
    """Check fixed ranks against the model's compressible layers; errors name the layer and the range."""
    checked: dict[str, int] = {}
    for name, rank in fixed.items():
        if name not in full_ranks:
            close = [n for n in full_ranks if name.split(".")[-1] in n][:5]
            hint = f"; similar: {close}" if close else f"; compressible layers include {list(full_ranks)[:5]}"
            raise BudgetError(f"fixed rank for unknown or non-compressible layer {name!r}{hint}")
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise BudgetError(f"rank for {name!r} must be an integer, got {rank!r}")
        if not 1 <= rank <= full_ranks[name]:
            raise BudgetError(f"rank {rank} for {name!r} is outside 1..{full_ranks[name]} (its full rank)")
        checked[name] = rank
    return checked
