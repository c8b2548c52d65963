# Two entry points for a newcomer: `make demo` and `make test`.
# Both create .venv on first use and install the pinned dependencies.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint clean messages compile-messages

# Message catalogs (bot/locales). The .po files are the source and are committed; the compiled
# .mo files are NOT committed: they are build output that would drift from the .po. They are
# compiled here, before `make test` and `make demo` (and by the install stamp), next to the
# .po files, where the editable install finds them (bot/i18n.py reads bot/locales/).
# `make messages` re-extracts bot/messages.py and merges new texts into every catalog;
# translate the new (empty) entries, then `make compile-messages` (or just `make test`).
LOCALES := bot/locales
PO      := $(wildcard $(LOCALES)/*/LC_MESSAGES/messages.po)
MO      := $(PO:.po=.mo)
# Keys are message contexts: msg(key, text) and plural(key, count, singular, plural).
KEYWORDS := -k msg:1c,2 -k plural:1c,3,4

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,wechat]'
	$(BIN)/pybabel -q compile -D messages -d $(LOCALES)
	touch $(STAMP)

messages: $(STAMP)
	$(BIN)/pybabel extract --no-default-keywords $(KEYWORDS) --no-location \
	  --project=gatepass --copyright-holder="gatepass contributors" \
	  -o $(LOCALES)/messages.pot bot/messages.py
	$(BIN)/pybabel update -D messages -i $(LOCALES)/messages.pot -d $(LOCALES) \
	  --no-fuzzy-matching --ignore-obsolete

compile-messages: $(MO)

# One rule per catalog, so an edited .po is recompiled before the next test or demo run.
$(LOCALES)/%/LC_MESSAGES/messages.mo: $(LOCALES)/%/LC_MESSAGES/messages.po | $(STAMP)
	$(BIN)/pybabel -q compile -D messages -l $* -i $< -o $@

# The demo's WeChat chapter runs the same local puppet service as the tests: $(NODE_DEPS)
# (below) installs its Node packages when node is on PATH; without node the chapter is skipped.
demo: $(STAMP) $(MO) $(NODE_DEPS)
	$(BIN)/gatepass demo

# The WeChat tests talk gRPC to a local Wechaty puppet service, a Node program
# (sandbox/wechaty/puppet_server.mjs); its packages are pinned by the committed lock file and
# installed here. Without `node` on PATH nothing is installed and those tests skip, saying why.
# --ignore-scripts: the three install scripts in the tree are not needed (leveldown ships
# prebuilt binaries that node-gyp-build loads at run time, protobufjs's only checks its CLI's
# versions, @swc/core belongs to a web puppet we do not run), and npm 11 refuses to run them
# unless approved anyway.
WECHATY     := sandbox/wechaty
NODE_STAMP  := $(WECHATY)/node_modules/.installed
NODE_DEPS   := $(if $(shell command -v node 2>/dev/null),$(NODE_STAMP))

$(NODE_STAMP): $(WECHATY)/package.json $(WECHATY)/package-lock.json
	cd $(WECHATY) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

test: $(STAMP) $(MO) $(NODE_DEPS)
	$(BIN)/pytest -q --durations=15

# Lint and types, at the strictness written down in pyproject.toml ([tool.ruff], [tool.mypy]).
# `ruff check --fix .` and `ruff format .` repair most findings.
LINT_PATHS := gatepass bot billing membership storage scheduler sandbox tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(LINT_PATHS)

bench: $(STAMP)
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/sweep.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache $(MO) $(WECHATY)/node_modules
