"""The API docs load offline, and the OpenAPI document shows an example of every answer.

``/docs`` and ``/redoc`` must reference only assets of the platform itself (no CDN), each
answering with what its name promises; every operation must document an example 2xx answer,
its 4xx answers when it takes parameters, and the 401 of ``/v1`` when a token is set.
The real-browser check is in ``tests/integration/test_serving_api.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from lambda_contracts.settings import Settings
from serving.main import create_app

TOKEN = "docs-s3cret"
ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
# Content type and least plausible size (bytes) of an asset, by file suffix.
EXPECTED = {
    ".js": ("javascript", 100_000),
    ".css": ("text/css", 10_000),
    ".png": ("image/png", 100),
}


@pytest.fixture(params=[None, TOKEN], ids=["open", "token"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    token = request.param and SecretStr(request.param)
    app = create_app(Settings(data_dir=tmp_path, partitions=1, topic="tx", api_token=token))
    with TestClient(app) as client:
        app.state.end_offsets.get = lambda: None  # no broker in unit tests
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_same_origin_assets(client: TestClient, page: str) -> None:
    response = client.get(page)  # no token needed, as with FastAPI's own pages
    assert response.status_code == 200
    html = response.text
    assert "://" not in html and "cdn" not in html.lower(), html
    assets = ASSET.findall(html)
    assert len(assets) >= 2, html  # a script and a favicon at least
    for url in assets:
        assert url.startswith("/") and not url.startswith("//"), url
        suffix = Path(url).suffix
        content_type, least = EXPECTED[suffix]
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert content_type in asset.headers["content-type"], (url, asset.headers)
        assert len(asset.content) >= least, (url, len(asset.content))


def test_swagger_oauth2_redirect_is_served(client: TestClient) -> None:
    response = client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "swaggerUIRedirectOauth2" in response.text


def _examples(spec: dict[str, Any], response: dict[str, Any]) -> list[tuple[Any, dict]]:
    """(example, the schema it illustrates) for each example of a response, on its media
    types or on their schemas (a component's, through ``$ref``)."""
    found = []
    for media in response.get("content", {}).values():
        schema = media.get("schema", {})
        resolved = schema
        while "$ref" in resolved:
            resolved = spec["components"]["schemas"][resolved["$ref"].rsplit("/", 1)[1]]
        for holder in (media, resolved):
            shown = [holder["example"]] if "example" in holder else holder.get("examples", [])
            found += [(e, schema) for e in (shown.values() if isinstance(shown, dict) else shown)]
    return found


def _assert_examples(spec: dict[str, Any], response: dict[str, Any], where: object) -> None:
    """The response shows an example, and each example fits the response's schema."""
    examples = _examples(spec, response)
    assert examples, (where, response)
    for example, schema in examples:
        jsonschema.validate(example, {**schema, "components": spec["components"]})


def test_every_operation_documents_an_example_and_its_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    secured = client.app.state.settings.api_token is not None
    operations = [
        (f"{method.upper()} {path}", operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) >= 8, [name for name, _ in operations]
    for name, operation in operations:
        responses = operation["responses"]
        ok = [code for code in responses if code.startswith("2")]
        assert ok, name
        for code in ok:
            _assert_examples(spec, responses[code], (name, code))
        errors = [code for code in responses if code.startswith("4")]
        if operation.get("parameters"):
            assert errors, name
        if secured and name.split()[1].startswith("/v1/"):
            assert "401" in errors, name
        for code in errors:
            assert responses[code].get("description"), (name, code)
            _assert_examples(spec, responses[code], (name, code))
    assert "503" in spec["paths"]["/readyz"]["get"]["responses"]
