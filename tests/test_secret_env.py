"""The checks' one reader of secrets from the environment (value, else ``_FILE``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstack.checks.probes.e2e import E2eSettings
from mailstack.checks.probes.secret_env import secret_from_env


def test_the_value_wins_then_the_file_then_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n", encoding="utf-8")
    monkeypatch.delenv("MAILSTACK_TEST_SECRET", raising=False)
    monkeypatch.delenv("MAILSTACK_TEST_SECRET_FILE", raising=False)
    assert secret_from_env("MAILSTACK_TEST_SECRET") is None
    monkeypatch.setenv("MAILSTACK_TEST_SECRET_FILE", str(secret))
    assert secret_from_env("MAILSTACK_TEST_SECRET") == "from-file"
    monkeypatch.setenv("MAILSTACK_TEST_SECRET", "from-env")
    assert secret_from_env("MAILSTACK_TEST_SECRET") == "from-env"


@pytest.mark.parametrize("content", [None, b"\xff\xfe not utf-8"])
def test_an_unreadable_file_names_the_variable_and_the_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "secret"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.delenv("MAILSTACK_ODOO_PASSWORD", raising=False)
    monkeypatch.setenv("MAILSTACK_ODOO_PASSWORD_FILE", str(path))
    with pytest.raises(ValueError, match=f"MAILSTACK_ODOO_PASSWORD_FILE {path}: cannot be read"):
        E2eSettings.from_env()
