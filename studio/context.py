"""What every tab shares: the workspace folder and the run database."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from trainer.core.paths import default_db_url
from trainer.rundb import RunStore


@dataclass
class StudioContext:
    """The studio's workspace (datasets.json, uploaded datasets, run configs, outputs, runs.db)."""

    workspace: Path
    db_url: str = field(default="")
    # Where the server listens and whether it needs a login (``studio.app.launch_app`` sets both; a
    # studio built but not launched by it knows neither and refuses reward uploads).
    host: str | None = None
    has_login: bool = False

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        if not self.db_url:
            self.db_url = default_db_url(self.workspace)

    @cached_property
    def store(self) -> RunStore:
        """One store per studio process (SQLAlchemy pools its connections; WAL lets trainers write)."""
        return RunStore(self.db_url)

    @property
    def datasets_dir(self) -> Path:
        return self.workspace / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.workspace / "outputs"

    @property
    def configs_dir(self) -> Path:
        return self.workspace / "configs"
