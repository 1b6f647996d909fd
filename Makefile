# The two commands of README: `make demo` (set up, run the main job) and `make test` (set up, run
# the suite). Everything runs with one torch thread: on small ops a second thread costs ~100x.
export OMP_NUM_THREADS := 1
BIN := .venv/bin

.PHONY: demo test lint setup clean

demo:
	bash scripts/setup.sh
	$(BIN)/diffvm demo

test:
	bash scripts/setup.sh dev
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest

lint:
	$(BIN)/python -m ruff check .

setup:
	bash scripts/setup.sh dev

clean:
	rm -rf .venv runs build *.egg-info .pytest_cache .ruff_cache .hypothesis
