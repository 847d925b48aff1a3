"""Config dataclasses for ``global_defs`` mail alerts and the startup / shutdown scripts.

Kept apart from :mod:`chimeha.config.model` (near its size limit).  The
``smtp_alert`` flags are ``None`` when not written, because keepalived 2.2.7
tells "off" from "unset" when it resolves an instance's or a real server's
default (see :mod:`chimeha.runtime.mail_format`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import NOWHERE, Where


@dataclass(frozen=True)
class SmtpSettings:
    """``smtp_helo_name``, ``smtp_alert``, ``smtp_alert_vrrp``, ``smtp_alert_checker``, ``no_email_faults``..."""

    helo_name: str | None = None
    alert: bool | None = None
    alert_vrrp: bool | None = None
    alert_checker: bool | None = None
    no_email_faults: bool = False
    no_checker_emails: bool = False


@dataclass(frozen=True)
class LifecycleScript:
    """``startup_script`` / ``shutdown_script COMMAND [username [groupname]]`` and its ``*_timeout``."""

    argv: tuple[str, ...]
    timeout: float = 10.0  # keepalived 2.2.7's default (global_parser.c)
    user: str | None = None
    group: str | None = None
    where: Where = field(default=NOWHERE, compare=False)
