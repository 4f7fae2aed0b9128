"""Small, dependency-free helpers to read deploy settings from the environment."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_VALUES = frozenset({"true", "1", "yes", "on"})
FALSE_VALUES = frozenset({"false", "0", "no", "off"})


def parse_env_file(path: str | os.PathLike) -> dict[str, str]:
    """Parse a KEY=VALUE file.

    Blank lines and lines starting with ``#`` are ignored, an optional leading
    ``export`` is accepted and a value wrapped in matching single or double
    quotes is unquoted. Anything else is an error naming the file and line.
    """
    values: dict[str, str] = {}
    text = Path(path).read_text(encoding="utf-8")
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise ImproperlyConfigured(f"{path}:{lineno}: expected KEY=VALUE, got {raw.strip()!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def load_env_file(
    path: str | os.PathLike, environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """Load ``path`` into ``environ`` without overriding variables already set.

    Returns the variables that were actually added.
    """
    if environ is None:
        environ = os.environ
    added = {}
    for key, value in parse_env_file(path).items():
        if key not in environ:
            environ[key] = value
            added[key] = value
    return added


def load_default_env_file(base_dir: Path, environ: MutableMapping[str, str] | None = None) -> None:
    """Honour ``DJANGO_ENV_FILE``; fall back to ``<base_dir>/.env`` when it is unset.

    ``DJANGO_ENV_FILE`` set to an empty string disables env-file loading.
    """
    if environ is None:
        environ = os.environ
    configured = environ.get("DJANGO_ENV_FILE")
    if configured is None:
        default = base_dir / ".env"
        if default.is_file():
            load_env_file(default, environ)
        return
    if not configured.strip():
        return
    if not Path(configured).is_file():
        raise ImproperlyConfigured(
            f"DJANGO_ENV_FILE={configured!r} does not exist or is not a file"
        )
    load_env_file(configured, environ)


def parse_bool(name: str, value: str) -> bool:
    normalized = value.strip().lower()
    if normalized in TRUE_VALUES:
        return True
    if normalized in FALSE_VALUES:
        return False
    raise ImproperlyConfigured(
        f"{name} must be a boolean (true/false, 1/0, yes/no, on/off), got {value!r}"
    )


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return parse_bool(name, value)


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _env_number(name, default, minimum, convert, kind: str):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        result = convert(default)
    else:
        try:
            result = convert(value.strip())
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be {kind}, got {value!r}") from None
    if minimum is not None and result < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {result:g}")
    return result


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    return _env_number(name, default, minimum, int, "an integer")


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    return _env_number(name, default, minimum, float, "a number")


def env_list(name: str, default: str) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        value = default
    return [item.strip() for item in value.split(",") if item.strip()]


SQLITE_OPTIONS = {
    # web, worker and beat share one SQLite file: wait for locks, allow concurrent
    # readers with one writer (WAL) and take the write lock at transaction start.
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL;",
    "transaction_mode": "IMMEDIATE",
}


def parse_database_url(url: str, base_dir: Path | None = None) -> dict:
    """Turn ``sqlite:///...`` or ``postgres(ql)://...`` into a Django DATABASES entry.

    * ``sqlite:////abs/path.sqlite3`` -> absolute path
    * ``sqlite:///relative.sqlite3`` -> relative to ``base_dir`` (when given)
    * ``sqlite:///:memory:`` or ``sqlite://`` -> in-memory database
    * ``postgresql://user:pass@host:port/name?sslmode=require`` -> query params become OPTIONS
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # Everything after "sqlite://" is "<host>/<path>"; the host must be empty.
        rest = url.strip()[len("sqlite://") :]
        if rest in ("", "/", ":memory:", "/:memory:"):
            name = ":memory:"
        else:
            if not rest.startswith("/"):
                raise ImproperlyConfigured(
                    f"DATABASE_URL {url!r}: use sqlite:////absolute/path or sqlite:///relative"
                )
            name = unquote(rest[1:])
            if not name.startswith("/") and base_dir is not None:
                name = str(base_dir / name)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            "OPTIONS": dict(SQLITE_OPTIONS),
        }
    if scheme in ("postgres", "postgresql"):
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"DATABASE_URL {_mask(url)!r} has no database name")
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"DATABASE_URL {_mask(url)!r} has an invalid port") from None
        options: dict[str, str | int] = dict(parse_qsl(parts.query))
        options.setdefault("connect_timeout", 3)
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": unquote(parts.hostname or ""),
            "PORT": str(port) if port else "",
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {scheme!r} is not supported (use sqlite:// or postgresql://)"
    )


def _mask(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
