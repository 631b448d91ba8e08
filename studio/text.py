"""Every string the studio shows: headings, intros, labels and messages (one place to reword or translate)."""

from __future__ import annotations

import html

TITLE = "Video GRPO Studio"
SUBTITLE = (
    "Turn a Qwen vision-language model into a better video reasoner with GRPO: bring a video question "
    "dataset (multiple choice, numbers, text), train, watch the rewards climb, compare runs, chat with "
    "the result."
)

# ---- tabs: (title, intro line) ------------------------------------------------------------------
TAB_DATASETS = "Datasets"
TAB_TRAIN = "Train"
TAB_MONITOR = "Monitor"
TAB_RUNS = "Runs"
TAB_CHAT = "Chat"
TAB_EVALUATE = "Evaluate"

INTRO_DATASETS = (
    "Upload an annotation file (JSON, JSONL or CSV) with its videos, or one zip holding both. "
    "Every record is checked; bad ones are listed by record and the good ones stay usable."
)
INTRO_TRAIN = (
    "Pick a model and datasets (Use also sets the matching eval set and the answer-format preset), "
    "adjust the knobs, then **Check config**: it runs every check Launch runs and samples a few "
    "groups with your model and settings, so a run that cannot learn is flagged before it starts. "
    "Training runs in the background: you can close the page."
)
INTRO_MONITOR = (
    "Follow a run live: progress, the GRPO metrics, the sampled completions and the trainer's log. "
    "Abort stops at the next step and saves a checkpoint; Resume continues from it."
)
INTRO_RUNS = (
    "Every run in this workspace. Select two or more to overlay their metrics and diff their configs."
)
PLACEHOLDER_TAB = "This tab's module ({module}) is not installed in this checkout."

# ---- config form sections (TrainConfig section -> heading) -------------------------------------
SECTION_TITLES = {
    "model": "Model",
    "data": "Data",
    "video": "Video sampling",
    "grpo": "GRPO, rewards and generation",
    "optim": "Optimisation",
    "run": "Run, logging and saving",
    "launch": "Where it runs: this machine or a Ray cluster",
}

# ---- datasets -----------------------------------------------------------------------------------
UPLOAD_LABEL = "Annotation file + videos, or one .zip of both (at most {limit} in all)"
DATASET_NAME_LABEL = "Dataset name"
DATASET_NAME_INFO = (
    "Letters, digits, _ . - only. A name containing `no_think` expects answers without <think>."
)
VALIDATE_BUTTON = "Validate upload"
REGISTER_BUTTON = "Register dataset"
DELETE_DATASET_BUTTON = "Delete dataset"
REGISTERED_HEADING = "### Registered datasets"
REPORT_HEADING = "### Validation report"
PREVIEW_HEADING = "### Preview"
NOTHING_UPLOADED = "Upload an annotation file (and its videos) or a zip first."
NOTHING_STAGED = "Validate an upload first."
NO_VALID_RECORDS = "No record is usable: fix the file and upload it again."
REGISTERED = "Registered **{name}**: {valid} usable records ({mode} mode) in `{folder}`."
DELETED_DATASET = "Deleted dataset **{name}**."
UPLOAD_REFUSED = "Upload refused"
NOT_REGISTERED = "Not registered"
NOT_DELETED = "Not deleted"
CANNOT_READ_DATASET = "Cannot read {name}"
BUILTIN_CANNOT_DELETE = "**{name}** is built in and cannot be deleted."

# ---- train --------------------------------------------------------------------------------------
MODEL_LABEL = "Model"
MODEL_INFO = "The embedded tiny model, a Hugging Face hub id, or a local folder."
DATASET_PICK_LABEL = "Add datasets"
DATASET_PICK_INFO = "Pick registered datasets and a sampling percent, then press Use."
PERCENT_LABEL = "Sample %"
USE_DATASETS_BUTTON = "Use"
PREVIEW_BUTTON = "Check config"
LAUNCH_BUTTON = "Launch training"
RESET_BUTTON = "Reset to preset"
YAML_LABEL = "Resolved config (written to <workspace>/configs/<run>.yaml)"
COMMAND_LABEL = "Equivalent command line"
LAUNCHED = "Launched run **#{run_id} {name}** (pid {pid}). Follow it in the Monitor tab; log: `{log}`."
CONFIG_ERROR = "Config error"
NOT_LAUNCHED = "Not launched"

