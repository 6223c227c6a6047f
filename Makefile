# berth: the two set-up commands are `make demo` and `make test` (see README).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
# The public API (the Engine and the shapes it uses), which the Go and Node clients are made from.
CLIENT_PROTO_FILES := $(filter protos/berth/engine/% protos/berth/types/%,$(PROTO_FILES))
GEN_DIR := clients/python
GO_DIR := clients/go
GO_MODULE := berth/clients/go
NODE_DIR := clients/node
NODE_BIN := $(NODE_DIR)/node_modules/.bin
# What berth runs on (tini: the init of `run --init`).
APT_PACKAGES := runc conmon busybox-static nftables iproute2 procps util-linux tini
# The cluster store of multi-node berth (docs/cluster.md): Debian's etcd, whose
# service apt_install keeps from starting (berthd is pointed at an etcd of the user's).
CLUSTER_APT_PACKAGES := etcd-server
# What only the tests need: the reference registry and skopeo, and gcc with
# libc6-dev for the containment suite's static syscall probe (the client
# toolchains come with client-tools).
TEST_APT_PACKAGES := docker-registry skopeo gcc libc6-dev iperf3
# Debian's docker CLI and docker-compose, for the tests that drive berth's Docker
# API with them. Only their clients are used: dockerd and containerd come as
# dependencies and are kept from starting (see apt_install); without recommends,
# so that needrestart, cgroupfs-mount and apparmor's services do not come along.
DOCKER_CLIENT_APT_PACKAGES := docker.io docker-compose
# Go, Debian's protoc plugins, and the Go gRPC/protobuf sources the Go client
# builds against (golang/protobuf 1.5, whose codec speaks the APIv2 messages
# protoc-gen-go makes; grpc would accept 1.3, which cannot decode oneofs).
GO_APT_PACKAGES := golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev \
  golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev
# buf breaking compares the contracts with this git ref (see check-protos).
BREAKING_AGAINST ?= main
# Go builds offline in GOPATH mode against Debian's packaged sources
# (/usr/share/gocode): there is no module proxy to fetch go.mod's requirements.
GO_ENV := GO111MODULE=off GOFLAGS= GOPATH=$(CURDIR)/.gopath:/usr/share/gocode
comma := ,
space := $(subst ,, )
# Each client proto's Go package: berth/engine/v1/engine.proto -> berth/clients/go/berth/engine/v1;enginev1.
GO_PKG_OPTS := $(subst $(space),,$(foreach f,$(CLIENT_PROTO_FILES:protos/%=%),$(comma)M$(f)=$(GO_MODULE)/$(patsubst %/,%,$(dir $(f)));$(subst /,,$(patsubst berth/%/,%,$(dir $(f))))))

.PHONY: deps test-deps client-tools venv bytecode protos check-protos client-examples test unit demo demo-cluster bench clean conformance

# apt-get install of the missing ones among $(1) (with apt-get options $(2)),
# starting nothing: a policy-rc.d that denies starts while it runs (Debian's
# docker-registry would start a registry on :5000, docker.io dockerd and
# containerd), and the services and sockets it installed disabled so that none
# starts at boot either (docker.socket would start dockerd on first use).
define apt_install
missing=""; for p in $(1); do dpkg-query -W -f '$${Status}' $$p 2>/dev/null | grep -q ' installed$$' || \
  missing="$$missing $$p"; done; \
if [ -n "$$missing" ]; then echo "installing:$$missing"; \
  policy=""; if [ ! -e /usr/sbin/policy-rc.d ]; then policy=/usr/sbin/policy-rc.d; \
    trap 'rm -f $$policy' EXIT; printf '#!/bin/sh\nexit 101\n' >$$policy; chmod +x $$policy; fi; \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) $$missing >/dev/null || exit 1; \
  for unit in $$(dpkg -L $$missing | grep -E '^(/usr)?/lib/systemd/system/[^/@]+\.(service|socket)$$'); do \
    systemctl disable -q "$${unit##*/}" 2>/dev/null || true; done; \
fi
endef

# System packages berth runs on; apt-get runs only when one is missing.
deps:
	@$(call apt_install,$(APT_PACKAGES) $(CLUSTER_APT_PACKAGES))

# What `make test` needs beyond `make deps`.
test-deps: deps client-tools
	@$(call apt_install,$(TEST_APT_PACKAGES))
	@$(call apt_install,$(DOCKER_CLIENT_APT_PACKAGES),--no-install-recommends)

