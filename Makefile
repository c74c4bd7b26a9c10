# hypervisor.libvirt — `make demo` runs the main job, `make test` passes the tests.
# Both do all set-up on a fresh Debian 12 machine as root, and are quick the second time.

SHELL := /bin/bash
ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
COLLECTIONS := $(ROOT)/.build/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/hypervisor/libvirt
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(ROOT)/tests/ansible.cfg
export ANSIBLE_PYTHON_INTERPRETER := $(PY)
export PATH := $(BIN):$(PATH)

.PHONY: setup host venv collection demo demo-clean test unit corpus integration sanity lint molecule fresh-check clean

setup: host venv collection

host:
	@./scripts/setup-host.sh

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt | host
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

collection:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@[ -L $(COLLECTION_LINK) ] || ln -sfn $(ROOT) $(COLLECTION_LINK)

demo: setup
	$(BIN)/ansible-playbook -i localhost, -c local playbooks/demo.yml

demo-clean: setup
	$(BIN)/ansible-playbook -i localhost, -c local playbooks/demo.yml -e demo_state=absent

test: setup unit corpus integration sanity lint molecule docs-lint changelog-lint release

unit: setup
	$(BIN)/pytest -q tests/unit  # serial: one test restarts libvirtd, which a parallel worker would feel

# libvirt's own test data (Debian's source package for the installed libvirt, fetched once into
# .build/corpus) and the domain XML virt-install writes (tests/corpus/virt_install.txt) against the
# parser, builder and modules; see tests/corpus/test_corpus.py.
corpus: setup
	$(BIN)/pytest -q -p no:cacheprovider tests/corpus

# TARGETS="domain network" runs only those targets.
integration: setup
	./tests/integration/run.sh $(TARGETS)

sanity: setup
	./tests/sanity/run.sh

lint: setup
	$(BIN)/ansible-lint --profile production

# Role scenarios (molecule/NAME): localhost against the real libvirtd, no containers.
# Each run starts from a fresh state directory inside the checkout: molecule's default one
# (~/.ansible/tmp/molecule.<hash of the directory's basename>.NAME) outlives the checkout, and a
# stale "prepared: true" there makes it skip prepare.yml.
molecule: setup
	for s in hypervisor guest; do \
	  rm -rf $(ROOT)/.build/molecule/$$s && \
	  MOLECULE_EPHEMERAL_DIRECTORY=$(ROOT)/.build/molecule/$$s $(BIN)/molecule test -s $$s || exit 1; \
	done

# The README's commands on Debian 12 roots made from nothing (debootstrap), in namespaces of
# their own: without a service manager and with systemd. See scripts/fresh-check.sh.
fresh-check:
	./scripts/fresh-check.sh $(VARIANTS)

# The docs site: every module, role and guide, as docs.ansible.com lays them out (offline).
.PHONY: docs docs-lint changelog-lint release ee-image
docs: setup
	./docs/build.sh $(ROOT)/.build/docs

docs-lint: setup
	$(BIN)/antsibull-docs lint-collection-docs --plugin-docs .

changelog-lint: setup
	$(BIN)/antsibull-changelog lint

# The release as users get it (tests/release): the tarball's contents, the tarball installed and
# used, what ansible-builder gathers for an execution environment, and the docs site in Chromium
# (screenshot: .build/screenshots/domain_module.png).
release: setup docs
	$(BIN)/pytest -q -p no:cacheprovider tests/release

# An execution environment image with podman (not part of make test: it installs packages in
# the image from Debian and PyPI, minutes): tests/release/ee-image.sh.
ee-image: setup
	./tests/release/ee-image.sh

clean:
	rm -rf .build tests/output
