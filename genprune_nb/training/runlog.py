"""Per-run metrics as JSON lines (``<run>/metrics.jsonl``), one record per logged event."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import naming_write_failures
from ..storage import atomic


class RunLog:
    """Append-only JSONL log; on resume, records beyond the restored step are dropped."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def append(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with naming_write_failures(self.path), open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    def records(self) -> list[dict[str, Any]]:
        """All records; a partial last line (a kill mid-write) is ignored, a bad line elsewhere is an error.

        Every record is a JSON object with an integer ``step``; errors name the file and line (blank ones count).
        """
        if not self.path.exists():
            return []
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise ValueError(f"{self.path}: not a metrics log, not UTF-8 text ({e})") from None
        last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
        out = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if i == last:
                    continue
                raise ValueError(f"{self.path}: line {i + 1} is not a JSON record") from None
            step = record.get("step") if isinstance(record, dict) else None
            if not isinstance(step, int) or isinstance(step, bool):
                raise ValueError(f"{self.path}: line {i + 1} is not a metrics record (a JSON object with an "
                                 f"integer step)")
            out.append(record)
        return out

    def truncate_after(self, step: int) -> None:
        """Keep only records with ``step <= step`` (a killed run may have logged past its last checkpoint)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [r for r in self.records() if r.get("step", 0) <= step]
        atomic.write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
