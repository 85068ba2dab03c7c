"""The README cannot drift from the CLI: every flag and variable is documented."""

from pathlib import Path

from ingest.cli import build_parser
from ingest.config import ENV_SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_cli_flag_is_in_the_readme() -> None:
    flags = {opt for action in build_parser()._actions for opt in action.option_strings if opt.startswith("--")}
    flags.discard("--help")
    assert sorted(f for f in flags if f"`{f}`" not in README) == []


def test_every_setting_variable_is_in_the_readme() -> None:
    assert sorted(name for name in ENV_SETTINGS if f"`{name}`" not in README) == []


def test_the_two_commands_are_on_the_first_screen() -> None:
    first_screen = "\n".join(README.splitlines()[:15])
    assert "./run-ingestion.sh" in first_screen and "./run-tests.sh" in first_screen
