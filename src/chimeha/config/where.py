"""Where a configuration line is, and what was found there: the two types every stage shares.

Kept apart from the model's dataclasses so that modules defining parts of the
model (``model_notify`` ...) can use them without importing the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Where", "Diagnostic", "Severity", "NOWHERE"]

Severity = Literal["error", "warning"]

@dataclass(frozen=True, order=True)
class Where:
    """A position in a config file (1-based line)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


NOWHERE = Where("<default>", 0)


@dataclass(frozen=True)
class Diagnostic:
    """One finding about a config: ``FILE:LINE: severity: message [code]``."""

    file: str
    line: int
    severity: Severity
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message} [{self.code}]"

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
        }
