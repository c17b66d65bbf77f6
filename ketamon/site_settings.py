"""Loading the site profile: the shipped ``resources/site.toml`` or a file the clinic names.

No Qt and no database here; parsing and validation live in :mod:`ketamon.domain.site`.
"""

from __future__ import annotations

from pathlib import Path

from ketamon.domain.site import SiteProfile, SiteProfileError, parse_site_profile
from ketamon.resources import read_text

DEFAULT_SITE_FILE = "site.toml"


def load_site_profile(path: str | None = None) -> SiteProfile:
    """The site profile in ``path``, or the shipped default when ``path`` is None.

    Raises :class:`SiteProfileError` naming the file (and the field) on any problem.
    """
    if path is None:
        return parse_site_profile(read_text(DEFAULT_SITE_FILE), DEFAULT_SITE_FILE)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteProfileError(f"{path}: cannot read the site profile: {exc}") from exc
    return parse_site_profile(text, path)
