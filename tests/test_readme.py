"""The README cannot drift from the CLI: every flag and variable is documented."""

from pathlib import Path

from ingest.commands.cli import build_parser
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
    assert "sh run-ingestion.sh" in first_screen and "./run-tests.sh" in first_screen  # as the assignment runs it


def test_the_readme_has_the_path_from_zero_and_its_limits() -> None:
    from_zero = README.split("## From zero", 1)[1].split("\n## ", 1)[0]
    for step in ("git clone", "sh run-ingestion.sh status", "sh run-ingestion.sh verify",
                 "sh run-ingestion.sh export", "sh run-ingestion.sh submit"):
        assert step in from_zero, step
    assert "## What the API taught us" in README and "## Limits and next steps" in README
