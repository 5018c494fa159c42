"""The rows of the gpu_check table: written one JSON line at a time by each part (so a part killed at its time
limit keeps what it measured), read back, printed as one table and saved as JSON."""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    part: str  # "sample" | "lora" | "full" | "5b"
    what: str  # the measured quantity, with its conditions
    ours: float | None  # None: not measured (see note)
    unit: str
    diffusers: float | None = None  # the same quantity measured side by side with diffusers, where it applies
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """ours / diffusers (below 1: ours is faster or smaller)."""
        if self.ours is None or not self.diffusers:
            return None
        return self.ours / self.diffusers

    def to_json(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


class RowWriter:
    """Appends rows of one part to a JSON-lines file, flushed at once."""

    def __init__(self, path: Path, part: str):
        self.path, self.part = Path(path), part

    def add(self, what: str, ours: float | None, unit: str, diffusers: float | None = None, note: str = "") -> None:
        row = Row(self.part, what, ours, unit, diffusers, note)
        with self.path.open("a") as handle:
            handle.write(json.dumps(asdict(row)) + "\n")
        shown = "-" if ours is None else f"{ours:.4g}"
        print(f"[gpu_check {self.part}] {what}: {shown} {unit}" + (f" (diffusers {diffusers:.4g})" if diffusers else ""),
              flush=True)


def read_rows(path: Path) -> list[Row]:
    if not Path(path).is_file():
        return []
    return [Row(**json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def format_table(rows: list[Row]) -> str:
    header = ("part", "what", "ours", "diffusers", "ratio", "unit", "note")
    cells = [header] + [(r.part, r.what, format_value(r.ours), format_value(r.diffusers), format_value(r.ratio), r.unit,
                         r.note) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths)) + "  " + line[-1] for line in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)


def write_json(path: Path, rows: list[Row], header: dict) -> None:
    Path(path).write_text(json.dumps({**header, "rows": [row.to_json() for row in rows]}, indent=2) + "\n")
