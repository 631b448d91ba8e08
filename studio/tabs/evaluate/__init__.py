"""Evaluate tab: run `vgrpo eval` on a checkpoint in the background and browse stored evaluations.

"Run evaluation" starts ``python -m trainer.cli eval ... --job <id>`` through the supervisor as an
evaluation *job* (log file under ``<workspace>/logs/``): the job's status, owner, progress and result
live in the run database, so a page reload or a studio restart finds it again, and it can be
cancelled. Results are read back from the run DB only, so evaluations made by training, by the
command line or by an earlier studio session show up the same way: accuracy, format rate, a
confusion heatmap, the per-record table and a table per problem type (each type's metric and 95 %
interval).

``jobs`` builds and starts the command, ``views`` turns stored evaluations into tables and figures
(neither imports Gradio), ``compare`` is the base-vs-checkpoints section, ``tab`` builds and wires
the widgets.
"""

from studio.tabs.evaluate.jobs import JOB_HEADERS, eval_command, job_rows, job_status, start_evaluation
from studio.tabs.evaluate.tab import DEFAULT_DATASET, POLL_S, create_evaluate_tab, refresh_lists
from studio.tabs.evaluate.views import (
    RECORD_HEADERS,
    SUMMARY_HEADERS,
    TYPE_HEADERS,
    EvalView,
    checkpoint_choices,
    confusion_counts,
    confusion_figure,
    default_run,
    evaluation_view,
    headline,
    record_rows,
    run_choices,
    summary_rows,
    type_rows,
)

__all__ = [
    "DEFAULT_DATASET",
    "JOB_HEADERS",
    "POLL_S",
    "RECORD_HEADERS",
    "SUMMARY_HEADERS",
    "TYPE_HEADERS",
    "EvalView",
    "checkpoint_choices",
    "confusion_counts",
    "confusion_figure",
    "create_evaluate_tab",
    "default_run",
    "eval_command",
    "evaluation_view",
    "headline",
    "job_rows",
    "job_status",
    "record_rows",
    "refresh_lists",
    "run_choices",
    "start_evaluation",
    "summary_rows",
    "type_rows",
]
