"""The local stack's dashboard token and pseudonym key: 0600 files in the stack's folder, kept
across restarts, refused when others can read them, never in what is printed; a credential the
operator configured is left alone."""

from __future__ import annotations

import stat

import pytest

from gongji.local.dashboard_login import KEY_FILE, TOKEN_FILE, login_hint, secret_file, with_dashboard_access
from gongji.local.errors import StackError
from gongji.settings import Settings

pytestmark = pytest.mark.unit


def test_the_stack_generates_its_token_and_key_owner_only_and_keeps_them(tmp_path):
    settings = with_dashboard_access(Settings(), tmp_path)
    token, key = settings.dashboard_token_file, settings.pseudonym_key_file
    assert (token, key) == (tmp_path / TOKEN_FILE, tmp_path / KEY_FILE) and token.is_absolute()
    for path in (token, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = settings.dashboard_token_value()
    assert len(secret) >= 43 and secret != settings.pseudonym_key_value().decode()
    again = with_dashboard_access(Settings(), tmp_path)  # `gongji stack up` again: the same token
    assert again.dashboard_token_value() == secret
    assert secret not in login_hint(settings) and str(token) in login_hint(settings)
    # A child process gets the files' paths, not the secrets.
    env = settings.to_env()
    assert env["GONGJI_DASHBOARD_TOKEN_FILE"] == str(token) and secret not in env.values()


def test_a_secret_file_others_can_read_is_refused(tmp_path):
    path = secret_file(tmp_path, TOKEN_FILE)
    path.chmod(0o644)
    with pytest.raises(StackError, match="readable by others"):
        secret_file(tmp_path, TOKEN_FILE)


def test_a_configured_credential_or_auth_off_is_left_alone(tmp_path):
    token = Settings(dashboard_token="configured-token-0123456789", pseudonym_key="configured")
    assert with_dashboard_access(token, tmp_path) == token
    off = with_dashboard_access(Settings(dashboard_auth="off"), tmp_path)
    assert off.dashboard_token_file is None and off.pseudonym_key_file == tmp_path / KEY_FILE
    assert not (tmp_path / TOKEN_FILE).exists()
    assert login_hint(off) == "no login: GONGJI_DASHBOARD_AUTH=off"
