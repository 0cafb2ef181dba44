"""Which factorization each layer gets: per-layer rules (`blocks.5.*=tt`, `memory_bank=svd:32`), defaults
per layer kind (`default_conv=tucker2`), and `auto` (the rank search picks among the valid methods).

Rules come from the CLI (`--method`), `CompressionSettings.methods` and `model.compression_methods`; a rule
that names no layer, an unknown method or a method the matched layers cannot take fails before any slow
work, naming the valid choices.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from compression.errors import BudgetError, LayerNotFactorizableError

FACTORIZATIONS = ("svd", "tucker2", "cp", "tt")
METHOD_CHOICES = (*FACTORIZATIONS, "auto", "dense")
KIND_DEFAULTS = ("default_conv", "default_pointwise", "default_linear", "default")
METHOD_HELP = (
    "a method rule is PATTERN=METHOD[:RANK]: PATTERN is a layer name, a glob over dotted names "
    "('blocks.5.*', 'conv_pw', 'memory_bank') or one of "
    + ", ".join(KIND_DEFAULTS)
    + "; METHOD is one of "
    + ", ".join(METHOD_CHOICES)
    + " (RANK fixes the rank, or the bond dimension for tt)"
)
KIND_LABELS = {"conv": "kxk conv", "pointwise": "1x1 conv", "linear": "Linear"}


class MethodError(BudgetError):
    """A method rule is malformed or does not fit the model; the message names the valid choices."""


@dataclass(frozen=True)
class MethodRule:
    """One `pattern=method[:rank]` term, in the order given (later rules override earlier ones)."""

    pattern: str
    method: str
    rank: int | None = None

    @property
    def text(self) -> str:
        return f"{self.pattern}={self.method}" + (f":{self.rank}" if self.rank is not None else "")


@dataclass(frozen=True)
class MethodAssignment:
    """What a layer may become: `candidates` (one method, or several for auto), a fixed rank, and why."""

    candidates: tuple[str, ...]
    rule: str
    rank: int | None = None

    @property
    def auto(self) -> bool:
        return len(self.candidates) > 1


_TERM = re.compile(r"^\s*([^=\s]+)\s*=\s*([A-Za-z0-9_]+)\s*(?::\s*(\S+))?\s*$")


def parse_method_value(pattern: str, value: str) -> MethodRule:
    """`('blocks.5.*', 'tt:16')` -> MethodRule; unknown methods and bad ranks raise MethodError."""
    method, sep, raw_rank = str(value).strip().partition(":")
    method = method.strip().lower()
    if method not in METHOD_CHOICES:
        raise MethodError(
            f"unknown method {method!r} for {pattern!r}; choose one of {', '.join(METHOD_CHOICES)}"
        )
    rank = None
    if sep:
        if method in ("auto", "dense"):
            raise MethodError(f"{pattern}={value}: a rank can only be fixed for {', '.join(FACTORIZATIONS)}")
        try:
            rank = int(raw_rank)
        except ValueError:
            raise MethodError(f"{pattern}={value}: rank {raw_rank!r} is not an integer") from None
        if rank < 1:
            raise MethodError(f"{pattern}={value}: rank must be a positive integer")
    if not pattern.strip():
        raise MethodError(f"empty layer pattern. {METHOD_HELP}")
    return MethodRule(pattern.strip(), method, rank)


def parse_method_terms(terms: Iterable[str]) -> list[MethodRule]:
    """CLI `--method PATTERN=METHOD[:RANK]` terms -> rules, in order."""
    rules = []
    for term in terms:
        match = _TERM.match(term)
        if not match:
            raise MethodError(f"--method {term!r} is malformed. {METHOD_HELP}")
        pattern, method, rank = match.groups()
        rules.append(parse_method_value(pattern, method + (f":{rank}" if rank is not None else "")))
    return rules


def rules_from_mapping(mapping: Mapping[str, str] | None) -> list[MethodRule]:
    """YAML `{pattern: method[:rank]}` -> rules, in mapping order."""
    return [parse_method_value(str(pattern), str(value)) for pattern, value in (mapping or {}).items()]


def layer_kind(layer: nn.Module) -> str:
    """'conv' (kxk), 'pointwise' (1x1 conv) or 'linear'; raises for layers no method can factorize."""
    if isinstance(layer, nn.Linear):
        return "linear"
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise LayerNotFactorizableError(f"grouped/depthwise conv (groups={layer.groups}) stays dense")
        return "pointwise" if tuple(layer.kernel_size) == (1, 1) else "conv"
    raise LayerNotFactorizableError(f"{type(layer).__name__} is not a dense Linear/Conv2d")


def valid_methods(layer: nn.Module) -> tuple[str, ...]:
    """Factorizations that fit the layer, the preferred one first.

    kxk convs: Tucker-2 (keeps the kernel) or CP (separable). Matrices (Linear, 1x1 conv): truncated SVD
    or TT/MPO; TT reshapes rows of features, so it takes only stride-1 unpadded 1x1 convs."""
    kind = layer_kind(layer)
    if kind == "conv":
        return ("tucker2", "cp")
    if isinstance(layer, nn.Conv2d) and (tuple(layer.stride) != (1, 1) or layer.padding != (0, 0)):
        return ("svd",)
    return ("svd", "tt")


def _slices(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)]


def pattern_matches(pattern: str, name: str) -> bool:
    """A glob matches a layer when it matches its full dotted name or any run of its components, so
    `memory_bank` matches `memory_bank.similarity` and `blocks.5.*` matches `backbone.blocks.5.0.conv_pw`."""
    return any(fnmatch.fnmatchcase(part, pattern) for part in _slices(name))


def _kind_default(kind: str, rules: Sequence[MethodRule]) -> MethodRule | None:
    keys = {"conv": ("default_conv",), "pointwise": ("default_pointwise", "default_linear")}
    for key in (*keys.get(kind, ("default_linear",)), "default"):
        found = [rule for rule in rules if rule.pattern == key]
        if found:
            return found[-1]
    return None


def _candidates(method: str, valid: tuple[str, ...]) -> tuple[str, ...]:
    if method == "auto":
        return valid
    if method == "dense":
        return ()
    return (method,)


def resolve_methods(
    layers: Mapping[str, nn.Module],
    rules: Sequence[MethodRule],
    conv_method: str = "tucker2",
    linear_method: str = "svd",
    skipped: Mapping[str, str] | None = None,
) -> dict[str, MethodAssignment]:
    """Assign methods to the compressible `layers` ({name: module}); an empty candidate tuple = dense.

    Precedence: the last pattern rule matching the layer, then the layer kind's default rule, then
    `default`, then `conv_method`/`linear_method`. `skipped` ({name: why}) are layers that exist but
    cannot be compressed; a rule naming only those says why."""
    skipped = skipped or {}
    valid = {name: valid_methods(layer) for name, layer in layers.items()}
    kinds = {name: layer_kind(layer) for name, layer in layers.items()}
    patterns = [rule for rule in rules if rule.pattern not in KIND_DEFAULTS]
    for pattern_rule in patterns:
        matched = [n for n in layers if pattern_matches(pattern_rule.pattern, n)]
        _check_rule(pattern_rule, matched, valid, kinds, skipped)
    for default_rule in rules:
        if default_rule.pattern in KIND_DEFAULTS:
            _check_default(default_rule, valid, kinds)
    assigned: dict[str, MethodAssignment] = {}
    for name in layers:
        matching = [
            r
            for r in patterns
            if pattern_matches(r.pattern, name) and (r.method in ("auto", "dense") or r.method in valid[name])
        ]
        rule: MethodRule | None = matching[-1] if matching else _kind_default(kinds[name], rules)
        if rule is None:
            fallback = conv_method if kinds[name] == "conv" else linear_method
            method = fallback if fallback in (*valid[name], "auto") else valid[name][0]
            origin = "conv_method" if kinds[name] == "conv" else "linear_method"
            assigned[name] = MethodAssignment(_candidates(method, valid[name]), f"settings {origin}={method}")
            continue
        method = rule.method if rule.method in (*valid[name], "auto", "dense") else valid[name][0]
        assigned[name] = MethodAssignment(_candidates(method, valid[name]), rule.text, rule.rank)
    return assigned


def _check_rule(
    rule: MethodRule,
    matched: list[str],
    valid: Mapping[str, tuple[str, ...]],
    kinds: Mapping[str, str],
    skipped: Mapping[str, str],
) -> None:
    if not matched:
        blocked = {n: why for n, why in skipped.items() if pattern_matches(rule.pattern, n)}
        if blocked:
            detail = "; ".join(f"{n}: {why}" for n, why in list(blocked.items())[:5])
            raise MethodError(f"--method {rule.text}: no compressible layer matches ({detail})")
        raise MethodError(
            f"--method {rule.text}: no layer matches {rule.pattern!r}; compressible layers are: "
            + ", ".join(valid)
        )
    if rule.method in ("auto", "dense"):
        return
    if not any(rule.method in valid[n] for n in matched):
        shown = "; ".join(f"{n} ({KIND_LABELS[kinds[n]]}: {', '.join(valid[n])})" for n in matched[:5])
        raise MethodError(
            f"--method {rule.text}: {rule.method} does not fit any matched layer; valid methods are "
            f"{shown}" + (f" and {len(matched) - 5} more" if len(matched) > 5 else "")
        )


def _check_default(rule: MethodRule, valid: Mapping[str, tuple[str, ...]], kinds: Mapping[str, str]) -> None:
    if rule.method in ("auto", "dense"):
        return
    allowed = {
        "default_conv": ("tucker2", "cp"),
        "default_pointwise": ("svd", "tt"),
        "default_linear": ("svd", "tt"),
        "default": FACTORIZATIONS,
    }[rule.pattern]
    if rule.method not in allowed:
        raise MethodError(
            f"{rule.text}: {rule.method} cannot factorize that layer kind; choose one of "
            f"{', '.join((*allowed, 'auto', 'dense'))}"
        )
