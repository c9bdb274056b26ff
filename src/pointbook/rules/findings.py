"""Lint findings: a place, a stable code and a message a pack author can act on."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    file: str
    line: int
    code: str
    severity: Severity
    message: str

    def format(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}[{self.code}]: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)
