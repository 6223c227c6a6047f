# berth: the two set-up commands are `make demo` and `make test` (see README).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
GEN_DIR := clients/python
APT_PACKAGES := runc conmon busybox-static nftables iproute2 procps util-linux docker-registry skopeo

.PHONY: deps venv protos check-protos test unit demo bench clean

# System packages berth runs on; apt-get runs only when one is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	echo "$(CURDIR)" > $(VENV)/lib/python3.11/site-packages/berth-src.pth
	echo "$(CURDIR)/$(GEN_DIR)" >> $(VENV)/lib/python3.11/site-packages/berth-src.pth
	echo "$(CURDIR)/clients/cli" >> $(VENV)/lib/python3.11/site-packages/berth-src.pth
	printf '#!/bin/sh\nexec $(CURDIR)/$(PY) -m berth_cli "$$@"\n' > $(VENV)/bin/berth && chmod +x $(VENV)/bin/berth
	printf '#!/bin/sh\nexec $(CURDIR)/$(PY) -m services.berthd "$$@"\n' > $(VENV)/bin/berthd && chmod +x $(VENV)/bin/berthd
	printf '#!/bin/sh\nexec $(CURDIR)/$(PY) -m services.registry "$$@"\n' > $(VENV)/bin/berth-registry && chmod +x $(VENV)/bin/berth-registry
	touch $@

# Generated code is committed; regenerate after editing protos/.
# Generated into a fresh directory and swapped in, so running processes never
# see a half-empty package.
protos: venv
	@tmp=$$(mktemp -d $(GEN_DIR)/.gen.XXXXXX) && \
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Iprotos --python_out=$$tmp --grpc_python_out=$$tmp \
	  --mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTO_FILES) && \
	rm -rf $(GEN_DIR)/.old && { [ ! -d $(GEN_DIR)/berth ] || mv $(GEN_DIR)/berth $(GEN_DIR)/.old; } && \
	mv $$tmp/berth $(GEN_DIR)/berth && rm -rf $$tmp $(GEN_DIR)/.old

# Fails when the committed generated code is not what `make protos` makes.
check-protos: venv
	@tmp=$$(mktemp -d); cp -r $(GEN_DIR)/berth $$tmp/committed; \
	$(MAKE) -s protos >/dev/null; \
	if ! diff -r $$tmp/committed $(GEN_DIR)/berth >/dev/null; then \
	  echo "generated code is stale: run 'make protos' and commit"; diff -r $$tmp/committed $(GEN_DIR)/berth | head -20; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp; echo "generated code is current"

unit: venv
	$(PY) -m pytest -q tests/unit

test: deps venv check-protos
	$(PY) -m pytest -q -p no:cacheprovider tests

demo: deps venv
	bash deploy/demo.sh

bench: deps venv
	$(PY) -m tests.bench

clean:
	rm -rf $(VENV)