# ---- monitor ------------------------------------------------------------------------------------
RUN_PICK_LABEL = "Run"
REFRESH_BUTTON = "Refresh"
SMOOTHING_LABEL = "Smoothing (EMA weight)"
ABORT_BUTTON = "Abort"
RESUME_BUTTON = "Resume"
NO_RUN = "No run selected. Launch one in the Train tab."
ROLLOUT_HEADING = "### Rollouts"
ROLLOUT_STEP_LABEL = "Step"
ROLLOUT_PROMPT_LABEL = "Prompt"
NO_ROLLOUTS = "No rollouts stored for this run yet (they are stored at step 1 and every grpo_logging_steps)."
LOG_HEADING = "Trainer log (tail)"
METRIC_HELP_HEADING = "What the GRPO charts show"
# One line per chart of the GRPO panel, exactly what the trainer logs (trainer.step.grpo_step).
METRIC_HELP = {
    "grpo/policy_seq_log_prob": "mean over completions of their summed token log-probs under the policy "
    "being trained.",
    "grpo/kl_div": "mean per-token KL (k3) between the policy and the reference model over completion "
    "tokens.",
    "grpo/format_reward": "mean format reward (1: the think/answer shape the prompt asks for) over every "
    "completion sampled in the step.",
    "grpo/accuracy_reward": "mean accuracy reward (1: the closed `<answer>` block names the right option) "
    "over every completion sampled in the step.",
    "grpo/total_reward": "mean of format_reward_weight x format + accuracy_reward_weight x accuracy.",
    "grpo/advantage": "mean |A| over the step's trained completions, where A is the group-relative "
    "advantage each rollout card shows (before grpo_alpha scales it in the loss). Its mean is 0 by "
    "construction; its size says how strong the learning signal is.",
}
ABORT_SENT = "Sent SIGTERM to run #{run_id} (pid {pid}); it stops after the current step."
ABORT_NOT_ACTIVE = "Run #{run_id} is {status}: nothing to abort."
RESUMED = "Resuming run #{run_id} from its latest checkpoint (pid {pid})."
# A Ray run: no local process; its job's rank 0 reads the abort at its next heartbeat.
ABORT_SENT_RAY = (
    "Recorded the abort of run #{run_id}: its Ray job's trainer stops at its next heartbeat (within "
    "seconds), saves a checkpoint and ends aborted; the job is stopped if it has not after {grace:g} s."
)
RESUMED_RAY = "Resuming run #{run_id} from its latest checkpoint as Ray job `{job}`."
LAUNCHED_RAY = (
    "Launched run **#{run_id} {name}** as Ray job `{job}` on {address}. Follow it in the Monitor tab "
    "(its log is the job's)."
)
RESUME_ACTIVE = "Run #{run_id} is {status}: abort it before resuming."

# ---- runs ---------------------------------------------------------------------------------------
COMPARE_LABEL = "Runs to compare"
METRICS_LABEL = "Metrics"
DIFF_HEADING = "### Config differences"
NO_DIFF = "The selected runs have identical configs."
DELETE_RUN_BUTTON = "Delete selected runs"
CONFIRM_DELETE = "Yes, delete"
CANCEL = "Cancel"
DELETE_FILES_LABEL = "Also delete their output folders (checkpoints, logs)"
CONFIRM_DELETE_TEXT = "Delete {runs}? This cannot be undone."
DELETE_ACTIVE = "Run #{run_id} is {status}: abort it before deleting."
DELETED_RUNS = "Deleted {runs}."
PICK_RUNS = "Select at least one run."
EXPORT_WHAT_LABEL = "Export"
EXPORT_FORMAT_LABEL = "Format"
EXPORT_BUTTON = "Export selected runs"
EXPORT_FILES_LABEL = "Exported files (click the size to download; the same file as vgrpo runs export writes)"
NOT_EXPORTED = "Not exported"
EXPORTED = "Exported the {what} of {count} run(s) as {fmt}: download below."

