# The two commands the README promises: `make demo` (set up, then render -> train -> evaluate ->
# leaderboard on the procedural default) and `make test` (set up, then ruff and pytest).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= out/demo
# The demo: a tiny procedural set (13 classes x 6 objects x 20 views, 32 px), SIE for 20 short epochs.
DEMO_ARGS ?= --method sie --preset tiny --epochs 20 --per-class 6 --views 20 --render-workers 2

.PHONY: demo test install lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/3die benchmark $(DEMO_ARGS) --out $(DEMO)
	$(BIN)/3die leaderboard $(DEMO)/leaderboard.csv --out $(DEMO)/leaderboard.csv --plot $(DEMO)/plots

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; the suite is missing" >&2; exit 1; fi; \
	exit $$rc

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache  # not the rest of out/ (the mini benchmark: hours)
