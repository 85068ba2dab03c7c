"""What run-ingestion.sh needs to know before it starts the ingester, read the way the ingester reads it.

`python -m ingest.commands.preflight ARGS...` parses ARGS with the ingester's own parser and reads the .env file
they name with python-dotenv (the environment wins, even when empty, as in the ingester), then prints
shell assignments for the script to `eval`:

    command=verify
    api_key_configured=no
    api_base_url='http://localhost:8080'
    demo=no

The key itself is never printed. Bad arguments end with argparse's usage message and exit code 2.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ingest.commands.cli import build_parser
from ingest.config import environment_with_dotenv


def assignments(argv: list[str]) -> dict[str, str]:
    args = build_parser().parse_args(argv)
    env = environment_with_dotenv(Path(args.env_file))

    def setting(name: str) -> str:
        value = getattr(args, name)
        return (env.get(name, "") if value is None else value).strip()

    return {
        "command": args.command,
        "api_key_configured": "yes" if setting("API_KEY") else "no",
        "api_base_url": setting("API_BASE_URL"),
        "demo": "yes" if args.demo else "no",
    }


def main(argv: list[str] | None = None) -> int:
    for name, value in assignments(sys.argv[1:] if argv is None else argv).items():
        print(f"{name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
