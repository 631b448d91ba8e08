"""What the studio records about the runs it starts: the kinds of its events and the trainer's log
file name (shared by the Supervisor and its Ray half, ``studio.ray_supervision``)."""

from __future__ import annotations

# An event whose message is JSON: how the run was started (pid or Ray job, planned steps, log, config).
LAUNCH_EVENT = "launched"
ABORT_EVENT = "abort_requested"
# In the run's output_dir: a local trainer's stdout and stderr.
LOG_FILE = "train.log"
