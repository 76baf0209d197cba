# pgforest.cluster — quick start on a fresh Debian machine:
#   make demo    set everything up and run the main job on the local two-node sandbox
#   make test    set everything up and run every test (unit, integration, reliability, molecule, the
#                two-machine lab, sanity, lint), the timing-dependent cases under CPU load
#   make check   the quick loop: unit, sanity, lint and the integration suite
#   make soak    24 online recoveries in a row under load, and the real-world mess cases with 100 online
#                compares under three drivers
#   make test-loaded  the whole sandbox suites (integration + reliability) with CPU hogs beside them
# The sandbox suites run on WORKERS parallel workers, each with its own two-node sandbox in a
# network namespace of its own (scripts/worker_sandboxes.py); results go to tests/output/.
# LOAD=N (sandbox-suites, integration, reliability, test-loaded, timing-loaded) runs them with
# `stress-ng --cpu N` beside them for the whole run, stopped afterwards whatever happens
# (scripts/under_load.sh, which says so in the output).
SHELL := /bin/bash
# The distribution's Python when there is one: Debian builds it with profile-guided optimization, and it runs
# Ansible, the modules and the tests with about 15 % less CPU than a Python compiled without it (pyenv's
# default, first on PATH on some machines): bench/controller_python_bench.py measures it.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
VENV := .venv
BIN := $(VENV)/bin
INVENTORY := sandbox/inventory.yml
WORKERS ?= 3
LOAD ?= 0
UNDER_LOAD = bash scripts/under_load.sh $(LOAD)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Ansible's, molecule's and ansible-lint's home (local tmp, caches, molecule's scenario state) in the
# checkout's ignored .ansible/, never ~/.ansible: nothing a run leaves there outlives the checkout.
export ANSIBLE_HOME := $(CURDIR)/.ansible
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test sandbox-side beside-suites lab-suite-12 lab-smoke-13 check unit integration reliability sandbox-suites test-loaded timing-loaded workers soak molecule \
	sanity lint sanity-current unit-current current \
	sandbox sandbox-down venv clean lab-up lab-down lab-test publish-reliability

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

# make test runs each sandbox case once: the timing-dependent ones (TIMING_TESTS: the reference driver writing
# through freezes and recoveries) under 2 CPU hogs (timing-loaded), the others in the sandbox suites without
# hogs, but beside the lab and the timing cases, so never on an idle machine.
# Measured on this 2-core machine while three other checkouts ran their suites too (load average 13-14):
# the whole sandbox suites under load on 2 workers took 57 min 33 s (297 cases), against ~13 min unloaded
# on 3 workers, so a whole loaded run would break make test's budget; the 58 slowest cases
# (faults, soak, online recoveries: the timing cases and the fault injection) took 14 min 24 s of it.
# make timing-loaded alone (its 37 cases, 2 workers, same busy machine): 8 min 20 s, 9 min with provisioning.
# make test-loaded runs everything under load.
# Three chains run side by side (make -j3), each one step after another.  The sandbox side: sanity, lint, the
# sandbox suites without the timing cases, molecule.  The lab: the Debian 12 suite, then the Debian 13 smoke and
# molecule multihost (make lab-test).  The third: the current ansible-core's sanity, then the timing cases under
# their 2 hogs on worker sandboxes of their own (FOREST_WORKER_SET=timing).  The third ends about a quarter of an
# hour before the others, but the machine is saturated throughout, so moving work into it does not shorten the
# run (fresh clones, 2026-12-07): 2198 s this way; 2171 s with the Debian 13 lab beside the first (make
# lab-smoke-13 in the third chain), where once its node did not answer SSH at boot; 2312 s with molecule moved
# into the third chain (the lab chain then ended last).  The lab's steps in a session of their own
# (scripts/own_session.py): 2064 s (ec483eb) and 2044 s (82675f1), against 2224 s the commit before, in make's
# session.
# The timing cases' hogs are at niceness 19: beside two
# other chains the machine is saturated anyway, and full-priority hogs only stretched the lab (with other work
# beside it too, a lab suite of 23 min took 36).  make timing-loaded alone keeps full-priority hogs.  The lab
# and molecule wait on SSH, apt and services far more than they compute (docs: README, "make test").
test: unit
	$(MAKE) -j3 --output-sync=target sandbox-side lab-test beside-suites
	@echo "make test: every suite passed; the work tree is as it was (git status --short prints nothing):"
	@git status --short

