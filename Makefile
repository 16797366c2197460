# Local mode: `make up` runs the whole platform, `make test` runs every test. Both build the
# virtualenv and fetch the Kafka jars on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JARS_STAMP := .cache/kafka/libs/.fetched
# hadoop-aws and the AWS SDK bundle (~690 MB), for Spark on s3://: cached outside the checkout.
S3A_STAMP := $(HOME)/.cache/lambda-platform/spark-s3a/.fetched
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: up down status stop start restart deploy test lint batch bench chaos install jars s3a-jars s3gw helm spark-jvm clean \
	cluster-up cluster-status cluster-down cluster-chaos settings-doc views-schema

# What a first run fetches is said step by step: pip names each package it collects (the
# download bars are off: they are noise in CI logs), Maven each artifact it downloads.
PIP := $(BIN)/pip install --progress-bar off -c requirements/constraints.txt
MVN := mvn -B

$(STAMP): pyproject.toml requirements/constraints.txt
	@echo "==> Python packages into $(VENV) (first run: ~1.7 GB installed from PyPI, a few minutes)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(PIP) -e '.[dev]'
	# Full pyspark after the Spark provider (which brought pyspark-client); keep both.
	@echo "==> pyspark 4.3.0 (~500 MB installed)"
	$(PIP) 'pyspark==4.3.0'
	touch $(STAMP)

$(JARS_STAMP): infra/kafka/pom.xml
	@echo "==> Kafka broker jars from Maven Central into .cache/kafka (first run: ~55 MB)"
	$(MVN) -f infra/kafka/pom.xml package | grep -E '^\[INFO\] Downloaded from|BUILD|ERROR' ; test $${PIPESTATUS[0]} -eq 0
	@echo "    $$(ls .cache/kafka/libs | wc -l) jars in .cache/kafka/libs"
	touch $(JARS_STAMP)

$(S3A_STAMP): infra/spark/pom.xml
	@echo "==> hadoop-aws and the AWS SDK for s3a:// into ~/.cache/lambda-platform (~660 MB, once)"
	$(MVN) -f infra/spark/pom.xml package | grep -E '^\[INFO\] Downloaded from|BUILD|ERROR' ; test $${PIPESTATUS[0]} -eq 0
	touch $(S3A_STAMP)

install: $(STAMP)
jars: $(JARS_STAMP)
s3a-jars: $(S3A_STAMP)

# versitygw, the S3 server of tests and local runs, built once into .cache/versitygw/bin.
s3gw:
	bash infra/s3/build_versitygw.sh

# helm, for the Kubernetes chart's tests (helm lint and helm template, offline): built once
# from source into Go's bin directory (~/go/bin, where tests/unit/test_helm_chart.py looks),
# about 5 min on 2 cores; rebuilt only for another version.
HELM_VERSION := v4.3.2
helm:
	@GO="$$(command -v go || echo /usr/local/go/bin/go)"; \
	BIN="$$("$$GO" env GOBIN)"; BIN="$${BIN:-$$("$$GO" env GOPATH)/bin}"; \
	"$$GO" version -m "$$BIN/helm" 2>/dev/null | grep -qE "mod[[:space:]]+helm.sh/helm/v4[[:space:]]+$(HELM_VERSION)[[:space:]]" \
		|| { echo "building helm $(HELM_VERSION) into $$BIN (once)"; \
		     "$$GO" install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION); }

# The Spark job's JVM starts from an AOT cache on JDK 25+ (batch_layer/jvm.py): trained once
# per JDK and Spark version into ~/.cache/lambda-platform/spark-jvm (about 45 s), else a no-op.
spark-jvm: $(STAMP)
	$(BIN)/python -m batch_layer.jvm_training

up: $(STAMP) $(JARS_STAMP) spark-jvm
	$(BIN)/lambda-platform up

down: $(STAMP)
	$(BIN)/lambda-platform down

status: $(STAMP)
	$(BIN)/lambda-platform status

# One service, as `docker compose stop|start|restart NAME`: `make stop SERVICE=serving` keeps
# it down (the keeper leaves it) until `make start SERVICE=serving` or `make up`.
stop start restart: $(STAMP)
	@test -n "$(SERVICE)" || { echo "usage: make $@ SERVICE=<name> (names: make status)"; exit 2; }
	$(BIN)/lambda-platform $@ $(SERVICE)

# Apply the views file (LAMBDA_VIEWS_FILE, views.toml by default) to the running platform.
deploy: $(STAMP)
	$(BIN)/lambda-platform deploy

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

test: $(STAMP) $(JARS_STAMP) $(S3A_STAMP) s3gw helm spark-jvm lint
	$(BIN)/pytest -ra $(PYTEST_ARGS)

# The platform as separate hosts on this machine (network namespaces; root needed).
cluster-up: $(STAMP) $(JARS_STAMP) $(S3A_STAMP) s3gw
	$(BIN)/lambda-platform cluster up

cluster-status: $(STAMP)
	$(BIN)/lambda-platform cluster status

cluster-down: $(STAMP)
	$(BIN)/lambda-platform cluster down

cluster-chaos: $(STAMP) $(JARS_STAMP) $(S3A_STAMP) s3gw
	$(BIN)/python -m bench.cluster_chaos $(CHAOS_ARGS)

# docs/settings.md from the Settings class (a unit test fails when it is stale).
settings-doc: $(STAMP)
	$(BIN)/python -m lambda_contracts.settings_doc

# views.schema.json from the views file's pydantic models (a unit test fails when it is stale).
views-schema: $(STAMP)
	$(BIN)/python -m lambda_contracts.view_declarations --schema

batch: $(STAMP)
	$(BIN)/python -m infra.trigger_batch

bench: $(STAMP) $(JARS_STAMP) spark-jvm
	for b in kafka_throughput speed_layer_bench batch_recompute serving_bench; do \
		$(BIN)/python -m bench.$$b || exit 1; done

# The whole platform under a seeded fault schedule (5 min; CI runs 2 min in the test suite).
chaos: $(STAMP) $(JARS_STAMP) spark-jvm
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .cache data
