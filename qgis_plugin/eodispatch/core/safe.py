"""Showing and opening what others wrote.

Texts shown by the plugin come from the daemon, which relays backends, identity
providers, service catalogues and result documents: none of them is trusted. Qt guesses
rich text in labels and tooltips (``Qt::mightBeRichText``) and QGIS's message bar always
renders HTML with clickable links, so such text is escaped (``esc``), or shown as plain
text (``plain_label``, ``plain_tip``), and the only addresses the plugin opens are
http(s) web pages (``is_web_url``, ``open_web_url``): a ``file:``, ``smb:`` or custom
scheme URL from a server never reaches the desktop's URL handler.

No widgets are created here.
"""

import html
from typing import Any, Optional

from qgis.PyQt.QtCore import Qt, QUrl

WEB_SCHEMES = ("http", "https")


def esc(text: Any) -> str:
    """``text`` as HTML text: ``<``, ``>``, ``&`` and quotes escaped."""
    return html.escape("" if text is None else str(text), quote=True)


def is_web_url(url: Any) -> bool:
    """An absolute http(s) URL with a host, nothing else."""
    if not isinstance(url, str) or not url.strip() or any(ord(c) < 32 for c in url):
        return False
    u = QUrl(url.strip(), QUrl.ParsingMode.StrictMode)
    return u.isValid() and u.scheme().lower() in WEB_SCHEMES and bool(u.host())


def link(url: Any, text: Optional[str] = None) -> str:
    """An HTML link to a web page, or just the escaped text for anything else."""
    shown = esc(text if text is not None else url)
    if not is_web_url(url):
        return shown
    return f'<a href="{esc(str(url).strip())}">{shown}</a>'


def open_web_url(url: Any) -> bool:
    """Opens a web page in the browser; anything but http(s) is refused (``False``)."""
    if not is_web_url(url):
        return False
    from qgis.PyQt.QtGui import QDesktopServices

    return bool(QDesktopServices.openUrl(QUrl(str(url).strip())))


def plain_tip(text: Any) -> str:
    """A tooltip showing ``text`` as it is (tooltips guess rich text too)."""
    t = "" if text is None else str(text)
    if "<" not in t and "&" not in t:
        return t  # nothing Qt could take for markup
    return "<qt>" + esc(t).replace("\n", "<br>") + "</qt>"


def plain_label(label, text: Any = None):
    """Makes a QLabel show plain text (and sets ``text`` when given)."""
    label.setTextFormat(Qt.TextFormat.PlainText)
    if text is not None:
        label.setText(str(text))
    return label
