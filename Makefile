# pgforest.cluster — quick start on a fresh Debian machine:
#   make demo    set everything up and run the main job on the local two-node sandbox
#   make test    set everything up and run every test (unit, integration, molecule, sanity, lint)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INVENTORY := sandbox/inventory.yml
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test unit integration molecule sanity lint sandbox sandbox-down venv clean

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt scripts/bootstrap.sh
	bash scripts/bootstrap.sh $(PYTHON) $(VENV)
	touch $@

sandbox: venv
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/provision.yml

sandbox-down:
	bash scripts/sandbox-down.sh

demo: sandbox
	$(BIN)/python scripts/demo.py

test: unit integration molecule sanity lint

unit: venv
	$(BIN)/pytest tests/unit

integration: sandbox
	$(BIN)/pytest tests/integration

molecule: sandbox
	$(BIN)/molecule test --all

sanity: venv
	bash scripts/sanity.sh

lint: venv
	$(BIN)/ansible-lint

clean: sandbox-down
	rm -rf $(VENV) tests/output
