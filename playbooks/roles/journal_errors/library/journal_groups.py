#!/usr/bin/python
"""Read the journal's error lines of the last minutes and group them by unit and message pattern."""
from __future__ import annotations

import json
import re

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: journal_groups
short_description: The journal's error lines (priority err and worse) grouped by unit and message pattern (read-only)
description:
  - Runs journalctl for the window, at most 20000 lines. A message's pattern is the message with numbers, hex
    strings and addresses replaced by placeholders, so that "timeout after 31 ms" and "timeout after 907 ms" are
    one group. Messages are cut to 300 characters. Changes nothing.
options:
  minutes: {description: How far back to read., type: int, default: 10}
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


def main() -> None:
    module = AnsibleModule(argument_spec={"minutes": {"type": "int", "default": 10}, "top": {"type": "int", "default": 5}},
                           supports_check_mode=True)
    minutes, top = module.params["minutes"], module.params["top"]
    if not 1 <= minutes <= 120 or not 1 <= top <= 20:
        module.fail_json(msg=f"refusing minutes={minutes} top={top}: 1 to 120 minutes, 1 to 20 groups")
    rc, out, err = module.run_command(["journalctl", "--priority", "err", "--since", f"-{minutes}min", "--output", "json",
                                       "--no-pager", "--lines", str(_MAX_LINES)])
    if rc != 0:
        module.fail_json(msg=f"journalctl: {err.strip()[:300]}")
    groups: dict[tuple[str, str], dict] = {}
    lines = 0
    for raw in out.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        message = entry.get("MESSAGE")
        if not isinstance(message, str):      # binary messages come as byte lists
            continue
        lines += 1
        message = message[:300]
        unit = entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER") or "?"
        key = (unit, pattern(message))
        group = groups.setdefault(key, {"unit": unit, "pattern": key[1], "count": 0, "example": message})
        group["count"] += 1
    ranked = sorted(groups.values(), key=lambda g: -g["count"])
    units: dict[str, int] = {}
    for g in ranked:
        units[g["unit"]] = units.get(g["unit"], 0) + g["count"]
    module.exit_json(changed=False, report={
        "minutes": minutes, "lines": lines, "truncated": lines >= _MAX_LINES,
        "groups": ranked[:top], "by_unit": [{"unit": u, "count": n} for u, n in sorted(units.items(), key=lambda i: -i[1])][:top],
    })


if __name__ == "__main__":
    main()
