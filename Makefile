# The two Quickstart commands: `make demo` and `make test`.
# Both run scripts/setup.sh first when needed (a .venv with everything, and
# Debian's chromium for the browser tests), then the demo or the whole suite.
STAMP := .venv/.installed

.PHONY: demo test setup clean

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	.venv/bin/convlens demo -o demo-out

test: $(STAMP)
	.venv/bin/python -m pytest

clean:
	rm -rf .venv demo-out build src/*.egg-info
