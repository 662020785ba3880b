"""Every Molecule scenario of the catalog (molecule/<entry>/), one test item each, so pytest-xdist runs them beside
the lab lanes: `molecule test -s <entry>` in a container of the scenario's own (remediator-molecule-<entry>), under
mitogen's strategy as the engine runs the catalog (run/warm.py): one Python in the container per play, not a
`podman exec` and a Python per task (a third of the CPU on nginx_upstream)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.run.warm import MITOGEN_ENV

pytestmark = pytest.mark.molecule
BIN = Path(sys.executable).parent
SCENARIOS = sorted(p.parent.name for p in (PROJECT_ROOT / "molecule").glob("*/molecule.yml"))


def test_every_catalog_entry_has_a_scenario(catalog):
    assert {e.id for e in catalog.entries.values()} <= set(SCENARIOS)


@pytest.mark.timeout(1500)   # about a minute alone; several times that beside the lab lanes on two cores
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario):
    # mitogen's connect (a podman exec, then its Python) is bounded by Ansible's connection timeout, 10 s unless told:
    # at the start of CI, beside the lab lanes' boots and the image build, it ran past that ("Connection timed out").
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_FORCE_COLOR": "0", "PY_COLORS": "0",
           **MITOGEN_ENV, "ANSIBLE_TIMEOUT": "60"}
    try:
        run = subprocess.run([str(BIN / "molecule"), "test", "-s", scenario], cwd=PROJECT_ROOT, env=env,
                             capture_output=True, text=True, timeout=1400)
    finally:   # molecule destroys its instance itself, unless it was stopped half way: nothing may outlive the run
        subprocess.run(["podman", "rm", "--force", "--time", "0", f"remediator-molecule-{scenario}"], capture_output=True)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
