"""Where a setting comes from: the environment, a REMEDIATOR_<NAME>_FILE, a systemd credential, the settings file; in
that order. Secrets kept in files reach the settings and nothing else."""
import pytest
import yaml

from remediator.engine.errors import ConfigError
from remediator.engine.settings import load_settings

pytestmark = pytest.mark.unit
SECRET = "slack-signing-0123456789abcdef"
TOKENS = ["alertmanager:" + "a" * 32, "ops:" + "b" * 32]


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("REMEDIATOR_CONFIG", "CREDENTIALS_DIRECTORY", "REMEDIATOR_TOKENS", "REMEDIATOR_SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_a_secret_and_the_tokens_read_from_files(tmp_path, clean_env):
    (tmp_path / "signing").write_text(SECRET + "\n")
    (tmp_path / "tokens").write_text("\n".join(TOKENS) + "\n")   # one per line, as a secret mount holds them
    clean_env.setenv("REMEDIATOR_SLACK_SIGNING_SECRET_FILE", str(tmp_path / "signing"))
    clean_env.setenv("REMEDIATOR_TOKENS_FILE", str(tmp_path / "tokens"))
    settings = load_settings()
    assert settings.slack_signing_secret.get_secret_value() == SECRET
    assert [t.get_secret_value() for t in settings.tokens] == TOKENS


def test_a_file_beside_its_variable_is_refused_and_an_unreadable_one_is_named(tmp_path, clean_env):
    (tmp_path / "signing").write_text(SECRET)
    clean_env.setenv("REMEDIATOR_SLACK_SIGNING_SECRET_FILE", str(tmp_path / "signing"))
    clean_env.setenv("REMEDIATOR_SLACK_SIGNING_SECRET", "other-secret-0123456789")
    with pytest.raises(ConfigError, match="REMEDIATOR_SLACK_SIGNING_SECRET and REMEDIATOR_SLACK_SIGNING_SECRET_FILE "
                                          "are both set") as both:
        load_settings()
    clean_env.delenv("REMEDIATOR_SLACK_SIGNING_SECRET")
    clean_env.setenv("REMEDIATOR_SLACK_SIGNING_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="REMEDIATOR_SLACK_SIGNING_SECRET_FILE=.*missing: cannot read it") as unread:
        load_settings()
    assert SECRET not in str(both.value) + str(unread.value)


def test_the_environment_then_files_then_credentials_then_the_settings_file(tmp_path, clean_env):
    config = tmp_path / "remediator.yml"
    config.write_text(yaml.safe_dump({"slack_signing_secret": "from-the-settings-file-0123",
                                      "pagerduty_routing_key": "from-the-settings-file-0123",
                                      "jira_api_token": "from-the-settings-file-0123"}))
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for name in ("slack_signing_secret", "pagerduty_routing_key"):   # LoadCredential=remediator_<name>:/etc/credstore/…
        (credentials / f"remediator_{name}").write_text("from-a-credential-0123456")
    (tmp_path / "pd").write_text("from-a-file-0123456789")
    clean_env.setenv("REMEDIATOR_CONFIG", str(config))
    clean_env.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    clean_env.setenv("REMEDIATOR_PAGERDUTY_ROUTING_KEY_FILE", str(tmp_path / "pd"))
    clean_env.setenv("REMEDIATOR_JIRA_API_TOKEN", "from-the-environment-0123")
    settings = load_settings()
    assert settings.jira_api_token.get_secret_value() == "from-the-environment-0123"
    assert settings.pagerduty_routing_key.get_secret_value() == "from-a-file-0123456789"
    assert settings.slack_signing_secret.get_secret_value() == "from-a-credential-0123456"
