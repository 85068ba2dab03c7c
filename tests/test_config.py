"""Settings: what a repr shows (it ends up in logs and tracebacks)."""

import pytest

from ingest.config import Settings, redacted_database_url

KEY = "ds_" + "5ec2e7" * 5 + "ab"


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
