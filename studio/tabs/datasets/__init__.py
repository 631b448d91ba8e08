"""Datasets tab: upload (annotation + videos, or one zip), validate, preview, register, delete.

An upload is first staged in ``<workspace>/datasets/.staging/<token>/`` and validated there; Register
moves it to ``<workspace>/datasets/<name>/``. Everything a user sends is checked before it is kept:
total size, zip entries that would land outside the folder (zip slip), symlinks, and files that
are neither the annotation nor media. Any problem is a message, never a crash.

``staging`` copies and checks an upload (no Gradio); ``tab`` builds the widgets and wires them.
"""

from studio.tabs.datasets.staging import (
    ANNOTATION_SUFFIXES,
    DEFAULT_LIMITS,
    MEDIA_SUFFIXES,
    STAGING,
    STALE_STAGING_S,
    UploadLimits,
    clean_stale_staging,
    extract_zip,
    human_size,
    stage_upload,
)
from studio.tabs.datasets.tab import create_datasets_tab, error_rows, record_html, report_markdown

__all__ = [
    "ANNOTATION_SUFFIXES",
    "DEFAULT_LIMITS",
    "MEDIA_SUFFIXES",
    "STAGING",
    "STALE_STAGING_S",
    "UploadLimits",
    "clean_stale_staging",
    "create_datasets_tab",
    "error_rows",
    "extract_zip",
    "human_size",
    "record_html",
    "report_markdown",
    "stage_upload",
]
