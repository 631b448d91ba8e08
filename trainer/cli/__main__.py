"""``python -m trainer.cli ...`` is ``vgrpo ...`` (the studio launches subprocesses this way)."""

import sys

from trainer.cli import main

sys.exit(main())
