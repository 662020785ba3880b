#!/usr/bin/python
"""Read the journal's error lines of the last minutes and group them by unit and message pattern."""
from __future__ import annotations

import json
import os
import pwd
import re
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: journal_groups
short_description: The journal's error lines (priority err and worse) grouped by unit and message pattern (read-only)
description:
  - Runs journalctl for the window, at most 20000 lines. The window starts at `since` (seconds since the epoch:
    the alert's start, or the last verified fix on the host) but never more than `minutes` back.
  - Lines that remediator's own logins make (sshd's session lines, such as pam_env's, of a session that logged in as
    the user this module runs as, or became root from) are left out and counted, so that they are never named as a
    cause. A message's pattern is the message with numbers, hex
    strings and addresses replaced by placeholders, so that "timeout after 31 ms" and "timeout after 907 ms" are
    one group. Messages are cut to 300 characters. Changes nothing.
options:
  minutes: {description: How far back to read at most., type: int, default: 10}
  since: {description: Read from here (seconds since the epoch); 0 reads the whole `minutes`., type: int, default: 0}
  top: {description: How many groups to report., type: int, default: 5}
"""

_MAX_LINES = 20000
_VARIABLE = [
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<addr>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\d+"), "<n>"),
]


def pattern(message: str) -> str:
    for regex, placeholder in _VARIABLE:
        message = regex.sub(placeholder, message)
    return message


def _journal(module: AnsibleModule, args: list[str]) -> list[dict]:
    rc, out, err = module.run_command(["journalctl", *args, "--output", "json", "--no-pager", "--lines", str(_MAX_LINES)])
    if rc != 0:
        module.fail_json(msg=f"journalctl: {err.strip()[:300]}")
    entries = []
    for raw in out.splitlines():
        try:
            entries.append(json.loads(raw))
        except ValueError:
            continue
    return entries


def _login_user() -> str:
    """The user remediator logged in as (with become, the one sudo was run by)."""
    return os.environ.get("SUDO_USER") or pwd.getpwuid(os.getuid()).pw_name


def own_sessions(entries: list[dict], user: str) -> set[str]:
    """The sshd processes of sessions that logged in as `user`: their lines are remediator's own noise."""
    accepted = re.compile(rf"^Accepted \S+ for {re.escape(user)} from ")
    return {e["_PID"] for e in entries if isinstance(e.get("MESSAGE"), str) and accepted.match(e["MESSAGE"]) and "_PID" in e}


def main() -> None:
    module = AnsibleModule(argument_spec={"minutes": {"type": "int", "default": 10}, "since": {"type": "int", "default": 0},
                                          "top": {"type": "int", "default": 5}},
                           supports_check_mode=True)
    minutes, since, top = module.params["minutes"], module.params["since"], module.params["top"]
    if not 1 <= minutes <= 120 or not 1 <= top <= 20 or since < 0:
        module.fail_json(msg=f"refusing minutes={minutes} top={top} since={since}: 1 to 120 minutes, 1 to 20 groups, "
                             "since in seconds since the epoch")
    now = time.time()
    start = int(max(now - minutes * 60, min(since, now)))
    window = [f"--since=@{start}"]
    own = own_sessions(_journal(module, ["-t", "sshd", "-t", "sshd-session", *window]), _login_user())
    groups: dict[tuple[str, str], dict] = {}
    lines = ignored = 0
    for entry in _journal(module, ["--priority", "err", *window]):
        message = entry.get("MESSAGE")
        if not isinstance(message, str):      # binary messages come as byte lists
            continue
        if entry.get("_PID") in own and entry.get("SYSLOG_IDENTIFIER") in ("sshd", "sshd-session"):
            ignored += 1
            continue
        lines += 1
        message = message[:300]
        unit = entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER") or "?"
        at = int(entry.get("__REALTIME_TIMESTAMP", "0")) / 1e6
        key = (unit, pattern(message))
        group = groups.setdefault(key, {"unit": unit, "pattern": key[1], "count": 0, "example": message,
                                        "first_seen_ago_s": round(now - at)})
        group["count"] += 1
        group["last_seen_ago_s"] = round(now - at)
    ranked = sorted(groups.values(), key=lambda g: -g["count"])
    units: dict[str, int] = {}
    for g in ranked:
        units[g["unit"]] = units.get(g["unit"], 0) + g["count"]
    module.exit_json(changed=False, report={
        "minutes": minutes, "window_s": round(now - start), "lines": lines, "truncated": lines >= _MAX_LINES,
        "own_lines_ignored": ignored,
        "groups": ranked[:top], "by_unit": [{"unit": u, "count": n} for u, n in sorted(units.items(), key=lambda i: -i[1])][:top],
    })


if __name__ == "__main__":
    main()
