# pgforest.cluster — quick start on a fresh Debian machine:
#   make demo    set everything up and run the main job on the local two-node sandbox
#   make test    set everything up and run every test (unit, integration, reliability, molecule, the
#                two-machine lab, sanity, lint)
#   make soak    24 online recoveries in a row under load (docs/RELIABILITY.md is written from the run)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INVENTORY := sandbox/inventory.yml
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test unit integration reliability soak molecule sanity lint sandbox sandbox-down venv clean lab-up lab-down lab-test

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt scripts/bootstrap.sh
	bash scripts/bootstrap.sh $(PYTHON) $(VENV)
	touch $@

sandbox: venv
	bash scripts/sandbox-dir.sh
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/provision.yml

sandbox-down:
	bash scripts/sandbox-down.sh

demo: sandbox
	$(BIN)/python scripts/demo.py

test: unit integration reliability molecule lab-test sanity lint

unit: venv
	$(BIN)/pytest tests/unit

integration: sandbox
	$(BIN)/pytest tests/integration

# Faults, bad input, split brain, secrets and 4 recoveries under load; writes docs/RELIABILITY.md.
reliability: sandbox
	$(BIN)/pytest tests/reliability

soak: sandbox
	FOREST_SOAK_RECOVERIES=24 $(BIN)/pytest tests/reliability/test_soak.py

# The sandbox scenarios; molecule/multihost runs on the lab (make lab-test).
molecule: sandbox
	$(BIN)/molecule test -s default
	$(BIN)/molecule test -s recovery

sanity: venv
	bash scripts/sanity.sh

lint: venv
	$(BIN)/ansible-lint

clean: sandbox-down
	rm -rf $(VENV) tests/output

# The two-machine lab (docs/lab.md): systemd-nspawn machines node0/node1 reached over SSH.
lab-up: venv
	bash lab/lab.sh up

lab-down:
	bash lab/lab.sh down

# The multi-host suite and the multihost molecule scenario on the lab; the lab is
# left down afterwards (make lab-up brings it back in seconds from the cached image).
lab-test: lab-up
	lab/exec $(BIN)/pytest tests/lab && lab/exec $(BIN)/molecule test -s multihost; \
	status=$$?; bash lab/lab.sh down; exit $$status
