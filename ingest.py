"""Entry point: python ingest.py --help"""

import os
import sys
import threading

from ingest.commands.cli import main

if __name__ == "__main__":
    code = main()
    # After a stop, everything that could be committed is; a fetcher still waiting on a slow answer
    # (up to REQUEST_TIMEOUT) must not hold the process past Docker's 10 s grace. Exit without it.
    if any(t.name.startswith("fetch") and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
