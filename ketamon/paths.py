"""Where ketamon keeps its data and configuration.

Real data and config live in the platform's user folders (platformdirs). ``--data-dir DIR`` (or
``KETAMON_DATA_DIR``) puts both database and config in DIR. The demo always uses its own folder so
it can never touch real patient data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP = "ketamon"


@dataclass(frozen=True, slots=True)
class AppPaths:
    data_dir: Path
    config_dir: Path

    @property
    def database_file(self) -> Path:
        return self.data_dir / "ketamon.sqlite3"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def backups_dir(self) -> Path:
        return self.data_dir / "backups"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "ketamon.log"

    def sqlite_url(self) -> str:
        return f"sqlite:///{self.database_file}"

    def ensure(self) -> AppPaths:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        return self


def resolve_paths(data_dir: str | Path | None = None, *, demo: bool = False) -> AppPaths:
    """Resolve the folders: ``--data-dir`` > ``KETAMON_DATA_DIR`` > the platform's user folders.

    ``--data-dir`` holds both database and config. The demo, unless given ``--data-dir``, uses a
    ``demo`` folder beside the real data, never the real database.
    """
    if data_dir:
        base = Path(data_dir).expanduser().resolve()
        return AppPaths(base, base)
    env_data = os.environ.get("KETAMON_DATA_DIR")
    real_data = Path(env_data).expanduser() if env_data else platformdirs.user_data_path(APP)
    if demo:
        return AppPaths(real_data / "demo", real_data / "demo")
    env_config = os.environ.get("KETAMON_CONFIG_DIR")
    if env_config:
        config = Path(env_config).expanduser()
    elif env_data:
        config = real_data
    else:
        config = platformdirs.user_config_path(APP)
    return AppPaths(real_data, config)
