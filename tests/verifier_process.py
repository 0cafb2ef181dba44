"""A real `edgeinspect verify` process for tests: started on a broker in a `$share` group, stopped cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from conftest import REPO


@dataclass
class Verifier:
    verifier_id: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM (it finishes the request in hand), SIGKILL if it does not exit."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_verifier(workdir: Path, model: Path, url: str, verifier_id: str, group: str) -> Verifier:
    """`edgeinspect verify` on `model` against the broker at `url`; its output goes to a log in `workdir`."""
    config = workdir / f"verify-{verifier_id}.yaml"
    config.write_text(
        yaml.safe_dump({"mqtt": {"url": url, "reconnect_max_s": 1.0}, "escalation": {"group": group}})
    )
    log_path = workdir / f"verify-{verifier_id}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "app.cli", "verify", "--config", str(config)),
                *("--model", str(model), "--id", verifier_id, "--threads", "1"),
            ],
            cwd=REPO,
            env=dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Verifier(verifier_id, process, log_path)
