"""Per-layer method rules: parsing, globs and kind defaults, precedence, and errors that name the choices."""

from __future__ import annotations

import pydantic
import pytest
import torch
from torch import nn

from compression.config import CompressionSettings
from compression.inventory import Inventory, build_inventory
from compression.methods import (
    METHOD_CHOICES,
    MethodError,
    MethodRule,
    parse_method_terms,
    pattern_matches,
    rules_from_mapping,
    valid_methods,
)

EXAMPLE = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)


def inventory(model: nn.Module, *terms: str) -> Inventory:
    return build_inventory(model, EXAMPLE, min_params=500, timing_runs=1, rules=parse_method_terms(terms))


def test_terms_parse_to_rules_in_order() -> None:
    rules = parse_method_terms(["blocks.5.*=tt", "memory_bank=svd:32", "default_conv = tucker2", "x=AUTO"])
    assert rules == [
        MethodRule("blocks.5.*", "tt"),
        MethodRule("memory_bank", "svd", 32),
        MethodRule("default_conv", "tucker2"),
        MethodRule("x", "auto"),
    ]
    assert rules_from_mapping({"memory_bank": "tt:8"}) == [MethodRule("memory_bank", "tt", 8)]


@pytest.mark.parametrize(
    "term,message",
    [
        ("conv_pw=qr", "unknown method 'qr'.*choose one of svd, tucker2, cp, tt, auto, dense"),
        ("conv_pw", "PATTERN=METHOD"),
        ("conv_pw=svd:zero", "not an integer"),
        ("conv_pw=svd:0", "positive integer"),
        ("conv_pw=auto:8", "rank can only be fixed"),
    ],
)
def test_malformed_terms_are_refused_with_the_valid_syntax(term: str, message: str) -> None:
    with pytest.raises(MethodError, match=message):
        parse_method_terms([term])


def test_globs_match_runs_of_dotted_name_components() -> None:
    assert pattern_matches("blocks.5.*", "backbone.blocks.5.0.conv_pw")
    assert pattern_matches("memory_bank", "memory_bank.similarity")
    assert pattern_matches("conv_pw", "backbone.blocks.2.1.conv_pw")
    assert pattern_matches("backbone.blocks.5.0.conv_pw", "backbone.blocks.5.0.conv_pw")
    assert not pattern_matches("blocks.5.*", "backbone.blocks.4.0.conv_pw")
    assert not pattern_matches("conv", "backbone.blocks.2.1.conv_pw")


def test_valid_methods_follow_the_layer_kind() -> None:
    assert valid_methods(nn.Conv2d(8, 8, 3)) == ("tucker2", "cp")
    assert valid_methods(nn.Conv2d(8, 8, 1)) == ("svd", "tt")
    assert valid_methods(nn.Conv2d(8, 8, 1, stride=2)) == ("svd",)  # TT reshapes rows: stride-1 only
    assert valid_methods(nn.Linear(8, 8)) == ("svd", "tt")


def test_rules_assign_methods_per_layer_with_kind_defaults_and_precedence(toy_model) -> None:
    layers = inventory(
        toy_model, "default_conv=cp", "backbone.8=tt:6", "memory_bank=svd", "backbone.*=tucker2"
    ).by_name()
    # backbone.* names every layer, but tucker2 fits only the kxk convs; it is later than default_conv
    assert layers["backbone.0"].candidates == ("tucker2",) and layers["backbone.2"].method == "tucker2"
    assert layers["backbone.8"].method == "tt" and layers["backbone.8"].fixed_rank == 6
    assert layers["backbone.8"].rule == "backbone.8=tt:6"
    assert layers["backbone.6"].method == "svd" and layers["backbone.6"].rule == "settings linear_method=svd"
    assert layers["memory_bank.similarity"].method == "svd"
    later = inventory(toy_model, "backbone.2=cp", "backbone.*=tucker2", "backbone.2=cp").by_name()
    assert later["backbone.2"].method == "cp"


def test_auto_and_dense_rules(toy_model) -> None:
    layers = inventory(toy_model, "default=auto", "backbone.6=dense").by_name()
    assert layers["backbone.0"].candidates == ("tucker2", "cp") and layers["backbone.0"].auto
    assert layers["memory_bank.similarity"].candidates == ("svd", "tt")
    assert not layers["backbone.6"].compressible and "backbone.6=dense" in layers["backbone.6"].reason
    settings = CompressionSettings(conv_method="auto")
    auto_conv = build_inventory(toy_model, EXAMPLE, min_params=500, conv_method=settings.conv_method)
    assert auto_conv.by_name()["backbone.2"].auto and not auto_conv.by_name()["backbone.8"].auto


def test_unknown_layer_names_the_compressible_layers(toy_model) -> None:
    with pytest.raises(MethodError, match=r"no layer matches 'blocks\.9\.\*'") as caught:
        inventory(toy_model, "blocks.9.*=tt")
    for name in ("backbone.0", "backbone.8", "memory_bank.similarity"):
        assert name in str(caught.value)


def test_a_method_that_fits_no_matched_layer_names_the_valid_ones(toy_model) -> None:
    with pytest.raises(MethodError, match=r"backbone\.0 \(kxk conv: tucker2, cp\)"):
        inventory(toy_model, "backbone.0=svd")
    with pytest.raises(MethodError, match="groups=4"):
        inventory(toy_model, "backbone.4=svd")  # exists, but a grouped conv cannot be factorized
    with pytest.raises(MethodError, match="choose one of tucker2, cp, auto, dense"):
        inventory(toy_model, "default_conv=svd")


def test_settings_validate_methods_at_load_time() -> None:
    assert CompressionSettings(methods={"blocks.5.*": "tt:8"}).methods == {"blocks.5.*": "tt:8"}
    with pytest.raises(pydantic.ValidationError, match="choose one of " + ", ".join(METHOD_CHOICES)):
        CompressionSettings(methods={"blocks.5.*": "tensor-train"})
