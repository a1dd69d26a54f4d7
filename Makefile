# The two commands of the README: `make run` and `make test` (`make install` only installs).
#   make run PORT=8080 HOST=0.0.0.0   serve elsewhere than QA_HOST/QA_PORT (default 127.0.0.1:8000)
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
# only HOST/PORT given on the make command line: an inherited environment variable HOST is a machine name
SERVE_ARGS := $(if $(filter command line,$(origin HOST)),--host $(HOST)) $(if $(filter command line,$(origin PORT)),--port $(PORT))

# The stamp stands for the Python environment only: a failed browser install must not
# hide behind it, so that part is a separate target tried again on every `make install`/`make test`.
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

.PHONY: install browser run test bench
install: $(STAMP) browser

# the chat page's and /docs' browser tests use Debian's chromium, with a CJK font so that screenshots
# show Chinese, not boxes (best effort: needs root and apt; without it those tests are skipped)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && \
	    { [ -d /usr/share/fonts/opentype/noto ] || fc-list 2>/dev/null | grep -qi 'noto.*cjk'; }; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-noto-cjk; } || \
	  echo "browser install failed (tried again on the next make): the browser tests will be skipped"; \
	else echo "chromium/fonts-noto-cjk not installed (needs root and apt): the browser tests will be skipped"; fi

run: $(STAMP)
	$(VENV)/bin/qa serve $(SERVE_ARGS)

test: $(STAMP) browser
	$(VENV)/bin/python -m pytest

bench: $(STAMP)
	$(VENV)/bin/python bench/bench.py
