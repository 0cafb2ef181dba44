"""Budgets and fixed ranks: well-formed ones parse, malformed ones fail with a message naming the problem."""

from __future__ import annotations

import pytest

from compression.budget import Budget, parse_budget, parse_rank_terms, validate_fixed_ranks
from compression.errors import BudgetError


@pytest.mark.parametrize(
    "text,expected",
    [
        ("params=0.2", Budget(params=0.2)),
        ("params=20%", Budget(params=0.2)),
        ("latency=25ms", Budget(latency_ms=25.0)),
        (" latency = 12.5 , drop=0.5% ", Budget(latency_ms=12.5, drop=0.005)),
        ("drop=0", Budget(drop=0.0)),
    ],
)
def test_good_budgets_parse(text: str, expected: Budget) -> None:
    parsed = parse_budget(text)
    assert parsed.params == pytest.approx(expected.params) if expected.params else parsed.params is None
    assert parsed.latency_ms == expected.latency_ms
    assert parsed.drop == pytest.approx(expected.drop) if expected.drop is not None else parsed.drop is None


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "empty budget"),
        ("params", "not key=value"),
        ("params=abc", "not a number"),
        ("params=0", r"share in \(0, 1\]"),
        ("params=1.5", r"share in \(0, 1\]"),
        ("latency=-3", "positive number of milliseconds"),
        ("drop=1", r"must be in \[0, 1\)"),
        ("speed=2", "unknown budget term 'speed'"),
        ("params=0.2,params=0.3", "given twice"),
        ("params=nan", "finite"),
    ],
)
def test_bad_budgets_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(BudgetError, match=message):
        parse_budget(text)
    assert issubclass(BudgetError, ValueError)


def test_rank_terms_parse_and_reject_malformed() -> None:
    assert parse_rank_terms(["backbone.blocks.1.0.conv_pw=16", "memory_bank.similarity = 32"]) == {
        "backbone.blocks.1.0.conv_pw": 16,
        "memory_bank.similarity": 32,
    }
    with pytest.raises(BudgetError, match="not an integer"):
        parse_rank_terms(["layer=abc"])
    with pytest.raises(BudgetError, match="must look like"):
        parse_rank_terms(["=3"])
    with pytest.raises(BudgetError, match="twice"):
        parse_rank_terms(["a=1", "a=2"])


def test_fixed_ranks_are_checked_against_the_model() -> None:
    full = {"backbone.4": 16, "memory_bank.similarity": 48}
    assert validate_fixed_ranks({"backbone.4": 8}, full) == {"backbone.4": 8}
    with pytest.raises(BudgetError, match=r"unknown or non-compressible layer 'backbone\.9'"):
        validate_fixed_ranks({"backbone.9": 4}, full)
    with pytest.raises(BudgetError, match=r"outside 1\.\.16"):
        validate_fixed_ranks({"backbone.4": 17}, full)
    with pytest.raises(BudgetError, match="outside"):
        validate_fixed_ranks({"backbone.4": 0}, full)
