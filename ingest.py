"""Entry point: python ingest.py --help"""

import sys

from ingest.cli import main

if __name__ == "__main__":
    sys.exit(main())