# ---- train: essentials, sections, pre-flight ------------------------------------------------------
SECTION_CHANGED = "{title} · {count} changed from the preset"
MORE_SETTINGS = (
    "### More settings\nEverything else, by concern; a section's title counts what differs from the preset."
)
EMPTY_MEANS_UNSET = "empty: not set"
REWARDS_TABLE_INFO = (
    "**rewards**: one row per reward: name, function (empty for the built-ins format and accuracy; "
    "`FILE.py:NAME` or `package.module:NAME` for your own), weight. **Empty table: format and accuracy "
    "weighted by format_reward_weight and accuracy_reward_weight.** Any row replaces those two (list "
    "format and accuracy too to keep them). A function is called as "
    "`fn(completions, records, **context)` and returns a list of floats (None: does not apply); its "
    "file must be in the workspace (upload one below). Add rows with + or a cell's ⋮ menu."
)
REWARD_UPLOAD_BUTTON = "Upload a reward file (.py)"
REWARD_UPLOADED = (
    "Stored `{path}` in the workspace. Type its function as `{ref}` in the table's function column{more}."
)
REWARD_UPLOADED_NO_FUNCTION = (
    "Stored `{path}` in the workspace, but it defines no public function: add one "
    "(`def NAME(completions, records, **context)`) and type it as `{file}:NAME`."
)
REWARD_UPLOAD_REFUSED = "Reward file refused"
REWARD_UPLOAD_NOT_LOCAL = (
    "Uploading a reward file is allowed only when the studio is served on this machine (127.0.0.1) or "
    "with a login: a reward file is code the trainer runs. Start the studio with `--auth USER:PASSWORD` "
    "(or on `--host 127.0.0.1`) to upload one."
)
PICK_DATASETS_FIRST = "Pick one or more datasets first, then press Use."
DATASETS_USED = "Use: {changes}."
CONFIG_VALID_CAN_LEARN = (
    "**Config is valid** and the pre-flight says the run can learn: {groups} of {total} sampled "
    "groups have different rewards (format rate {fmt:.2f}, accuracy {acc:.2f})."
)
CONFIG_VALID_WARNS = "**Config is valid**, but the pre-flight warns the run cannot learn:\n\n{warnings}"
PREFLIGHT_FAILED = "**Config is valid**, but the pre-flight could not sample: {error}"
# rollout_backend: vllm from the studio (studio.environments picks the trainer's interpreter).
LAUNCHER_CHOICES = [("This machine", "local"), ("Ray cluster", "ray")]
LAUNCHER_INFO = (
    "This machine: num_processes processes here. Ray cluster: a Ray job on the cluster at ray_address, "
    "num_workers workers of cpus_per_worker / gpus_per_worker each; the studio must run on a PostgreSQL "
    "run database (vgrpo studio --db postgresql+psycopg://...) and output_dir must be storage every node "
    "sees. Check config checks the cluster before Launch."
)
ROLLOUT_BACKEND_INFO = (
    "Who samples the rollouts: hf (transformers generate, in the studio's Python) or vllm (a vLLM "
    "engine in the trainer, weights synced every step). A vllm run starts in $VGRPO_VLLM_PYTHON, "
    "the studio's Python if it has vLLM, or .venv-vllm/bin/python (build it: bash scripts/venv.sh "
    "vllm); on a CPU use the model assets/tiny-qwen2.5-vl-hd64 (vLLM's CPU attention has no "
    "head_dim 16). Check config says whether that Python is there."
)
PREFLIGHT_VLLM_NOTE = (
    "\n\nThe completions below were sampled here with transformers; the run samples with vLLM: {where}"
)
PREFLIGHT_TABLE_LABEL = "Pre-flight: sampled completions (grpo_sample_size per question, the run's settings)"
PREFLIGHT_HEADERS = ["question", "gold", "#", "completion", "tokens", "cut", "format", "accuracy", "reward"]
COST_HEADING = "**Cost of a step**"
# A new model whose visual token is another size: the form's pixel budgets follow (studio.models).
PIXELS_RESCALED = (
    "Pixel budgets rescaled for {family}'s {side} px visual tokens, so each frame keeps its token "
    "count: {changes}."
)
YAML_IO_HEADING = "Config as YAML and command line"
YAML_IO_LABEL = "Config YAML: paste one and press Load, or edit and download it"
LOAD_YAML_BUTTON = "Load YAML into the form"
DOWNLOAD_YAML_BUTTON = "Download config YAML"
YAML_LOADED = "Loaded the pasted YAML into the form (keys it does not name keep the preset's value)."
YAML_CHANGED = "Changed in the form: {changes}."
YAML_UNCHANGED = "No value in the form changed."


def literal(message: object) -> str:
    """``message`` (a plain-text warning or error from the trainer) as Markdown or HTML that shows it
    character for character: ``<answer>`` and ``</answer>`` are escaped, not taken for HTML tags.

    gr.Markdown renders HTML and drops tags it does not know, with what they hold: the pre-flight's
    "cut ... before </answer>, so" read "cut ... before , so", and "(answers as <think>…</think>
    <answer>…</answer>) but" read "answers as ) but". Every message put into a gr.Markdown or gr.HTML
    goes through here (``problems.problem_markdown`` does it for errors); the trainer's own text
    stays plain for the terminal."""
    return html.escape(str(message), quote=False)
