"""What a station remembers about releases across restarts: which ones it handled (by signature) and the
newest release time it acted on, so a replayed or older signed release cannot roll the model back."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel

from device.wire.fleet import StationReport
from device.wire.release import parse_time

KEEP_HANDLED = 200


class HandledRelease(BaseModel):
    signature: str
    report: StationReport


class RolloutState(BaseModel):
    handled: dict[str, HandledRelease] = {}
    newest_created_at: str | None = None

    @classmethod
    def load(cls, path: Path) -> RolloutState:
        if not path.exists():
            return cls()
        return cls.model_validate_json(path.read_text())

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        while len(self.handled) > KEEP_HANDLED:  # dicts keep insertion order: the oldest go first
            del self.handled[next(iter(self.handled))]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=2))
        os.replace(tmp, path)

    def is_older_than_newest(self, created_at: str) -> bool:
        return self.newest_created_at is not None and parse_time(created_at) < parse_time(
            self.newest_created_at
        )
