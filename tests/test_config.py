"""Settings: where each value comes from (flag > environment > .env > default), what a repr shows."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from ingest.commands import cli
from ingest.config import ENV_SETTINGS, Settings, environment_with_dotenv, load_settings, redacted_database_url
from ingest.errors import ConfigError

KEY = "ds_" + "5ec2e7" * 5 + "ab"
OTHER_KEY = "ds_" + "0ddba11" * 4 + "0ddb"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ingest:hunter2@db.example:5432/ingestion",
         "user=ingest password=*** dbname=ingestion host=db.example port=5432"),
        ("postgresql://ingest@db.example/ingestion?password=hunter2",
         "user=ingest password=*** dbname=ingestion host=db.example"),
        ("host=db.example password=hunter2 dbname=ingestion", "password=*** dbname=ingestion host=db.example"),
        ("postgresql://ingest@db.example/ingestion", "postgresql://ingest@db.example/ingestion"),
        (None, None),
    ],
)
def test_database_password_is_masked_and_the_rest_kept(url: str | None, shown: str | None) -> None:
    assert redacted_database_url(url) == shown


def test_settings_repr_shows_neither_the_key_nor_the_database_password() -> None:
    settings = Settings("http://api.test", KEY, "postgresql://ingest:hunter2@db.example/ingestion", concurrency=4)
    for text in (repr(settings), str(settings), f"{settings}"):
        assert KEY not in text and "hunter2" not in text
        assert text.startswith("Settings(api_base_url='http://api.test', database_url='user=ingest password=***")
        assert "concurrency=4" in text


# ---- precedence: flag > environment > .env > default ------------------------------------------------------

# Where each layer puts CONCURRENCY and STRATEGY when it sets them: a distinct value per layer, so the
# result names the layer that won. Defaults: CONCURRENCY 8, STRATEGY auto.
LAYERS = {
    "flag": {"CONCURRENCY": "7", "STRATEGY": "documented"},
    "environment": {"CONCURRENCY": "5", "STRATEGY": "feed"},
    "dotenv": {"CONCURRENCY": "3", "STRATEGY": "DOCUMENTED"},  # parsed like any other source: lower-cased
}
DEFAULTS = {"CONCURRENCY": 8, "STRATEGY": "auto"}
PARSED = {"CONCURRENCY": int, "STRATEGY": str.lower}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting in the process environment: each test sets what it means to."""
    for name in ENV_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def write_dotenv(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    return path


def settings_through_the_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings `ingest.py run ARGV` would run with: main() all the way, the run itself replaced."""
    seen: list[Settings] = []
    monkeypatch.setattr(cli, "_dispatch", lambda args, settings: seen.append(settings) or 0)
    assert cli.main(argv) == 0
    (settings,) = seen
    return settings


def layered(layers: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> tuple[dict[str, str], list[str]]:
    """Set CONCURRENCY and STRATEGY in `layers`; returns (overrides by variable name, the flags) for them."""
    dotenv = {"API_BASE_URL": "http://dotenv.test", "API_KEY": KEY}
    if "dotenv" in layers:
        dotenv.update(LAYERS["dotenv"])
    write_dotenv(tmp_path / ".env", dotenv)
    if "environment" in layers:
        for name, value in LAYERS["environment"].items():
            monkeypatch.setenv(name, value)
    flags = LAYERS["flag"] if "flag" in layers else {}
    argv = [arg for name, value in flags.items() for arg in ("--" + name.lower(), value)]
    return flags, argv


def expected(layers: tuple[str, ...]) -> dict[str, object]:
    for layer in ("flag", "environment", "dotenv"):
        if layer in layers:
            return {name: PARSED[name](value) for name, value in LAYERS[layer].items()}
    return dict(DEFAULTS)


ALL_LAYER_SETS = [combo for n in range(4) for combo in itertools.combinations(("flag", "environment", "dotenv"), n)]


@pytest.mark.parametrize("layers", ALL_LAYER_SETS, ids=lambda layers: "+".join(layers) or "nothing")
def test_flag_beats_environment_beats_dotenv_beats_default(
        layers: tuple[str, ...], tmp_path: Path, clean_environment: pytest.MonkeyPatch) -> None:
    overrides, _ = layered(layers, tmp_path, clean_environment)
    settings = load_settings(environment_with_dotenv(tmp_path / ".env"), overrides)
    assert {"CONCURRENCY": settings.concurrency, "STRATEGY": settings.strategy} == expected(layers)


@pytest.mark.parametrize("layers", ALL_LAYER_SETS, ids=lambda layers: "+".join(layers) or "nothing")
def test_the_command_line_applies_the_same_precedence(
        layers: tuple[str, ...], tmp_path: Path, clean_environment: pytest.MonkeyPatch) -> None:
    _, argv = layered(layers, tmp_path, clean_environment)
    settings = settings_through_the_cli([*argv, "--env-file", str(tmp_path / ".env")], clean_environment)
    assert {"CONCURRENCY": settings.concurrency, "STRATEGY": settings.strategy} == expected(layers)
    assert (settings.api_base_url, settings.api_key) == ("http://dotenv.test", KEY)


def test_each_setting_comes_from_its_own_highest_layer(tmp_path: Path, clean_environment: pytest.MonkeyPatch) -> None:
    write_dotenv(tmp_path / ".env", {"API_BASE_URL": "http://dotenv.test", "API_KEY": KEY, "PAGE_SIZE": "100",
                                     "CONCURRENCY": "3", "LOG_LEVEL": "debug"})
    clean_environment.setenv("API_BASE_URL", "http://environment.test")
    clean_environment.setenv("CONCURRENCY", "5")
    settings = settings_through_the_cli(["--concurrency", "7", "--env-file", str(tmp_path / ".env")],
                                        clean_environment)
    assert dataclasses.asdict(settings) == dataclasses.asdict(Settings(
        "http://environment.test", KEY, None, concurrency=7, page_size=100, log_level="DEBUG"))


def test_the_dotenv_file_is_the_one_env_file_names(tmp_path: Path, clean_environment: pytest.MonkeyPatch) -> None:
    write_dotenv(tmp_path / ".env", {"API_BASE_URL": "http://default-file.test", "API_KEY": KEY})
    other = write_dotenv(tmp_path / "other.env", {"API_BASE_URL": "http://other-file.test", "API_KEY": KEY})
    clean_environment.chdir(tmp_path)
    assert settings_through_the_cli([], clean_environment).api_base_url == "http://default-file.test"
    assert settings_through_the_cli(["--env-file", str(other)], clean_environment).api_base_url == \
        "http://other-file.test"


def test_an_empty_environment_variable_hides_the_dotenv_value(
        tmp_path: Path, clean_environment: pytest.MonkeyPatch) -> None:
    write_dotenv(tmp_path / ".env", {"API_BASE_URL": "http://dotenv.test", "API_KEY": KEY, "CONCURRENCY": "3",
                                     "STRATEGY": "feed"})
    clean_environment.setenv("CONCURRENCY", "")
    clean_environment.setenv("STRATEGY", "  ")
    env = environment_with_dotenv(tmp_path / ".env")
    settings = load_settings(env, {})
    # set but empty in the environment: as if unset everywhere, so the default, not the .env's value
    assert (env["CONCURRENCY"], settings.concurrency, settings.strategy) == ("", 8, "auto")


def test_a_missing_dotenv_file_is_no_error(tmp_path: Path, clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("API_BASE_URL", "http://environment.test")
    clean_environment.setenv("API_KEY", KEY)
    assert load_settings(environment_with_dotenv(tmp_path / "absent.env"), {}).api_base_url == \
        "http://environment.test"


@pytest.mark.parametrize("missing", ["API_BASE_URL", "API_KEY"])
def test_a_required_setting_missing_everywhere_names_the_variable_and_its_flag(missing: str) -> None:
    given = {"API_BASE_URL": "http://api.test", "API_KEY": KEY}
    del given[missing]
    flag = "--" + missing.lower().replace("_", "-")
    with pytest.raises(ConfigError, match=f"^{missing} is not set \\(environment, .env or {flag}\\)$"):
        load_settings(given, {})


# ---- API_KEY: one key or several ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "keys"), [
    (KEY, (KEY,)),
    (f"{KEY},{OTHER_KEY}", (KEY, OTHER_KEY)),
    (f" {KEY} , {OTHER_KEY} ", (KEY, OTHER_KEY)),
])
def test_comma_separated_api_key_gives_one_budget_key_each(value: str, keys: tuple[str, ...]) -> None:
    assert load_settings({"API_BASE_URL": "http://api.test", "API_KEY": value}, {}).api_keys == keys


@pytest.mark.parametrize("value", [f"{KEY},", f",{KEY}", f"{KEY},,{OTHER_KEY}", f"{KEY}, ,{OTHER_KEY}", ",",
                                   f"{KEY} {OTHER_KEY}"])
def test_a_key_list_with_an_empty_or_spaced_member_is_a_config_error_naming_api_key(value: str) -> None:
    with pytest.raises(ConfigError, match="^API_KEY is missing, or one of its comma-separated keys is empty") as caught:
        load_settings({"API_BASE_URL": "http://api.test"}, {"API_KEY": value})
    assert KEY not in str(caught.value)  # the error names the variable, never a key