# The sandbox suites run at niceness SANDBOX_SIDE_NICE beside the timing cases, whose steps come one after another
# where the suites' workers have parallel work to spare.  A niceness counts only inside a scheduling group (a
# session): the sandbox suites and the timing cases share make's; the lab's steps have one of their own
# (scripts/own_session.py), as have the hogs (scripts/under_load.sh) and every sandbox server.
SANDBOX_SIDE_NICE ?= 5
sandbox-side:
	$(MAKE) sanity
	$(MAKE) lint
	nice -n $(SANDBOX_SIDE_NICE) $(MAKE) sandbox-suites SANDBOX_SKIP="$(TIMING_SKIP)"
	$(MAKE) molecule

check: unit sanity lint integration

# What make test runs beside the sandbox side and the lab, one after another.
beside-suites:
	$(MAKE) sanity-current
	$(MAKE) timing-loaded LOAD_NICE=19

unit: venv
	$(BIN)/pytest tests/unit

workers: venv
	$(BIN)/python scripts/worker_sandboxes.py up $(WORKERS)

# Integration and reliability in one run, so the workers share out every case of both.
# The workers' servers are stopped afterwards, passed or failed: a finished run leaves nothing running.
# SANDBOX_SKIP: pytest options leaving cases out (make test: the timing cases, which timing-loaded runs).
SANDBOX_SKIP ?=
sandbox-suites: workers
	$(UNDER_LOAD) $(BIN)/python scripts/worker_sandboxes.py pytest $(WORKERS) tests/integration tests/reliability \
		$(SANDBOX_SKIP); \
	status=$$?; $(BIN)/python scripts/worker_sandboxes.py down; exit $$status

# The same suites on a busy machine: 2 CPU hogs (stress-ng) beside the workers for the whole run.
test-loaded:
	$(MAKE) sandbox-suites LOAD=$(if $(filter-out 0,$(LOAD)),$(LOAD),2)

# The cases whose outcome depends on timing: a driver that must notice a freeze, a recovery or compare
# under its writes, bounds on the freeze window.  New files of such cases belong here too.
TIMING_TESTS := tests/integration/test_forest_recover_online.py tests/integration/test_poll_interval.py \
	tests/integration/test_many_userdbs.py tests/reliability/test_soak.py tests/reliability/test_split_brain.py \
	tests/integration/test_forest_dbsync.py::test_online_compare_under_write_load_finds_no_false_difference \
	tests/integration/test_forest_dbsync.py::test_online_compare_never_reports_a_write_that_straddles_its_snapshots \
	tests/reliability/test_mess.py tests/integration/test_forest_recover_resync.py \
	tests/integration/test_replaced_node.py::test_a_rebuilt_host_moves_back_online_with_upgrade_yml_under_the_driver
# The same cases as pytest options that leave them out: --ignore for a file, --deselect for one case.
TIMING_SKIP := $(foreach case,$(TIMING_TESTS),$(if $(findstring ::,$(case)),--deselect=$(case),--ignore=$(case)))
# Their own worker sandboxes (the set "timing"), so they may run while the sandbox suites hold the default set.
timing-loaded: export FOREST_WORKER_SET := timing
# LOAD_NICE: the hogs' niceness (scripts/under_load.sh); make test gives 19, so that beside the lab and the
# sandbox suites they take only the cycles those leave: the CPU stays saturated, the chains do not stretch.
LOAD_NICE ?= 0
timing-loaded:
	$(MAKE) workers
	LOAD_NICE=$(LOAD_NICE) bash scripts/under_load.sh $(if $(filter-out 0,$(LOAD)),$(LOAD),2) \
		$(BIN)/python scripts/worker_sandboxes.py pytest $(WORKERS) $(TIMING_TESTS); \
	status=$$?; $(BIN)/python scripts/worker_sandboxes.py down; exit $$status

integration: workers
	$(UNDER_LOAD) $(BIN)/python scripts/worker_sandboxes.py pytest $(WORKERS) tests/integration

# Faults, bad input, split brain, secrets and 4 recoveries under load; the report goes to
# tests/output/reliability/RELIABILITY.md (make publish-reliability puts it in docs/).
reliability: workers
	$(UNDER_LOAD) $(BIN)/python scripts/worker_sandboxes.py pytest $(WORKERS) tests/reliability

