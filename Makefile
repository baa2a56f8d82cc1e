# The two commands of the README: `make eval` and `make test`. Both set everything up first.
.PHONY: setup eval test lint bench lock

setup:
	@bash scripts/setup.sh

eval: setup
	.venv/bin/dialbgm eval

test: setup
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks
	.venv/bin/mypy
	.venv/bin/pytest

bench: setup
	.venv/bin/python benchmarks/bench_spine.py
	.venv/bin/python benchmarks/bench_reliability.py
	.venv/bin/python benchmarks/bench_engine.py
	.venv/bin/python benchmarks/bench_experiments.py
	.venv/bin/python benchmarks/bench_audio.py
	.venv/bin/python benchmarks/bench_view.py
	.venv/bin/python benchmarks/bench_cost_grid.py
	.venv/bin/python benchmarks/bench_batch.py
	.venv/bin/python benchmarks/bench_clap.py

# Regenerate requirements/lock.txt after changing dependencies in pyproject.toml.
lock: setup
	.venv/bin/python -m pip install --quiet uv
	.venv/bin/uv pip compile pyproject.toml --extra local --extra embedding --extra parquet --extra audio --extra web --extra redis \
		--extra postgres --extra clap-no-torch --extra dev \
		--generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--no-header -o requirements/lock.txt
