"""N17 of the second review: service tokens had no minimum length, and the name of a `name:secret` token is public
(every delivery and the audit show it), so `am:x` was a one-character secret. Settings with a short secret do not
load: serve does not start, and the message says how to make a strong one without printing the token."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from remediator.engine.errors import ConfigError
from remediator.engine.settings import MIN_TOKEN_SECRET, load_settings

pytestmark = [pytest.mark.security, pytest.mark.unit]
REMEDIATOR = Path(sys.executable).parent / "remediator"


@pytest.mark.parametrize("tokens, named", [
    ("am:x", "the token named 'am'"),                                   # the review's: a public name, one character
    ("alertmanager:short-secret", "the token named 'alertmanager'"),
    ("example-token", "token 1"),                                       # the old README's
    (f"am:{'s' * 40},second", "token 2"),                               # every one counts
])
def test_a_short_secret_does_not_load(monkeypatch, tokens, named):
    monkeypatch.setenv("REMEDIATOR_TOKENS", tokens)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = refused.value.message
    assert named in message and f"at least {MIN_TOKEN_SECRET}" in message and "secrets.token_urlsafe" in message
    assert "short-secret" not in message and "example-token" not in message   # the token is never printed


def test_the_control_strong_tokens_load(monkeypatch):
    monkeypatch.setenv("REMEDIATOR_TOKENS", f"am:{'s' * MIN_TOKEN_SECRET},{'u' * MIN_TOKEN_SECRET}")
    assert len(load_settings().tokens) == 2


def test_serve_refuses_to_start_saying_why(tmp_path):
    env = {**os.environ, "REMEDIATOR_DATA_DIR": str(tmp_path), "REMEDIATOR_TOKENS": "am:x"}
    out = subprocess.run([str(REMEDIATOR), "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "has a secret of 1 characters" in out.stderr + out.stdout
