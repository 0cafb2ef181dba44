"""`model.head: auto` picks the per-position Gaussian for aligned parts and the bank for textures."""

from __future__ import annotations

import pytest
from fixture_parts import aligned_parts, texture_crops

from vision.config import ModelSettings
from vision.head_choice import ALIGNED_BELOW, HeadChoice, choose_head, resolve_head
from vision.inspector import Inspector
from vision.train import build_model_files, model_config

SIZE = 64


@pytest.mark.parametrize(("images", "head"), [(aligned_parts(16), "gaussian"), (texture_crops(16), "bank")])
def test_auto_picks_the_head_that_fits_how_aligned_the_parts_are(images, head) -> None:
    choice = choose_head(images, ModelSettings(image_size=SIZE))
    assert choice.head == head
    assert (choice.alignment < ALIGNED_BELOW) == (head == "gaussian")
    assert f"{choice.alignment:.3f}" in choice.reason


def test_a_named_head_is_kept_and_auto_must_be_decided_before_a_model_is_built() -> None:
    settings, choice = resolve_head(ModelSettings(head="bank", image_size=SIZE), aligned_parts(4))
    assert settings.head == "bank" and choice is None
    with pytest.raises(ValueError, match="head is auto"):
        model_config(ModelSettings(image_size=SIZE))


def test_the_built_file_names_the_head_auto_chose_and_why(tmp_path) -> None:
    path = build_model_files(
        list(aligned_parts(12, seed=1)),
        tmp_path / "m.onnx",
        ModelSettings(image_size=SIZE),
        "t",
        progress=False,
    )
    metadata = Inspector(path).info.metadata
    assert metadata["edgeinspect.head"] == "gaussian"
    assert metadata["edgeinspect.head_choice"].startswith("auto: alignment ")


def test_a_product_near_the_boundary_is_told_to_compare_both_heads() -> None:
    # KolektorSDD's commutators measure 0.734 (the bank wins there), MTD's tiles 0.701 (the Gaussian wins).
    assert "near the boundary" in HeadChoice("bank", 0.734).reason
    assert "near the boundary" in HeadChoice("gaussian", 0.701).reason
    assert "near the boundary" not in HeadChoice("gaussian", 0.26).reason
    assert "near the boundary" not in HeadChoice("bank", 0.9).reason
