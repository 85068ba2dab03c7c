"""The README cannot drift from the CLI: every flag and variable is documented."""

import re
import subprocess
import sys
from pathlib import Path

from ingest.commands.cli import build_parser
from ingest.config import ENV_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
BENCHMARKS = (ROOT / "docs" / "benchmarks.md").read_text()


def run_help(module: str) -> str:
    return subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout


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


def modules_named_in_architecture() -> dict[str, set[str]]:
    """docs/architecture.md's folder lists: {"" (the shared leaves) or "api", ...: module file names}."""
    folders = ARCHITECTURE.split("## The folders", 1)[1].split("\n## ", 1)[0]
    named: dict[str, set[str]] = {}
    folder: str | None = None
    for line in folders.splitlines():
        heading = re.match(r"`(\w+)/`,|Shared leaves \(`ingest/`\)", line)
        if heading:
            folder = heading.group(1) or ""
            named[folder] = set()
        elif line.startswith("- `") and folder is not None:
            named[folder] |= set(re.findall(r"`(\w+\.(?:py|sql))`", line.split(":", 1)[0]))
    return named


def test_the_architecture_names_every_module_in_its_folder() -> None:
    ingest = ROOT / "ingest"
    packages = {p.name for p in ingest.iterdir() if (p / "__init__.py").exists()}
    on_disk = {folder: {p.name for p in (ingest / folder).iterdir()
                        if p.suffix in (".py", ".sql") and p.name != "__init__.py"}
               for folder in ["", *packages]}
    assert modules_named_in_architecture() == on_disk


def test_every_benchmark_command_names_a_script_and_its_options() -> None:
    commands = re.findall(r"`\.venv/bin/python (bench/\w+\.py)([^`]*)`", BENCHMARKS)
    assert len(commands) >= 10
    # a simulator switch passed through (`--sim=--window-s=20`) must be one the simulator knows
    sim_switches = re.findall(r"--sim=(--[\w-]+)", " ".join(args for _, args in commands))
    unknown = [(script, flag) for script, args in commands
               for flag in re.findall(r"--[\w-]+", re.sub(r"=--[\w-]+(=\S*)?", "", args))
               if f'"{flag}"' not in (ROOT / script).read_text()]
    assert unknown == []
    assert sim_switches and [switch for switch in sim_switches
                             if switch not in run_help("datasync_sim")] == []
