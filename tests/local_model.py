"""A real small language model for the tests: lab/local_model.py (llama.cpp's server, SmolLM2-135M) as a process on
a free loopback port, stopped with the session. The tests that use it assert safety and shape, never which tool a
135M model picks."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from remediator.engine import PROJECT_ROOT
from remediator.engine.lab.harness import free_port

SCRIPT = PROJECT_ROOT / "lab" / "local_model.py"
MODEL = "smollm2-135m-instruct"

#: what the tests ask of the model: few short answers, so the corpus fits CI on two cores
BOUNDS = {"llm_model": MODEL, "llm_max_rounds": "3", "llm_max_invalid": "1", "llm_max_answer_tokens": "256",
          "llm_timeout_s": "30", "llm_budget_s": "60", "llm_max_retries": "0"}


def _before_the_rest() -> None:
    """The model answers within the planner's time bounds (BOUNDS) while the lab lanes and Molecule share the two
    cores, as a hosted model on hardware of its own would: a higher priority where the tests run as root."""
    try:
        os.nice(-5)
    except PermissionError:
        pass


class LocalModel:
    """The server as a process; `url` is its OpenAI-compatible base URL."""

    def __init__(self, log: Path):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/v1"
        self.log = log
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), "--port", str(port)], stdout=subprocess.PIPE,
                                     stderr=log.open("w"), text=True, preexec_fn=_before_the_rest)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()    # its one line once /health answers; "" when it gave up (after 120 s)
        if not line.startswith("listening"):
            self.stop()
            raise RuntimeError(f"lab/local_model.py did not start: {line!r}\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
