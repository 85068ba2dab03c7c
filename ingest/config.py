"""Settings: built once from the environment, a .env file and CLI flags (flags win), then validated."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from ingest.errors import ConfigError

STRATEGIES = ("auto", "feed", "documented")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR")
MAX_PAGE_SIZE = 5000  # the API silently caps larger limits
KEY_FINGERPRINT_SALT = b"datasync-ingest key fingerprint\n"


def key_fingerprint(api_key: str) -> str:
    """A short hash of the key: tells keys apart in the store and in budget names without keeping the key."""
    return hashlib.sha256(KEY_FINGERPRINT_SALT + api_key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Settings:
    """Everything a run needs; nothing deeper reads os.environ."""

    api_base_url: str
    api_key: str = field(repr=False)
    database_url: str | None  # None: the embedded PostgreSQL under data_dir; its password is masked in repr
    strategy: str = "auto"
    concurrency: int = 8  # fetcher threads (feed partitions fetched at once)
    page_size: int = MAX_PAGE_SIZE
    # s; a 5000-event page takes ~3.5-4 s on the live API, so 15 s is generous, and a stalled answer
    # (the simulator's live profile stalls 1% of answers for 35 s) costs a single chain 15 s, not 30.
    request_timeout_s: float = 15.0
    max_attempts: int = 8
    progress_interval_s: float = 5.0
    # s; how long the run waits for a database that went away (a restart, a failover) or is not up yet
    # (a Compose stack starting) before it gives up: a few minutes covers a restart and a failover.
    db_reconnect_timeout_s: float = 300.0
    log_level: str = "INFO"
    data_dir: Path = Path(".data")
    # Not environment settings: set by the CLI.
    demo_label: str | None = None  # the bundled simulator's dataset: recorded as the store's origin
    reset: bool = False  # --reset: a store of another origin is emptied instead of refused

    def __post_init__(self) -> None:
        url = urlsplit(self.api_base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(f"API_BASE_URL must be an http(s) URL, got {self.api_base_url!r}")
        keys = [key.strip() for key in self.api_key.split(",")]
        if not all(keys) or any(c.isspace() for key in keys for c in key):
            raise ConfigError("API_KEY is missing, or one of its comma-separated keys is empty or contains whitespace")
        if self.database_url is not None:
            check_database_url(self.database_url)
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"STRATEGY must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if not 1 <= self.concurrency <= 64:
            raise ConfigError(f"CONCURRENCY must be between 1 and 64, got {self.concurrency}")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"PAGE_SIZE must be between 1 and {MAX_PAGE_SIZE}, got {self.page_size}")
        if self.request_timeout_s <= 0:
            raise ConfigError("REQUEST_TIMEOUT must be a positive number of seconds")
        if self.max_attempts < 1:
            raise ConfigError("MAX_ATTEMPTS must be at least 1")
        if self.progress_interval_s <= 0:
            raise ConfigError("PROGRESS_INTERVAL must be a positive number of seconds")
        if not self.db_reconnect_timeout_s >= 0:  # NaN too
            raise ConfigError("DB_RECONNECT_TIMEOUT must be a number of seconds, 0 or more")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")

    @property
    def api_keys(self) -> tuple[str, ...]:
        """The keys of API_KEY (several, comma-separated: each adds its budgets to the run)."""
        return tuple(key.strip() for key in self.api_key.split(","))

    @property
    def base_url(self) -> str:
        return self.api_base_url.rstrip("/")

    def __repr__(self) -> str:
        # A repr ends up in logs and tracebacks: the key is left out, a database password masked.
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        shown["database_url"] = redacted_database_url(self.database_url)
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in shown.items())})"


# Setting name → (Settings field, parser). The names are the environment variables; the CLI flags are
# the same names in lower case with dashes (--api-base-url, --concurrency, ...).
def _number(kind):
    def parse(name: str, text: str):
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {text!r}") from None

    return parse


def _text(name: str, text: str) -> str:
    return text.strip()


ENV_SETTINGS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "API_BASE_URL": ("api_base_url", _text),
    "API_KEY": ("api_key", _text),
    "DATABASE_URL": ("database_url", _text),
    "STRATEGY": ("strategy", lambda n, t: t.strip().lower()),
    "CONCURRENCY": ("concurrency", _number(int)),
    "PAGE_SIZE": ("page_size", _number(int)),
    "REQUEST_TIMEOUT": ("request_timeout_s", _number(float)),
    "MAX_ATTEMPTS": ("max_attempts", _number(int)),
    "PROGRESS_INTERVAL": ("progress_interval_s", _number(float)),
    "DB_RECONNECT_TIMEOUT": ("db_reconnect_timeout_s", _number(float)),
    "LOG_LEVEL": ("log_level", lambda n, t: t.strip().upper()),
    "DATA_DIR": ("data_dir", lambda n, t: Path(t)),
}


def load_settings(env: Mapping[str, str], overrides: Mapping[str, str | None]) -> Settings:
    """Settings from env (already merged with .env) and CLI overrides keyed by variable name."""
    values: dict[str, object] = {}
    for name, (field_name, parse) in ENV_SETTINGS.items():
        raw = overrides.get(name)
        if raw is None:
            raw = env.get(name)
        if raw is None or raw.strip() == "":
            continue
        values[field_name] = parse(name, raw)
    for required in ("API_BASE_URL", "API_KEY"):
        if ENV_SETTINGS[required][0] not in values:
            flag = "--" + required.lower().replace("_", "-")
            raise ConfigError(f"{required} is not set (environment, .env or {flag})")
    values.setdefault("database_url", None)
    return Settings(**values)  # type: ignore[arg-type]  # each value was parsed for its field above


def environment_with_dotenv(path: Path = Path(".env")) -> dict[str, str]:
    """The process environment over the values of a .env file (the environment wins, as is usual)."""
    from dotenv import dotenv_values

    merged = {k: v for k, v in dotenv_values(path).items() if v is not None} if path.exists() else {}
    merged.update(os.environ)
    return merged


def database_only(env: Mapping[str, str], overrides: Mapping[str, str | None]) -> tuple[str | None, Path]:
    """(DATABASE_URL or None, DATA_DIR) for commands that need no API settings (status)."""

    def pick(name: str) -> str | None:
        value = overrides.get(name)
        value = env.get(name) if value is None else value
        return value.strip() if value and value.strip() else None

    url = pick("DATABASE_URL")
    if url is not None:
        check_database_url(url)
    return url, Path(pick("DATA_DIR") or ".data")


def redacted_database_url(url: str | None) -> str | None:
    """The connection string with its password (in the URL or as a parameter) shown as ***."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    if url is None or "password" not in conninfo_to_dict(url):
        return url
    return make_conninfo(url, password="***")


def check_database_url(url: str) -> None:
    """A postgresql:// URL or a libpq key=value string; anything else names the variable."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    if "://" in url and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL (or unset for the embedded PostgreSQL)")
    try:
        conninfo_to_dict(url)
    except ProgrammingError as exc:
        raise ConfigError(f"DATABASE_URL is not a valid connection string: {exc}") from None
