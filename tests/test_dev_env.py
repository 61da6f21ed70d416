"""The start-up step that gives a checkout its development secrets (excloud_portal.devenv)."""

from __future__ import annotations

import stat

from excloud_portal import devenv


def test_it_generates_every_secret_once_readable_only_by_its_owner(tmp_path):
    var = tmp_path / "var"
    first = devenv.prepare(var)
    assert set(first) == set(devenv.SECRETS) and all(first.values())
    assert stat.S_IMODE((var / "dev.env").stat().st_mode) == 0o600
    assert devenv.prepare(var) == first
    for folder in ("static", "celery/queue", "celery/processed", "celery/control"):
        assert (var / folder).is_dir()


def test_it_takes_over_the_secrets_an_older_checkout_kept_in_files(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    (var / "secret-keys").write_text("k1:older\n")
    (var / "django-secret-key").write_text("older-django-key\n")
    values = devenv.prepare(var)
    assert values["EXCLOUD_SECRET_KEYS"] == "k1:older"
    assert values["DJANGO_SECRET_KEY"] == "older-django-key"


def test_it_completes_a_dev_env_and_lets_the_environment_win(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    (var / "dev.env").write_text("# kept\nDJANGO_SECRET_KEY=kept-key\n")
    environ = {"EXCLOUD_VAR_DIR": str(var), "EXCLOUD_SECRET_KEYS": "k1:from-the-environment"}
    devenv.load(environ)
    assert environ["DJANGO_SECRET_KEY"] == "kept-key"
    assert environ["EXCLOUD_SECRET_KEYS"] == "k1:from-the-environment"
    assert set(devenv.SECRETS) <= set(environ)
    assert devenv.read(var / "dev.env")["DJANGO_SECRET_KEY"] == "kept-key"
