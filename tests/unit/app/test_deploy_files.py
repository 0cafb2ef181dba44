"""The images and compose files stay in step with the code, since Docker's engine does not run here:
each Dockerfile installs through scripts/setup.sh with its role, copies what the package build needs, and
every command and EDGEINSPECT_* variable in them is one the CLI and the settings really accept."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from app.cli import build_parser
from app.settings import Settings

REPO = Path(__file__).resolve().parents[3]
DOCKER = REPO / "docker"
ROLES = {"Dockerfile.station": "station", "Dockerfile.plant": "plant", "Dockerfile": "all"}
COMPOSE_FILES = ["compose.yaml", "compose.station.yaml", "compose.plant.yaml"]


def dockerfile(name: str) -> str:
    return (DOCKER / name).read_text()


def compose(name: str) -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


def json_array(text: str, instruction: str) -> list[str]:
    match = re.search(rf"^{instruction} (\[.*\])$", text, re.MULTILINE)
    assert match, f"no {instruction} [...] line"
    return yaml.safe_load(match.group(1))


def assert_cli_accepts(argv: list[str], where: str) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # --help exits 0; a bad command or option exits 2
        assert exc.code == 0, f"{where}: `edgeinspect {shlex.join(argv)}` is not a valid command line"


@pytest.mark.parametrize("name", sorted(ROLES))
def test_dockerfile_installs_through_setup_script_with_its_role(name: str) -> None:
    text = dockerfile(name)
    run = re.search(r"bash scripts/setup.sh --role (\S+) --venv /opt/venv", text)
    assert run, "the image must install with scripts/setup.sh, as a bare-metal box does"
    role = run.group(1).strip('"')
    if role == "$ROLE":
        role = re.search(r"^ARG ROLE=(\w+)$", text, re.MULTILINE).group(1)
    assert role == ROLES[name]
    assert "pip install" not in text, "packages come from setup.sh only, so the two cannot drift apart"


@pytest.mark.parametrize("name", sorted(ROLES))
def test_dockerfile_copies_what_the_package_build_needs(name: str) -> None:
    copied = set(re.findall(r"^COPY (\S+)", dockerfile(name), re.MULTILINE)) | {
        part
        for line in re.findall(r"^COPY (.+) \./$", dockerfile(name), re.MULTILINE)
        for part in line.split()
    }
    needed = {
        "pyproject.toml",
        "README.md",
        "scripts/setup.sh",
        "requirements",
        "app",
        "vision",
        "compression",
        "device",
    }
    assert needed <= copied, f"missing COPY: {sorted(needed - copied)}"


@pytest.mark.parametrize("name", sorted(ROLES))
def test_dockerfile_default_command_is_a_real_command(name: str) -> None:
    text = dockerfile(name)
    assert json_array(text, "ENTRYPOINT") == ["edgeinspect"]
    assert_cli_accepts(json_array(text, "CMD"), name)


def test_station_image_never_trains_and_plant_image_has_cpu_torch() -> None:
    assert "EDGEINSPECT_MODEL__AUTO_BUILD=false" in dockerfile("Dockerfile.station")
    assert "TORCH_INDEX_URL" not in dockerfile("Dockerfile.station")
    assert "download.pytorch.org/whl/cpu" in dockerfile("Dockerfile.plant")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_services_build_existing_dockerfiles_and_mount_existing_configs(name: str) -> None:
    for service, spec in compose(name)["services"].items():
        build = spec.get("build")
        if build:
            assert (DOCKER / build["context"] / build["dockerfile"]).is_file(), service
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source.endswith(".conf"):
                assert (DOCKER / source).is_file(), f"{service}: {source}"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_commands_are_real_commands(name: str) -> None:
    for service, spec in compose(name)["services"].items():
        if spec.get("image", "").startswith("edgeinspect") and "command" in spec:
            assert_cli_accepts(spec["command"], f"{name}:{service}")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_settings_variables_name_real_fields(name: str) -> None:
    for service, spec in compose(name)["services"].items():
        for variable in spec.get("environment") or {}:
            if not variable.startswith("EDGEINSPECT_"):
                continue
            path = variable.removeprefix("EDGEINSPECT_").lower().split("__")
            fields = Settings.model_fields
            for part in path[:-1]:
                assert part in fields, f"{name}:{service}: {variable}: no section {part!r}"
                fields = fields[part].annotation.model_fields
            assert path[-1] in fields, f"{name}:{service}: {variable}: no field {path[-1]!r}"


def test_station_compose_runs_the_station_image_and_plant_compose_the_plant_image() -> None:
    station = compose("compose.station.yaml")["services"]["station"]
    assert station["build"]["dockerfile"] == "docker/Dockerfile.station"
    assert station["environment"]["EDGEINSPECT_MODEL__AUTO_BUILD"] == "false"
    plant = compose("compose.plant.yaml")["services"]
    assert plant["verifier"]["command"][0] == "verify"
    assert plant["verifier"]["deploy"]["replicas"] >= 2
    assert plant["release"]["command"][:2] == ["release", "serve"]
    assert plant["broker"]["volumes"][0].startswith("./mosquitto.plant.conf:")
