"""Datasets: MCQ records from many annotation formats, validation, and the dataset registry.

Importing this package is cheap (no torch); video decoding is imported when first used.
"""

from trainer.data.records import MCQRecord
from trainer.data.registry import (
    DatasetEntry,
    get_dataset,
    list_datasets,
    load_dataset_use,
    register_dataset,
    resolve_dataset_use,
    unregister_dataset,
    validate_entry,
)
from trainer.data.validate import ValidationReport, load_records, validate_file

__all__ = [
    "DatasetEntry",
    "MCQRecord",
    "ValidationReport",
    "get_dataset",
    "list_datasets",
    "load_dataset_use",
    "load_records",
    "register_dataset",
    "resolve_dataset_use",
    "unregister_dataset",
    "validate_entry",
    "validate_file",
]
