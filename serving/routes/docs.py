"""The API docs: ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with FastAPI's pages.

FastAPI's own docs pages load their scripts, styles and icon from a CDN, so they stay blank
on a host without internet access. These load the same packages' released files from
``serving/static/vendor`` (fetched by ``infra/vendor_web_assets.sh``), served by the app's
``/static`` mount: every asset comes from the platform itself. Like FastAPI's, they are open
without the API token and prefix their URLs with the ASGI root path.

ReDoc's sidebar also shows Redocly's logo from cdn.redoc.ly, with no option to turn it off.
So that the page asks no other host for anything, it lets the browser load images from the
platform only (a Content-Security-Policy); ReDoc hides a logo that does not load.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

VENDOR = "/static/vendor"
SWAGGER_UI = f"{VENDOR}/swagger-ui-dist"
FAVICON = f"{SWAGGER_UI}/favicon-32x32.png"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
IMAGES_FROM_HERE = {"Content-Security-Policy": "img-src 'self' data:"}

router = APIRouter(include_in_schema=False)


def _root_path(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root_path(request)
    return get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{SWAGGER_UI}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{SWAGGER_UI}/swagger-ui.css",
        swagger_favicon_url=root + FAVICON,
        oauth2_redirect_url=root + OAUTH2_REDIRECT,
        # No "valid" badge: it is an image from validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = _root_path(request)
    page = get_redoc_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{VENDOR}/redoc/redoc.standalone.js",
        redoc_favicon_url=root + FAVICON,
        with_google_fonts=False,  # ReDoc falls back to the system's sans-serif
    )
    page.headers.update(IMAGES_FROM_HERE)
    return page
