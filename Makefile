# The two README commands: `make run` (train on the bundled example) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
PEER    = .venv-peer/.installed

.PHONY: run test test-quick install ui stack bench postgresql

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## train on the bundled ETTh1 workbook with the default settings
	$(BIN)/lstm-pipeline train data/ETTh1.xlsx --target OT

test: $(STAMP) postgresql  ## the full test suite (quick and slow paths), as CI runs it
	$(BIN)/python -m pytest

test-quick: $(STAMP)  ## unit tests only
	$(BIN)/python -m pytest -m "not slow"

ui: $(STAMP)  ## the MLflow UI on the local store
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000

stack: $(STAMP)  ## the local stack for scheduled retraining (stop it with: .venv/bin/lstm-pipeline stack down)
	$(BIN)/lstm-pipeline stack up

# PostgreSQL's server programs from Debian's packages, for `stack up --db postgresql` and its tests;
# installed only when missing (sudo unless run as root).
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
postgresql:  ## PostgreSQL's server programs (initdb, pg_ctl), if missing
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; }

$(PEER): bench/peer-requirements.txt  ## the bench's peer (NeuralForecast), apart from the product's packages
	$(PYTHON) -m venv .venv-peer
	.venv-peer/bin/pip install --quiet -r bench/peer-requirements.txt
	touch $(PEER)

bench: $(STAMP) $(PEER)  ## the ETTh1 benchmark, speed, overhead, scale, sweeps, backtests (~1 h); updates BENCHMARKS.md
	$(BIN)/python -m bench.run --write
