"""`{% vite_entry "src/pages/viewer.ts" %}`: the tags that load one Vite entry of the build.

Vite writes hashed file names into frontend/dist/.vite/manifest.json; this tag reads it (again
whenever the file changes, so `npm run watch` needs no server restart) and emits the entry's
stylesheets, module preloads of its shared chunks, and the module script itself; under the
Content-Security-Policy the script tags carry the request's nonce.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from django import template
from django.conf import settings
from django.templatetags.static import static
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

register = template.Library()
logger = logging.getLogger(__name__)

_cache: dict[str, Any] = {"mtime": None, "manifest": {}}


def manifest_path() -> Path:
    dist = getattr(settings, "FRONTEND_DIST", Path(settings.BASE_DIR) / "frontend" / "dist")
    return Path(dist) / ".vite" / "manifest.json"


def load_manifest() -> dict[str, Any]:
    path = manifest_path()
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return {}
    if _cache["mtime"] != mtime:
        _cache["manifest"] = json.loads(path.read_text())
        _cache["mtime"] = mtime
    return _cache["manifest"]


def _chunk_files(manifest: dict[str, Any], key: str, seen: set[str]) -> tuple[list[str], list[str]]:
    """CSS files and imported JS chunks of `key`, depth first, each once."""
    css: list[str] = []
    imports: list[str] = []
    for imported in manifest[key].get("imports", []):
        if imported in seen:
            continue
        seen.add(imported)
        sub_css, sub_imports = _chunk_files(manifest, imported, seen)
        css += sub_css
        imports += [*sub_imports, manifest[imported]["file"]]
    css += manifest[key].get("css", [])
    return css, imports


def _csp_nonce(context: template.Context) -> str:
    """The request's Content-Security-Policy nonce (django-csp), or "" outside a request.

    Reading it is what makes the middleware put the nonce into the header, so it is read only
    where a tag will carry it.
    """
    nonce = getattr(context.get("request"), "csp_nonce", None)
    return str(nonce) if nonce is not None else ""


@register.simple_tag(takes_context=True)
def vite_entry(context: template.Context, entry: str) -> SafeString:
    manifest = load_manifest()
    if entry not in manifest:
        # Pages still render (server-side tests need no Node); the console says what to do.
        logger.warning("Vite entry %s not built; run `npm ci && npm run build` in frontend/", entry)
        return format_html(
            "<!-- vite entry {} is not built: run npm ci && npm run build in frontend/ -->", entry
        )
    css, imports = _chunk_files(manifest, entry, set())
    nonce = _csp_nonce(context)
    # The nonce goes on the script and its preloads; stylesheets come from 'self' and need none.
    nonce_attr = format_html(' nonce="{}"', nonce) if nonce else ""
    parts = [
        format_html_join("", '<link rel="stylesheet" href="{}">', ((static(f),) for f in dict.fromkeys(css))),
        format_html_join(
            "",
            '<link rel="modulepreload" href="{}"{}>',
            ((static(f), nonce_attr) for f in dict.fromkeys(imports)),
        ),
        format_html(
            '<script type="module" src="{}"{}></script>', static(manifest[entry]["file"]), nonce_attr
        ),
    ]
    return mark_safe("\n".join(str(p) for p in parts if p))
