"""The exceptions the engine raises, so callers can tell user mistakes from bugs.

StudioError                 base of everything below
├── ConfigError             a config field or CLI flag is wrong (names the field)
├── DataError               a dataset cannot be used at all (names the file)
│   └── RecordError         one record is bad (names file, line/index, record id, reason)
└── RunDBError              the run database cannot be opened, migrated or written
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class for every error the engine raises on purpose."""


class ConfigError(StudioError):
    """A configuration value is missing, unknown or out of range."""


class DataError(StudioError):
    """A dataset file or registry entry cannot be used."""


class RecordError(DataError):
    """One record of a dataset file is bad.

    The message reads like ``train.jsonl record 17 (q_0042): answer "E" not in A-D``; ``unit``
    replaces "record" where the index has a more precise meaning ("line 17" in JSONL/CSV,
    "index 16" in a JSON list).
    """

    def __init__(
        self, source: str, index: int, record_id: str | None, reason: str, unit: str = "record"
    ) -> None:
        self.source = source
        self.index = index
        self.record_id = record_id
        self.reason = reason
        self.unit = unit
        ident = f" ({record_id})" if record_id else ""
        super().__init__(f"{source} {unit} {index}{ident}: {reason}")


class RunDBError(StudioError):
    """The run database cannot be opened, migrated or written."""