soak: sandbox
	FOREST_SOAK_RECOVERIES=24 FOREST_SOAK_COMPARES=100 $(BIN)/pytest tests/reliability/test_soak.py \
		tests/reliability/test_mess.py

publish-reliability: venv
	$(BIN)/python scripts/reliability_report.py --publish

# The sandbox scenarios; molecule/multihost runs on the lab (make lab-test).
# The sandbox is stopped afterwards, passed or failed: left on 127.0.0.11/12, it would stop the next
# checkout's run (its role refuses to take over an address another server listens on).
# The default scenario's converge makes the sandbox (on a fresh clone, from nothing: the role's first run) and
# idempotence runs it again; a provision before molecule would only make the converge a second run.
molecule: venv
	bash scripts/sandbox-dir.sh
	$(BIN)/molecule test -s default && $(BIN)/molecule test -s recovery; \
	status=$$?; bash scripts/sandbox-down.sh --sandbox-only; exit $$status

sanity: venv
	bash scripts/sanity.sh

lint: venv
	$(BIN)/ansible-lint

# The current ansible-core (2.21) on Python 3.13, from a Debian 13 root filesystem of its own with no
# network, its wheels fetched on this machine (scripts/py313_controller.sh; caches in /var/tmp/pgforest-ctl313).
# make test runs sanity-current.  Measured on 2 cores, load average about 4: sanity-current cold (root filesystem,
# wheels, venv, sanity) 3 min 35 s, cached 43 s; unit-current cached 15 s; make -k current cached 1 min 20 s.
sanity-current:
	bash scripts/py313_controller.sh sanity

unit-current:
	bash scripts/py313_controller.sh unit

# Both, and ansible-playbook --syntax-check of every playbook under 2.21.
current: sanity-current unit-current
	bash scripts/py313_controller.sh syntax

clean: sandbox-down
	rm -rf $(VENV) tests/output

# The two-machine lab (docs/lab.md): systemd-nspawn machines node0/node1 reached over SSH, on Debian
# DEBIAN (12, the default, or 13): make lab-up DEBIAN=13.
DEBIAN ?= 12
lab-up: venv
	bash lab/lab.sh up $(DEBIAN)

lab-down:
	bash lab/lab.sh down

# The multi-host suite on Debian 12 from this checkout's venv (lab-suite-12), then on Debian 13 (lab-smoke-13) the
# smoke cases (tests/lab -m smoke: provision of bare hosts, status, online recovery under the driver, dbsync,
# backup and restore) from a Debian 13 controller with ansible-core 2.21 (FOREST_LAB_CONTROLLER=current,
# scripts/py313_controller.sh lab), and the multihost molecule scenario on the pair the smoke cases leave: on
# Debian 13 the first-contact case has proved a provision from bare hosts and its changed=0 second run, and the
# scenario checks converge, idempotence and verify on the provisioned pair.  Each lab is left down afterwards
# (make lab-up brings it back in seconds from the cached images).
lab-test: venv
	$(MAKE) lab-suite-12
	$(MAKE) lab-smoke-13

# The lab's steps in a session of their own (scripts/own_session.py says why: a scheduling group of their own).
OWN_SESSION = $(BIN)/python scripts/own_session.py
lab-suite-12: venv
	bash lab/lab.sh down
	$(OWN_SESSION) bash -c 'bash lab/lab.sh up 12 && lab/exec $(BIN)/pytest --durations=25 tests/lab'; \
	status=$$?; bash lab/lab.sh down; exit $$status

# A lab of its own (namespace, state, its nodes' apt caches: lab/settings.sh), so that it may run beside
# lab-suite-12, whose upgrade case rebuilds the first lab's nodes on Debian 13 meanwhile.
lab-smoke-13: export FOREST_LAB_NS := pgforest-lab13
lab-smoke-13: venv
	bash lab/lab.sh down
	$(OWN_SESSION) bash -c 'bash lab/lab.sh up 13 && FOREST_LAB_CONTROLLER=current lab/exec $(BIN)/pytest \
		--durations=10 tests/lab -m smoke && lab/exec $(BIN)/molecule test -s multihost'; \
	status=$$?; bash lab/lab.sh down; exit $$status
