"""The stores' users and roles as written down (deploy/) and as generated (gongji.local.store_users),
and the credentials' settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gongji.common.observe import redacted
from gongji.local.store_users import REDIS_RULES, acl_line, example_acl, glob_escape, redis_acl, sha256
from gongji.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_the_deploy_acl_file_is_what_the_generator_writes():
    assert (REPO / "deploy/redis/users.acl.example").read_text() == example_acl()


def test_default_is_off_and_every_service_has_its_own_user_with_the_prefix_in_each_pattern():
    text = redis_acl({"settlement": "plain-one", "clearing": "plain-two"}, prefix="p1")
    assert "plain-" not in text  # hashes only
    lines = text.splitlines()
    assert lines[0] == "user default off resetkeys resetchannels -@all"
    assert [line.split()[1] for line in lines[1:]] == ["gongji-settlement", "gongji-clearing"]
    for line in lines[1:]:
        patterns = [word for word in line.split() if word.startswith("~")]
        assert patterns and all(p.startswith("~p1:") for p in patterns)
        assert "+@all" not in line and "~*" not in line and "&*" not in line
        assert "-@all" in line.split()  # everything not listed is refused
    assert lines[1].split()[3] == "#" + sha256("plain-one")


def test_a_prefix_with_glob_characters_is_matched_literally():
    assert glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"
    assert "~x\\*:probe" in acl_line("settlement", "0" * 64, prefix="x*")


def test_settlement_and_clearing_patterns_do_not_overlap_but_on_the_probe():
    import fnmatch

    settlement, clearing = (REDIS_RULES[s][1] for s in ("settlement", "clearing"))
    clearing_keys = [":{clr:2023-03:152501>990100}:flow", ":{clr:2023-03:152501>990100}:seen", ":clr:pairs:2023-03"]
    settlement_keys = [":{p1}:state", ":{p1}:rec:c:1", ":{p1}:holds", ":inst:H1", ":id:c:1", ":seen:{0}:g"]
    assert not [k for k in clearing_keys if any(fnmatch.fnmatchcase(k, p) for p in settlement)]
    assert not [k for k in settlement_keys if any(fnmatch.fnmatchcase(k, p) for p in clearing)]
    assert all(any(fnmatch.fnmatchcase(k, p) for p in settlement) for k in settlement_keys)
    assert all(any(fnmatch.fnmatchcase(k, p) for p in clearing) for k in clearing_keys)


def test_passwords_are_secret_in_a_printout_and_reach_a_child_through_to_env(tmp_path, monkeypatch):
    for name in ("GONGJI_REDIS_PASSWORD", "GONGJI_DATABASE_PASSWORD"):
        monkeypatch.setenv(name, "s3cret-value")
    settings = Settings()
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings.model_dump())
    env = settings.to_env()
    assert env["GONGJI_REDIS_PASSWORD"] == env["GONGJI_DATABASE_PASSWORD"] == "s3cret-value"
    monkeypatch.delenv("GONGJI_REDIS_PASSWORD")
    monkeypatch.delenv("GONGJI_DATABASE_PASSWORD")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    again = Settings()
    assert again == settings
    assert again.redis_credentials()["password"] == again.database_password_value() == "s3cret-value"


def test_a_password_file_is_read_without_its_newline_and_a_missing_one_is_named(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    settings = Settings(redis_username="gongji-settlement", redis_password_file=secret, database_password_file=secret)
    assert settings.redis_credentials() == {"username": "gongji-settlement", "password": "from-a-file"}
    assert settings.database_password_value() == "from-a-file"
    assert Settings().redis_credentials() == {"username": None, "password": None}
    missing = Settings(redis_password_file=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="GONGJI_REDIS_PASSWORD_FILE: cannot read .*nowhere: No such file"):
        missing.redis_credentials()


def test_urls_with_credentials_are_redacted():
    assert redacted("redis://gongji-settlement:pw@redis:6379/0") == "redis://gongji-settlement:***@redis:6379/0"
    assert redacted("postgresql://gongji_ledger:pw@db/gongji") == "postgresql://gongji_ledger:***@db/gongji"


def test_an_empty_password_variable_is_unset():
    assert Settings(redis_password="", database_password_file="").redis_password is None
    with pytest.raises(ValidationError):
        Settings(redis_password=["not", "text"])


def test_the_local_stacks_any_prefix_users_still_keep_settlement_and_clearing_apart():
    """The local stack's users take any key prefix (each test and demo run has its own); the
    services stay apart by their keys' suffixes, which the prefix cannot fake."""
    import fnmatch

    lines = redis_acl({"settlement": "a", "clearing": "b"}, prefix=None).splitlines()
    patterns = {line.split()[1]: [w[1:] for w in line.split() if w.startswith("~")] for line in lines[1:]}
    assert all(p.startswith("*:") for ps in patterns.values() for p in ps)
    clearing_keys = ["t1:{clr:2023-03:152501>990100}:flow", "t2:{clr:2023-03:152501>990100}:seen", "t3:clr:pairs:2023-03"]
    settlement_keys = ["t1:{p1}:state", "t2:{p1}:rec:c:1", "x:{p1}:holds", "t:inst:H1", "t:id:c:1", "t:seen:{0}:g"]
    for user, mine, theirs in (("gongji-settlement", settlement_keys, clearing_keys),
                               ("gongji-clearing", clearing_keys, settlement_keys)):
        assert all(any(fnmatch.fnmatchcase(key, p) for p in patterns[user]) for key in mine), user
        assert not [key for key in theirs if any(fnmatch.fnmatchcase(key, p) for p in patterns[user])], user
