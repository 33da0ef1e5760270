"""Where the API URL and the API key come from.

The key is read from ``FERRY_API_KEY`` or from the config file, never from a command-line
argument: arguments end up in shell history and in ``ps`` output. The file is
``$FERRY_CONFIG``, else ``$XDG_CONFIG_HOME/ferry/config.toml``, else
``~/.config/ferry/config.toml``; ``ferry login`` writes it with mode 0600, and a file
that others can read is refused (as ssh refuses a readable private key).
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8800"


class ConfigError(Exception):
    """The configuration is missing or unusable; the message says what to do."""


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str


def config_path() -> Path:
    """The config file this process reads and ``ferry login`` writes."""
    if os.environ.get("FERRY_CONFIG"):
        return Path(os.environ["FERRY_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ferry" / "config.toml"


def read_file(path: Path | None = None) -> dict[str, str]:
    """The config file's ``url`` and ``api_key`` (an absent file is an empty config)."""
    path = path or config_path()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} can be read by other users; run: chmod 600 {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable TOML file: {exc}") from None
    return {key: str(data[key]) for key in ("url", "api_key") if isinstance(data.get(key), str)}


def write_file(*, url: str, api_key: str, path: Path | None = None) -> Path:
    """Write the config file with mode 0600 from the start (never briefly readable)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # JSON strings of printable text are valid TOML basic strings.
    text = f"url = {json.dumps(url)}\napi_key = {json.dumps(api_key)}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an existing file keeps its mode on O_CREAT
        handle.write(text)
    return path


def load() -> Settings:
    """The URL and key to use: the environment wins over the config file."""
    env_url = os.environ.get("FERRY_API_URL", "").strip()
    env_key = os.environ.get("FERRY_API_KEY", "").strip()
    file = {} if env_url and env_key else read_file()
    url = env_url or file.get("url") or DEFAULT_URL
    key = env_key or file.get("api_key", "")
    if not key:
        raise ConfigError(f"No API key: set FERRY_API_KEY or run `ferry login` (writes {config_path()}).")
    return Settings(url=url.rstrip("/"), api_key=key)
