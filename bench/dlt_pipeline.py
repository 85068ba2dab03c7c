"""dlt's side of benchmark 4: its `rest_api` source, DataSync's documented endpoint → PostgreSQL.

Runs inside bench/.venv-dlt (bench/requirements-dlt.txt), started by bench/bench_dlt.py; imports
nothing from this repository. Standalone:

    bench/.venv-dlt/bin/python bench/dlt_pipeline.py --api-base-url URL --api-key KEY \\
        --database-url "host=/tmp/sock dbname=x user=postgres" [--write-disposition append|merge]

The configuration is the one dlt's documentation gives for a cursor-paginated REST API with an API
key header: JSONResponseCursorPaginator on `pagination.nextCursor` sent back as `cursor`, APIKeyAuth
in the X-API-Key header, records under `data`, limit=5000 (the API's maximum page), primary key `id`.
Everything else is dlt's default (schema inference, nested objects flattened into columns, one
normalize worker, INSERT-VALUES load jobs). Prints one JSON line: the seconds of each stage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # before dlt reads its configuration

import dlt  # noqa: E402
import psycopg2.extensions  # noqa: E402
from dlt.sources.helpers.rest_client.auth import APIKeyAuth  # noqa: E402
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator  # noqa: E402
from dlt.sources.rest_api import rest_api_source  # noqa: E402

DATASET = "datasync"  # PostgreSQL schema dlt loads into; the table is DATASET.events
PAGE_SIZE = 5000  # events per request: the API's maximum, the same as our ingester's


def credentials(conninfo: str) -> dict:
    """dlt's postgres credentials from a libpq conninfo (key=value or URI).

    dlt renders credentials as a URL, where a Unix-socket directory cannot stand as the host: it goes
    into the query instead, which libpq applies over the URL's host.
    """
    p = psycopg2.extensions.parse_dsn(conninfo)
    creds = {"database": p["dbname"], "username": p.get("user", "postgres"), "password": p.get("password", ""),
             "host": p.get("host", "localhost"), "port": int(p.get("port", 5432))}
    if creds["host"].startswith("/"):
        creds["query"] = {"host": creds["host"]}
        creds["host"] = "localhost"
    return creds


def events_source(api_base_url: str, api_key: str, write_disposition: str):
    return rest_api_source({
        "client": {
            "base_url": api_base_url.rstrip("/") + "/",
            "auth": APIKeyAuth(name="X-API-Key", api_key=api_key, location="header"),
            "paginator": JSONResponseCursorPaginator(cursor_path="pagination.nextCursor", cursor_param="cursor"),
        },
        "resource_defaults": {"primary_key": "id", "write_disposition": write_disposition},
        "resources": [{
            "name": "events",
            "endpoint": {"path": "api/v1/events", "params": {"limit": PAGE_SIZE}, "data_selector": "data"},
        }],
    })


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api-base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--database-url", required=True, help="libpq conninfo of an empty database")
    parser.add_argument("--write-disposition", choices=("append", "merge"), default="append")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dlt-") as pipelines_dir:
        pipeline = dlt.pipeline(
            pipeline_name="datasync_bench", pipelines_dir=pipelines_dir, dataset_name=DATASET,
            destination=dlt.destinations.postgres(credentials=credentials(args.database_url)),
        )
        stages = {}
        started = time.perf_counter()
        pipeline.extract(events_source(args.api_base_url, args.api_key, args.write_disposition))
        stages["extract_s"] = time.perf_counter() - started
        pipeline.normalize()
        stages["normalize_s"] = time.perf_counter() - started - stages["extract_s"]
        info = pipeline.load()
        stages["load_s"] = time.perf_counter() - started - stages["extract_s"] - stages["normalize_s"]
        info.raise_on_failed_jobs()
    print(json.dumps({**stages, "table": f"{DATASET}.events", "dlt": dlt.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
