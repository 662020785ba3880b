#!/usr/bin/python
"""Sample /proc twice: each process's memory, its growth between the samples, its CPU share, its unit."""
from __future__ import annotations

import os
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: process_sample
short_description: The top processes by memory, memory growth and CPU, over a short interval (read-only)
description:
  - Reads /proc/PID/stat, /proc/PID/status and /proc/PID/cgroup twice, interval_s apart. Growth is the change of the
    resident set between the samples, per second; CPU is the share of one core used between them. Changes nothing.
options:
  interval_s: {description: Seconds between the samples., type: int, default: 3}
  top: {description: How many processes each list holds., type: int, default: 5}
"""

TICKS = os.sysconf("SC_CLK_TCK")


def _unit(pid: str) -> str:
    """The systemd unit a process runs in (its cgroup's last .service or .scope), or ''."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            for line in fh:
                for part in reversed(line.strip().split(":", 2)[-1].split("/")):
                    if part.endswith((".service", ".scope")):
                        return part
    except OSError:
        pass
    return ""


def _sample() -> dict[str, dict]:
    seen = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{pid}/status") as fh:
                rss = next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
        except (OSError, ValueError):
            continue          # gone between listing and reading, or a kernel thread
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        seen[pid] = {"comm": comm, "rss_kb": rss, "ticks": int(fields[11]) + int(fields[12])}
    return seen


def main() -> None:
    module = AnsibleModule(argument_spec={"interval_s": {"type": "int", "default": 3}, "top": {"type": "int", "default": 5}},
                           supports_check_mode=True)
    interval, top = module.params["interval_s"], module.params["top"]
    if not 1 <= interval <= 10 or not 1 <= top <= 20:
        module.fail_json(msg=f"refusing interval_s={interval} top={top}: 1 to 10 seconds, 1 to 20 processes")
    first = _sample()
    started = time.monotonic()
    time.sleep(interval)
    second = _sample()
    took = time.monotonic() - started
    procs = []
    for pid, now in second.items():
        before = first.get(pid)
        if before is None or before["comm"] != now["comm"]:
            continue          # started during the interval: no growth to tell
        procs.append({"pid": int(pid), "comm": now["comm"], "unit": _unit(pid), "rss_kb": now["rss_kb"],
                      "growth_kb_s": round((now["rss_kb"] - before["rss_kb"]) / took, 1),
                      "cpu_pct": round((now["ticks"] - before["ticks"]) / TICKS / took * 100, 1)})
    with open("/proc/meminfo") as fh:
        mem_total = next((int(line.split()[1]) for line in fh if line.startswith("MemTotal:")), 0)
    with open("/proc/loadavg") as fh:
        load1 = float(fh.read().split()[0])
    report = {
        "interval_s": round(took, 2),
        "cpus": os.cpu_count() or 1,
        "load1": load1,
        "mem_total_kb": mem_total,
        "processes": len(procs),
        "by_memory": sorted(procs, key=lambda p: -p["rss_kb"])[:top],
        "growing": sorted((p for p in procs if p["growth_kb_s"] > 0), key=lambda p: -p["growth_kb_s"])[:top],
        "by_cpu": sorted(procs, key=lambda p: -p["cpu_pct"])[:top],
    }
    module.exit_json(changed=False, report=report)


if __name__ == "__main__":
    main()
