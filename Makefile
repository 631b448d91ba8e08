# The two commands of the README. Both create or refresh .venv themselves.
.PHONY: studio test lint

studio:
	bash scripts/studio.sh

test:
	bash scripts/test.sh

lint:
	bash scripts/venv.sh && .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports
