"""Where the suite's CPU goes (tests/run.sh): on two cores its length is its CPU time, so the run ends with it.

  python -m tests.cpu snapshot FILE              the machine's busy CPU seconds and the containers' share, now
  python -m tests.cpu report START END JUNIT...  the phase's CPU, the tests' (junit property cpu_s, tests/conftest.py)
                                                 by file and the costliest tests
  python -m tests.cpu since FILE                  the machine's busy CPU minutes since that snapshot
  python -m tests.cpu busiest [SECONDS]          the processes busy over the next SECONDS (5): what a phase shares
                                                 the two cores with
"""
import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

# Podman's containers (and their conmon): cgroup v1's cpuacct, or v2's cpu.stat, of its parent cgroup.
CONTAINER_CGROUPS = [("/sys/fs/cgroup/cpuacct/libpod_parent/cpuacct.usage", 1e-9),
                     ("/sys/fs/cgroup/libpod_parent/cpu.stat", 1e-6), ("/sys/fs/cgroup/machine.slice/cpu.stat", 1e-6)]


def _busy_s() -> float:
    """CPU seconds the machine spent on anything but idle and iowait since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _containers_s() -> float | None:
    for path, unit in CONTAINER_CGROUPS:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        value = text.split()[1] if text.startswith("usage_usec") else text.split()[0]
        return int(value) * unit
    return None


def snapshot(out: str) -> None:
    Path(out).write_text(json.dumps({"busy_s": _busy_s(), "containers_s": _containers_s()}))


def report(start: str, end: str, *junits: str) -> None:
    a, b = (json.loads(Path(p).read_text()) for p in (start, end))
    tests: list[tuple[float, str]] = []
    for junit in junits:
        if not Path(junit).exists():
            continue
        for case in ET.parse(junit).iter("testcase"):
            cpu = next((float(p.get("value", 0)) for p in case.iter("property") if p.get("name") == "cpu_s"), 0.0)
            tests.append((cpu, f"{case.get('classname')}::{case.get('name')}"))
    busy = (b["busy_s"] - a["busy_s"]) / 60
    print(f"== CPU (minutes; {os.cpu_count()} cores)")
    print(f"  the machine, busy                  {busy:6.1f}")
    if a["containers_s"] is not None and b["containers_s"] is not None:
        print(f"  of it, in containers               {(b['containers_s'] - a['containers_s']) / 60:6.1f}")
    print(f"  of it, in tests and their children {sum(c for c, _ in tests) / 60:6.1f}")
    by_file = Counter[str]()
    for cpu, name in tests:
        by_file[name.split("::")[0]] += cpu
    print("== CPU by test module (minutes)")
    for name, cpu in by_file.most_common(15):
        print(f"  {cpu / 60:6.1f}  {name}")
    print("== the 15 costliest tests (CPU seconds)")
    for cpu, name in sorted(tests, reverse=True)[:15]:
        print(f"  {cpu:7.1f}  {name}")


def since(start: str) -> None:
    busy = (_busy_s() - json.loads(Path(start).read_text())["busy_s"]) / 60
    print(f"  the machine, busy since {Path(start).name}: {busy:.1f} CPU-min")


def _ticks() -> dict[int, tuple[int, str]]:
    """Each process's CPU ticks (user + system) and its command line, now."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:   # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[int(proc.name)] = (int(fields[11]) + int(fields[12]), cmd or stat.split("(", 1)[1].split(")")[0])
    return found


def busiest(seconds: str = "5") -> None:
    a = _ticks()
    time.sleep(float(seconds))
    b = _ticks()
    tck = os.sysconf("SC_CLK_TCK")
    used = sorted(((t - a[pid][0]) / tck / float(seconds), cmd) for pid, (t, cmd) in b.items() if pid in a)
    print(f"== busiest processes over {seconds} s (cores; load average {os.getloadavg()[0]:.1f})")
    for cores, cmd in reversed(used[-10:]):
        if cores > 0.02:
            print(f"  {cores:4.2f}  {cmd[:150]}")


if __name__ == "__main__":
    {"snapshot": snapshot, "report": report, "since": since, "busiest": busiest}[sys.argv[1]](*sys.argv[2:])
