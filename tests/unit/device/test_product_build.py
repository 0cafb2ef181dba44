"""A captured product's model is built on the station, registered, and checked on held-back captures.

Real parts: a real build template (ONNX), the real station build (ONNX Runtime + numpy) and the real
model registry; the images are tiny synthetic parts written in the capture's layout.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixture_parts import aligned_parts, texture_crops, write_good_images

from device.station.model_registry import ModelRegistry
from device.station.product_build import ProductBuild
from vision.build_template import export_build_template
from vision.config import ModelSettings
from vision.inspector import Inspector
from vision.station_build import StationBuildError


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("template") / "build-template"
    export_build_template(ModelSettings(image_size=64), out)
    (out / "bank.onnx").unlink()  # a station given the Gaussian template only
    return out


def _build(template: Path, tmp_path: Path, product: str, registry: ModelRegistry) -> ProductBuild:
    job = ProductBuild(
        template,
        tmp_path / "datasets",
        product,
        tmp_path / "builds",
        lambda path: registry.register_file(path).id,
    )
    assert job.wait(120)
    return job


def test_a_captured_product_becomes_a_registered_model_with_its_held_back_check(
    template: Path, tmp_path: Path
) -> None:
    write_good_images(aligned_parts(20), tmp_path / "datasets", "housing")
    registry = ModelRegistry(tmp_path / "registry")
    status = _build(template, tmp_path, "housing", registry).status()

    assert status.state == "done", status.error
    assert (
        status.model_id is not None
        and registry.get(status.model_id).name == "padim-efficientnet_lite0-housing"
    )
    assert status.fit_images == 16 and len(status.held_back_scores) == 4
    assert status.threshold is not None and status.false_reject_rate is not None
    assert status.false_reject_rate == sum(s > status.threshold for s in status.held_back_scores) / 4
    assert [w.score for w in status.worst] == sorted(status.held_back_scores, reverse=True)
    assert all((tmp_path / "datasets/housing/train/good" / w.image).exists() for w in status.worst)
    Inspector(registry.path_of(status.model_id))  # a whole, loadable model with the contract
    assert not list((tmp_path / "builds").glob("*"))  # the registry keeps the only copy


def test_an_int8_line_registers_the_int8_model_checked_on_its_own_scores(tmp_path: Path) -> None:
    template = tmp_path / "build-template"
    export_build_template(ModelSettings(image_size=64, head="gaussian", int8=True), template)
    write_good_images(aligned_parts(20), tmp_path / "datasets", "housing")
    registry = ModelRegistry(tmp_path / "registry")
    job = _build(template, tmp_path, "housing", registry)
    status = job.status()
    assert status.state == "done", status.error
    assert status.model_id is not None
    info = Inspector(registry.path_of(status.model_id)).info
    assert info.version.endswith("-int8")
    # The panel's held-back check is the deployed int8 model's: its threshold, its scores.
    assert status.threshold == info.threshold
    assert status.false_reject_rate == sum(s > info.threshold for s in status.held_back_scores) / 4


def test_a_product_the_station_cannot_build_fails_with_the_reason_and_registers_nothing(
    template: Path, tmp_path: Path
) -> None:
    write_good_images(texture_crops(12), tmp_path / "datasets", "cloth")
    registry = ModelRegistry(tmp_path / "registry")
    before = registry.list()
    status = _build(template, tmp_path, "cloth", registry).status()
    assert status.state == "failed" and "need the bank head" in (status.error or "")
    assert status.model_id is None and registry.list() == before


def test_a_build_is_refused_up_front_without_images_or_template(template: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    write_good_images(aligned_parts(3), tmp_path / "datasets", "few")
    with pytest.raises(ValueError, match="at least 8"):
        ProductBuild(template, tmp_path / "datasets", "few", tmp_path, lambda p: registry.register_file(p).id)
    write_good_images(aligned_parts(10), tmp_path / "datasets", "many")
    with pytest.raises(StationBuildError, match="edgeinspect template"):
        ProductBuild(
            tmp_path / "absent",
            tmp_path / "datasets",
            "many",
            tmp_path,
            lambda p: registry.register_file(p).id,
        )
