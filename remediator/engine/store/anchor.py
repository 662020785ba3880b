"""The audit chain's anchor: its head, exported after every commit that appends, where the store's writer
cannot take it back.

A hash chain shows an edited or removed event in the middle, but not a tail cut off together with its head
row: what is left is a shorter, intact chain. So each new head (`remediator audit head SEQ:HASH`) also goes
to syslog (the journal keeps it on a systemd host) and, when set, to an append-only file, and
`remediator audit verify --heads FILE` (or `--expect-head SEQ:HASH`) finds any exported head the chain no
longer reaches.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import re
from collections.abc import Callable
from pathlib import Path

__all__ = ["HeadSink", "LINE", "parse_heads", "sinks", "syslog_missing"]

HeadSink = Callable[[int, str], None]
LINE = "remediator audit head {seq}:{hash}"
_HEAD = re.compile(r"audit head (\d+):([0-9a-f]{64})\b")
_SYSLOG = "/dev/log"
log = logging.getLogger(__name__)


def sinks(syslog: bool, file: Path | None) -> list[HeadSink]:
    """The sinks the settings ask for; syslog only where the host has one (a container may not)."""
    out: list[HeadSink] = []
    if syslog and os.path.exists(_SYSLOG):
        handler = logging.handlers.SysLogHandler(address=_SYSLOG, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV)
        handler.ident = "remediator-audit: "
        out.append(lambda seq, digest: handler.emit(logging.makeLogRecord(
            {"msg": LINE.format(seq=seq, hash=digest), "levelno": logging.INFO, "levelname": "INFO"})))
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

        def to_file(seq: int, digest: str) -> None:
            # O_APPEND: the writer only ever adds (make the file append-only with `chattr +a` to keep it so)
            fd = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (LINE.format(seq=seq, hash=digest) + "\n").encode())
            finally:
                os.close(fd)
        out.append(to_file)
    return out


def syslog_missing(syslog: bool, file: Path | None) -> str | None:
    """What to tell the operator when syslog was asked for and this host has none (serve says it at start)."""
    if not syslog or os.path.exists(_SYSLOG):
        return None
    return (f"audit_anchor_syslog is on, but this host has no {_SYSLOG} (a container?): audit heads do not go to syslog"
            + (f"; they go to {file}" if file is not None else ""))


def parse_heads(text: str) -> list[tuple[int, str]]:
    """Every exported head in a text: the anchor file, `journalctl -t remediator-audit` output, a log."""
    return [(int(seq), digest) for seq, digest in _HEAD.findall(text)]
