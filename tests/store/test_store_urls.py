"""Database URLs: which engine a URL names, the SQLite file it means, and no password in messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.server.settings import Settings, SettingsError
from lockstep.server.store import DatabaseUrlError, redact, sqlite_url
from lockstep.server.store.backend import check_url, sqlite_path

SECRET = st.text(st.characters(codec="ascii", exclude_characters="@/:?#[]%"), min_size=1, max_size=20)


@given(user=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), password=SECRET)
def test_a_password_never_survives_redaction(user: str, password: str) -> None:
    url = f"postgresql://{user}:{password}@db.example:5432/lockstep"
    shown = redact(url)
    assert shown == f"postgresql://{user}:***@db.example:5432/lockstep"
    assert check_url(url) == "postgresql"


@given(st.text(max_size=60))
def test_any_text_is_an_engine_or_a_database_url_error(text: str) -> None:
    try:
        engine = check_url(text)
    except DatabaseUrlError:
        return  # the only exception a bad URL may raise
    assert engine in ("sqlite", "postgresql")
    assert text.lower().startswith(("sqlite:///", "postgresql:", "postgres:"))


def test_sqlite_urls_follow_sqlalchemy_relative_and_absolute() -> None:
    assert sqlite_path("sqlite:///data/lockstep.sqlite3") == Path("data/lockstep.sqlite3")
    assert sqlite_path("sqlite:////var/lib/lockstep/db.sqlite3") == Path("/var/lib/lockstep/db.sqlite3")
    assert sqlite_path(sqlite_url(Path("/tmp/x.db"))) == Path("/tmp/x.db")
    assert sqlite_path("postgresql://u@h/db") is None
    for bad in ("sqlite://", "sqlite:///", "sqlite:relative.db", "mysql://u@h/db", ""):
        with pytest.raises(DatabaseUrlError):
            check_url(bad)


def test_the_database_setting_defaults_to_sqlite_in_the_data_folder_and_is_checked_up_front() -> None:
    assert Settings(data_dir=Path("d")).database_url == "sqlite:///d/lockstep.sqlite3"
    env = {"LOCKSTEP_DATABASE_URL": "postgresql://lockstep@127.0.0.1:5432/lockstep"}
    assert Settings.from_env(env).database_url == env["LOCKSTEP_DATABASE_URL"]
    flag = Settings.from_env(env, database="sqlite:////srv/l.db")
    assert flag.database_url == "sqlite:////srv/l.db" and flag.sqlite_file == Path("/srv/l.db")
    with pytest.raises(SettingsError, match="LOCKSTEP_DATABASE_URL: unknown database URL scheme 'redis'"):
        Settings.from_env({"LOCKSTEP_DATABASE_URL": "redis://127.0.0.1"})
    with pytest.raises(SettingsError) as hidden:
        Settings.from_env({"LOCKSTEP_DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert "hunter2" not in str(hidden.value)
