"""The lab's container removal (lab/fleet.py) against podman's rm/cleanup race: a `podman rm --force` that fails
while podman's own cleanup still holds the killed container left its name taken, and the next `podman run` of the
name failed (CI: `lab up` in README command 1). The race cannot be had on demand, so a podman on PATH plays it."""
import os
import stat

import pytest

from remediator.engine.errors import RemediatorError
from remediator.engine.lab import fleet

pytestmark = pytest.mark.unit

#: podman as the race leaves it: `rm` fails, and the container is still there, for the first N removals
RACING_PODMAN = """#!/bin/sh
echo "$*" >> "$CALLS"
n=$(grep -c '^rm ' "$CALLS")
case "$1" in
  rm) [ "$n" -gt "$RACES" ] && exit 0; echo "Error: container is being removed by its cleanup" >&2; exit 2;;
  container) [ "$n" -gt "$RACES" ] && exit 1; exit 0;;
esac
"""


@pytest.fixture
def podman(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "podman").write_text(RACING_PODMAN)
    (bin_dir / "podman").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CALLS", str(tmp_path / "calls"))
    monkeypatch.setattr(fleet.time, "sleep", lambda s: None)
    return tmp_path / "calls"


def test_a_removal_that_races_podman_s_cleanup_is_tried_again_until_the_name_is_free(podman, monkeypatch):
    monkeypatch.setenv("RACES", "2")
    fleet._remove("remediator-lab-app-server-01")
    calls = podman.read_text().splitlines()
    assert calls.count("rm --force --time 0 remediator-lab-app-server-01") == 3
    assert calls[-1] == "container exists remediator-lab-app-server-01"


def test_a_container_that_will_not_go_is_an_error_that_says_what_to_do(podman, monkeypatch):
    monkeypatch.setenv("RACES", "99")
    with pytest.raises(RemediatorError, match="could not remove the lab container x: Error: container is being "
                                              "removed by its cleanup; try: podman rm --force x"):
        fleet._remove("x")
