"""Ports of the services the tests start, from one base so two test runs can share a machine.

``LAMBDA_TEST_KAFKA_PORT`` moves every private broker with it (the session broker, and the
brokers of the fault and durability tests at fixed offsets from it).
"""

from __future__ import annotations

import os

KAFKA_PORT = int(os.environ.get("LAMBDA_TEST_KAFKA_PORT", "19092"))
CONTROLLER_PORT = int(os.environ.get("LAMBDA_TEST_CONTROLLER_PORT", str(KAFKA_PORT + 1)))
PG_PORT = int(os.environ.get("LAMBDA_TEST_PG_PORT", "15432"))
S3_PORT = int(os.environ.get("LAMBDA_TEST_S3_PORT", "17070"))
FAULT_BROKER = (KAFKA_PORT + 200, KAFKA_PORT + 201)
DURABILITY_BROKER = (KAFKA_PORT + 300, KAFKA_PORT + 301)
# plaintext, SASL_SSL and controller listeners of the secured broker
SECURED_BROKER = (KAFKA_PORT + 400, KAFKA_PORT + 401, KAFKA_PORT + 402)
API_PORT = int(os.environ.get("LAMBDA_TEST_API_PORT", "18000"))  # the serving API over HTTP
