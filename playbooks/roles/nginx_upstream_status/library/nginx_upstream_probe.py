#!/usr/bin/python
"""Read an nginx upstream file and probe each backend's /health directly, and the front (read-only)."""
from __future__ import annotations

import re
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: nginx_upstream_probe
short_description: The backends of one nginx upstream block, each one's health, and the front's (read-only)
description:
  - Parses the `server` lines of the file (address, weight, down). Each backend gets one GET /health with a two
    second timeout, straight to its address (loopback backends only); the front gets ten GETs of /health through
    nginx. Changes nothing.
options:
  file: {description: The upstream file., type: str, required: true}
  front: {description: Where nginx serves the upstream (http://127.0.0.1:PORT)., type: str, required: true}
"""

SERVER = re.compile(r"^\s*server\s+([^\s;]+)([^;]*);", re.MULTILINE)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def main() -> None:
    module = AnsibleModule(argument_spec={"file": {"type": "str", "required": True}, "front": {"type": "str", "required": True}},
                           supports_check_mode=True)
    try:
        with open(module.params["file"]) as fh:
            text = fh.read()
    except OSError as exc:
        module.fail_json(msg=f"{module.params['file']}: {exc.strerror}")
    backends = []
    for address, rest in SERVER.findall(text):
        weight = re.search(r"\bweight=(\d+)", rest)
        down = bool(re.search(r"\bdown\b", rest))
        status = _status(f"http://{address}/health") if address.startswith("127.0.0.1:") else 0
        backends.append({"address": address, "weight": int(weight.group(1)) if weight else 1, "down": down,
                         "health_status": status, "healthy": status == 200})
    answers = [_status(module.params["front"] + "/health") for _ in range(10)]
    module.exit_json(changed=False, report={
        "file": module.params["file"], "backends": backends,
        "in_rotation": sum(1 for b in backends if not b["down"]),
        "front_ok": sum(1 for a in answers if a == 200), "front_asked": len(answers),
        "serving": all(a == 200 for a in answers),
    })


if __name__ == "__main__":
    main()
