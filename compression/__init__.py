"""Tensor-network compression of the anomaly model: factorized layers, rank selection to a budget,
healing by distillation, int8 quantization and reports. Heavy imports stay in the submodules."""

from compression.budget import Budget, parse_budget, parse_rank_terms
from compression.errors import BudgetError, LayerNotFactorizableError

__all__ = ["Budget", "BudgetError", "LayerNotFactorizableError", "parse_budget", "parse_rank_terms"]