# The client toolchains: Go and its protoc plugins from Debian, Node's packages
# (ts-proto, typescript, @grpc/grpc-js, buf) from npm at the versions the
# committed lock file pins.
client-tools: $(NODE_DIR)/node_modules/.installed
	@$(call apt_install,$(GO_APT_PACKAGES))
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v npm >/dev/null || { $(call apt_install,npm); }
	cd $(NODE_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

venv: $(VENV)/.installed $(VENV)/bin/berth bytecode
# `berth` starts its interpreter without site (-S): a command that lives for one call should
# not pay for site-packages' .pth files (setuptools' distutils shim among them); the paths
# berth-src.pth adds are written into the launcher instead.
$(VENV)/bin/berth: $(VENV)/.installed Makefile
	printf '#!%s -S\nimport sys\nsys.path += ["%s", "%s", "%s", "%s"]\nimport berth_cli.__main__\n' \
	  $(CURDIR)/$(PY) $(CURDIR)/$(VENV)/lib/python3.11/site-packages $(CURDIR) $(CURDIR)/$(GEN_DIR) \
	  $(CURDIR)/clients/cli > $@ && chmod +x $@
# The CLI's modules precompiled: a process that lives for one call should not compile
# its sources each time (Python does not write bytecode when PYTHONDONTWRITEBYTECODE is set).
bytecode: $(VENV)/.installed
	@$(PY) -m compileall -q -j 0 clients/cli/berth_cli clients/python/berth_docker clients/python/berth_errors.py $(GEN_DIR)/berth >/dev/null
$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	echo "$(CURDIR)" > $(VENV)/lib/python3.11/site-packages/berth-src.pth
	echo "$(CURDIR)/$(GEN_DIR)" >> $(VENV)/lib/python3.11/site-packages/berth-src.pth
	echo "$(CURDIR)/clients/cli" >> $(VENV)/lib/python3.11/site-packages/berth-src.pth
	printf '#!/bin/sh\nexec $(CURDIR)/$(PY) -m services.berthd "$$@"\n' > $(VENV)/bin/berthd && chmod +x $(VENV)/bin/berthd
	printf '#!/bin/sh\nexec $(CURDIR)/$(PY) -m services.registry "$$@"\n' > $(VENV)/bin/berth-registry && chmod +x $(VENV)/bin/berth-registry
	touch $@

# $(call generate,DIR): the generated code, made in DIR/python, DIR/go and DIR/node.
# One protoc (grpc_tools', pinned by requirements.txt) for all three, so the
# output depends only on the lock files and Debian's plugin versions.
define generate
mkdir -p $(1)/python $(1)/go $(1)/node && \
PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Iprotos \
  --python_out=$(1)/python --grpc_python_out=$(1)/python --mypy_out=quiet:$(1)/python --mypy_grpc_out=quiet:$(1)/python \
  $(PROTO_FILES) && \
$(PY) -m grpc_tools.protoc -Iprotos \
  --go_out=$(1)/go "--go_opt=paths=source_relative$(GO_PKG_OPTS)" \
  --go-grpc_out=$(1)/go "--go-grpc_opt=paths=source_relative$(GO_PKG_OPTS)" \
  --plugin=protoc-gen-ts_proto=$(NODE_BIN)/protoc-gen-ts_proto --ts_proto_out=$(1)/node \
  --ts_proto_opt=outputServices=grpc-js,env=node,esModuleInterop=true \
  $(CLIENT_PROTO_FILES)
endef

# Generated code is committed; regenerate after editing protos/: Python (all
# contracts) in clients/python/berth (and the vendored Kubernetes CRI in
# clients/python/k8s), Go in clients/go/berth, TypeScript in
# clients/node/gen (the public API). Generated into a fresh directory and
# swapped in, so running processes never see a half-empty package.
protos: venv client-tools
	@tmp=$$(mktemp -d clients/.gen.XXXXXX) && trap 'rm -rf $$tmp' EXIT && \
	$(call generate,$$tmp) && \
	for pair in python/berth:$(GEN_DIR)/berth python/k8s:$(GEN_DIR)/k8s go/berth:$(GO_DIR)/berth node:$(NODE_DIR)/gen; do \
	  new=$$tmp/$${pair%%:*} dest=$${pair#*:}; \
	  { [ ! -d $$dest ] || mv $$dest $$tmp/old; } && mv $$new $$dest && rm -rf $$tmp/old || exit 1; \
	done

# Fails when the committed generated code is not what `make protos` makes (the
# generated files only, so caches beside them do not count), when buf lint
# finds a fault, or when the contracts break compatibility with $(BREAKING_AGAINST)
# (a git ref, main by default, or origin/main in a clone without a local main).
# On a branch that is the change about to be merged; on main itself, as in CI,
# main is HEAD, so it compares the contracts with themselves as committed and
# passes unless the working tree changed them.
# `make check-protos BREAKING_AGAINST=<ref>` compares with another ref.
check-protos: venv client-tools
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(call generate,$$tmp/fresh) && \
	mkdir -p $$tmp/committed/python $$tmp/committed/go $$tmp/committed/node && \
	(cd $(GEN_DIR) && find berth k8s -type f \( -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_pb2_grpc.py' \
	  -o -name '*_pb2_grpc.pyi' \) -exec cp --parents {} $$tmp/committed/python \;) && \
	(cd $(GO_DIR) && find berth -type f -name '*.pb.go' -exec cp --parents {} $$tmp/committed/go \;) && \
	(cd $(NODE_DIR)/gen && find . -type f -name '*.ts' -exec cp --parents {} $$tmp/committed/node \;) && \
	if ! diff -r $$tmp/committed $$tmp/fresh >/dev/null; then \
	  echo "generated code is stale: run 'make protos' and commit"; diff -r $$tmp/committed $$tmp/fresh | head -20; exit 1; fi && \
	echo "generated code is current" && \
	$(NODE_BIN)/buf lint protos && echo "buf lint: clean" && \
	ref=$$(git rev-parse -q --verify "$(BREAKING_AGAINST)^{commit}" || git rev-parse -q --verify "origin/$(BREAKING_AGAINST)^{commit}") || \
	  { echo "buf breaking: no git ref $(BREAKING_AGAINST) (nor origin/$(BREAKING_AGAINST)) to compare with"; exit 1; } && \
	mkdir $$tmp/against && git archive "$$ref" protos | tar -x -C $$tmp/against && \
	$(NODE_BIN)/buf breaking protos --against $$tmp/against/protos && \
	echo "buf breaking: compatible with $(BREAKING_AGAINST) ($${ref:0:12})"

# The Go and Node examples, built: .gopath/bin/run-and-watch and
# clients/node/dist/examples/run-and-watch.js (tests/e2e/test_clients.py runs this first).
client-examples: client-tools
	@mkdir -p .gopath/src/$(dir $(GO_MODULE)) && ln -sfn $(CURDIR)/$(GO_DIR) .gopath/src/$(GO_MODULE) && \
	$(GO_ENV) go build -o .gopath/bin/run-and-watch $(GO_MODULE)/examples/run-and-watch && \
	$(NODE_BIN)/tsc -p $(NODE_DIR)

unit: venv
	$(PY) -m pytest -q tests/unit

test: test-deps venv check-protos
	$(PY) -m pytest -q -p no:cacheprovider tests

# critest (cri-tools v1.26's CRI validation suite, not built here) against a
# fresh engine's cri.sock: `make conformance CRITEST=/path/critest CRI_IMAGES=DIR`,
# DIR holding docker-archive tarballs of the images critest uses (pause,
# e2e-test-images busybox/nginx/httpd/nonewprivs, ...). Report in critest-report/.
CRITEST ?= critest
CRI_IMAGES ?= cri-images
conformance: deps venv
	$(PY) -m tests.conformance.critest --critest $(CRITEST) --images $(CRI_IMAGES) --report critest-report

demo: deps venv
	bash deploy/demo.sh

# etcd and three berth nodes in network namespaces of their own: an overlay across them.
demo-cluster: deps venv
	bash deploy/demo-cluster.sh

# `make bench BENCH_SCALE=1000` adds the rows measured with that many containers running
# (BENCH_ONLY=scale: those rows alone; BENCH_ONLY=engine: the engine rows alone); BENCH_RUNS is
# the samples per median.
export BENCH_SCALE BENCH_ONLY BENCH_RUNS
bench: deps venv
	$(PY) -m tests.bench

clean:
	rm -rf $(VENV)
