"""Kafka as a cluster host sees it, printed as one JSON line: the brokers that joined and the
partitions of the platform's topics with fewer in-sync replicas than replicas. Run inside a
host (``cluster status`` does), where the brokers' advertised names resolve."""

from __future__ import annotations

import json

from infra.topics import admin_client
from lambda_contracts.settings import get_settings
from lambda_contracts.topics import platform_topics


def report() -> dict[str, object]:
    settings = get_settings()
    admin = admin_client(settings, timeout_s=20)
    try:
        brokers = sorted(b["node_id"] for b in admin.describe_cluster()["brokers"])
        names = [spec.name for spec in platform_topics(settings)]
        under = []
        for topic in admin.describe_topics(names):
            for part in topic["partitions"]:
                if len(part["isr"]) < len(part["replicas"]):
                    under.append(f"{topic['topic']}-{part['partition']}")
        return {"brokers": brokers, "under_replicated": sorted(under)}
    finally:
        admin.close()


if __name__ == "__main__":
    print(json.dumps(report()))
