"""CPU per request of the serving app, route by route, side by side with ``/healthz``.

    .venv/bin/python -m bench.serving_request_cost [--requests 20000] [--rounds 3]

The app is built as a worker builds it (``create_app``, its lifespan run) over the data
directory of the settings (``LAMBDA_DATA_DIR``: e.g. that of a running ``make up``), and driven
through its ASGI interface in this process: no socket, no load generator, so the figure is the
app's own CPU (``time.process_time``), which other work on the machine does not inflate. The
ratio ``/healthz ÷ route`` is the most a route can reach of ``/healthz``'s throughput on the
same server (issue 33 asks ≥ 0.7 for the account summary). Rounds alternate the routes, so a
drift over time hits each alike; the best round of each is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import time
from typing import Any

from fastapi import FastAPI

from bench.common import write_report
from lambda_contracts.settings import get_settings
from serving.main import configure_logging, create_app


def routes(accounts: list[str]) -> dict[str, list[str]]:
    """Each measured route's request paths (random accounts, the whole range)."""
    span = "start=0&end=253402300800000"
    rng = random.Random(7)
    pick = [rng.choice(accounts) for _ in range(512)]
    return {
        "/healthz": ["/healthz"],
        "/v1/accounts/{id}/summary": [f"/v1/accounts/{a}/summary?{span}" for a in pick],
        "/v1/totals": [f"/v1/totals?{span}"],
    }


async def get(app: FastAPI, target: str) -> tuple[int, bytes]:
    """One GET through the app's ASGI interface: the response status and body."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "app": app,
    }
    status, body = 0, []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(body)


async def cost_us(app: FastAPI, targets: list[str], n: int) -> float:
    """Process CPU µs per request over ``n`` requests cycling through ``targets``."""
    for target in targets[:50]:  # warm: caches, pools, first-call imports
        assert (await get(app, target))[0] == 200, target
    started = time.process_time()
    for i in range(n):
        await get(app, targets[i % len(targets)])
    return (time.process_time() - started) / n * 1e6


async def measure(requests: int, rounds: int) -> dict[str, Any]:
    settings = get_settings()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        accounts = await top_accounts(app)
        best: dict[str, float] = {}
        for _ in range(rounds):
            for route, targets in routes(accounts).items():
                us = await cost_us(app, targets, requests)
                best[route] = min(us, best.get(route, us))
    healthz = best["/healthz"]
    return {
        "data_dir": str(settings.data_dir),
        "requests": requests,
        "rounds": rounds,
        "cpu_us_per_request": {r: round(us, 1) for r, us in best.items()},
        "healthz_ratio": {r: round(healthz / us, 3) for r, us in best.items()},
    }


async def top_accounts(app: FastAPI) -> list[str]:
    """Accounts that have payments (the top 50 by count), or a made-up one if none."""
    _, body = await get(app, "/v1/top-accounts?start=0&end=253402300800000&by=count&limit=50")
    found = [row["account_id"] for row in json.loads(body or b"{}").get("accounts", [])]
    return found or ["100001"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--report", default="serving_request_cost")
    args = parser.parse_args()
    # The worker's logging (a JSON line per request is part of each request's cost), written
    # where it costs what a pipe to a log file costs, not to this terminal.
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        configure_logging()
        figures = asyncio.run(measure(args.requests, args.rounds))
    for route, us in figures["cpu_us_per_request"].items():
        ratio = figures["healthz_ratio"][route]
        print(f"{route:32s} {us:8.1f} µs CPU/request   /healthz ÷ route {ratio:.3f}")
    print(f"report: {write_report(args.report, figures)}")


if __name__ == "__main__":
    main()
