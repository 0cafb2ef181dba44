"""Models on the box: uploaded files checked by sha256 and by the ONNX contract, one active, rollback.

Files live in `<data_dir>/models/registry/<id>.onnx`; `registry.json` records each entry's sha256 so a file
changed on disk after registration is refused at activation (tampering or corruption).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from vision.inspector import Inspector, ModelFileError
from vision.teach import TeachReport
from vision.teach_defects import DefectTeachReport


class ModelEntry(BaseModel):
    id: str
    name: str
    version: str
    sha256: str
    size_bytes: int
    created_at: str
    active: bool = False
    teach: TeachReport | None = None  # a model taught "this is normal": its before/after figures
    teach_defects: DefectTeachReport | None = None  # a model taught the confirmed defects: its figures


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ModelRegistry:
    """Keeps the list of known models and which one is active; loading is the runtime's job."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._index_path = self.root / "registry.json"
        self._lock = threading.Lock()
        self._entries: dict[str, ModelEntry] = {}
        self._history: list[str] = []  # activation order, last is active
        self._load_index()

    # ---- persistence -------------------------------------------------------------------------
    def _load_index(self) -> None:
        if not self._index_path.exists():
            return
        data = json.loads(self._index_path.read_text())
        self._entries = {e["id"]: ModelEntry(**e) for e in data.get("entries", [])}
        self._history = [h for h in data.get("history", []) if h in self._entries]

    def _save_index(self) -> None:
        payload = {"entries": [e.model_dump() for e in self._entries.values()], "history": self._history}
        tmp = self._index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, self._index_path)

    # ---- queries -----------------------------------------------------------------------------
    def path_of(self, model_id: str) -> Path:
        return self.root / f"{model_id}.onnx"

    @property
    def active_id(self) -> str | None:
        return self._history[-1] if self._history else None

    def get(self, model_id: str) -> ModelEntry:
        try:
            return self._entries[model_id]
        except KeyError:
            raise KeyError(f"unknown model id {model_id!r}; known: {sorted(self._entries)}") from None

    def list(self) -> list[ModelEntry]:
        active = self.active_id
        return [e.model_copy(update={"active": e.id == active}) for e in self._entries.values()]

    def previous_id(self) -> str | None:
        return self._history[-2] if len(self._history) >= 2 else None

    # ---- changes -----------------------------------------------------------------------------
    def register(
        self,
        data: bytes,
        filename: str,
        expected_sha256: str,
        teach: TeachReport | None = None,
        teach_defects: DefectTeachReport | None = None,
    ) -> ModelEntry:
        """Check the upload's sha256 and ONNX contract before it is kept; refuse otherwise. `teach` (taught
        normal) or `teach_defects` (taught the confirmed defects) keeps a taught model's figures with its
        entry."""
        actual = sha256_bytes(data)
        if actual != expected_sha256.strip().lower():
            raise ValueError(f"sha256 mismatch for {filename!r}: expected {expected_sha256}, got {actual}")
        with tempfile.NamedTemporaryFile(dir=self.root, suffix=".onnx", delete=False) as tmp:
            tmp.write(data)
            tmp_path = Path(tmp.name)
        try:
            info = Inspector(tmp_path, threads=1, expected_sha256=actual).info
        except ModelFileError:
            tmp_path.unlink(missing_ok=True)
            raise
        model_id = f"{info.name}-{actual[:12]}"
        os.replace(tmp_path, self.path_of(model_id))
        entry = ModelEntry(
            id=model_id,
            name=info.name,
            version=info.version,
            sha256=actual,
            size_bytes=len(data),
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            teach=teach,
            teach_defects=teach_defects,
        )
        with self._lock:
            self._entries[model_id] = entry
            self._save_index()
        return entry

    def register_file(self, path: str | Path) -> ModelEntry:
        """Adopt a model built on the box (first-run auto-build, `compress`)."""
        data = Path(path).read_bytes()
        digest = sha256_bytes(data)
        for entry in self._entries.values():
            if entry.sha256 == digest and self.path_of(entry.id).exists():
                return entry
        return self.register(data, Path(path).name, digest)

    def mark_active(self, model_id: str) -> None:
        with self._lock:
            self.get(model_id)
            if not self._history or self._history[-1] != model_id:
                self._history.append(model_id)
                self._history = self._history[-20:]
            self._save_index()

    def mark_rolled_back(self) -> str:
        """Drop the active model from the history; return the one to load instead."""
        with self._lock:
            if len(self._history) < 2:
                raise ValueError("no previous model to roll back to")
            self._history.pop()
            self._save_index()
            return self._history[-1]

    def export_copy(self, model_id: str, dest: str | Path) -> None:
        shutil.copyfile(self.path_of(model_id), dest)
