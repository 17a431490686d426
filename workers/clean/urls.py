"""Canonical URLs: one spelling per article, so a re-crawl is an exact duplicate."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

# Query parameters that track the click, not the content.
_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "piwik_", "_hs", "hsa_")
_TRACKING_NAMES = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "yclid",
        "igshid",
        "ocid",
        "cmpid",
        "ref",
        "ref_src",
        "ref_url",
        "spm",
        "share",
        "s_cid",
        "at_medium",
        "at_campaign",
        "xtor",
        "__twitter_impression",
        "ito",
        "src",
        "amp",
    }
)


def canonical_url(url: str) -> str:
    """Scheme-less, lower-case host without www or default port, no tracking parameters,
    remaining parameters sorted, no trailing slash, no fragment but a route. "" for
    non-http(s) input. A route (`#/story/5`, `#!/story/5`: a single-page site's page, as in
    the AJAX crawling scheme) names a page; any other fragment is a place in one.
    """
    url = url.strip()
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    host = parts.hostname.lower().rstrip(".")
    host = host.removeprefix("www.")
    if port not in (None, 80, 443):
        host = f"{host}:{port}"
    path = unquote(parts.path) or "/"
    if len(path) > 1:
        path = path.rstrip("/")
    query = sorted(
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name.lower() not in _TRACKING_NAMES and not name.lower().startswith(_TRACKING_PREFIXES)
    )
    route = "#" + parts.fragment if parts.fragment.startswith(("/", "!")) else ""
    return host + path + ("?" + urlencode(query) if query else "") + route


def canonical_guid(guid: str) -> str:
    """A feed entry's guid as one spelling: a guid that is an http(s) URL (a permalink) is
    its `permalink_guid`; any other guid is itself, trimmed. So a permalink guid whose
    tracking parameters change from poll to poll names one entry."""
    return permalink_guid(guid) or guid.strip()


def permalink_guid(guid: str) -> str:
    """The canonical URL of a guid that is an http(s) URL, with its fragment kept (a live
    blog's posts are one page's fragments); "" for any other guid."""
    guid = guid.strip()
    canonical = canonical_url(guid)
    if not canonical:
        return ""
    fragment = urlsplit(guid).fragment
    if not fragment or "#" in canonical:  # none, or a route canonical_url kept
        return canonical
    return canonical + "#" + fragment
