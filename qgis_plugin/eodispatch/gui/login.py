"""Logging in to a backend through the daemon's ``/auth/*`` API (described in its ``/openapi.json``): the
device code is shown and the verification page opened (or, browser flow, the
authorization page opened); the dialog follows ``GET /auth/logins/{id}`` until the login
ends. Tokens never reach the plugin.

The pages come from the identity provider through the daemon: only http(s) pages are
opened or linked (``core.safe``), and every text in the rich-text message is escaped."""

from typing import Any, Dict, Optional

from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtGui import QFont
from qgis.PyQt.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from ..core.client import ApiResult, DaemonClient
from ..core.safe import esc, link, open_web_url, plain_label


class LoginDialog(QDialog):
    def __init__(self, client: DaemonClient, backend: Dict[str, Any], parent=None, open_browser: bool = True):
        super().__init__(parent)
        self.client = client
        self.backend = backend
        self.open_browser = open_browser
        self.login_id: Optional[str] = None
        self.state = "idle"
        self.setWindowTitle(f"Log in to {backend.get('title') or backend.get('url')}")
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.method = QComboBox(self)
        self.method.addItem("Device code (works everywhere)", "device")
        self.method.addItem("Browser", "browser")
        form.addRow("Method", self.method)
        self.provider = QComboBox(self)
        for p in backend.get("providers") or []:
            self.provider.addItem(p.get("title") or p.get("id"), p.get("id"))
        if self.provider.count() == 0:
            self.provider.addItem("(the backend's default)", None)
        form.addRow("Provider", self.provider)
        layout.addLayout(form)
        self.code = plain_label(QLabel(self))
        self.code.setObjectName("user_code")
        font = QFont()
        font.setPointSize(font.pointSize() * 2)
        font.setBold(True)
        self.code.setFont(font)
        self.code.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.code.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.code)
        self.message = QLabel("Choose a method and press Log in.", self)
        self.message.setTextFormat(Qt.TextFormat.RichText)
        self.message.setObjectName("login_message")
        self.message.setWordWrap(True)
        # Links go through open_web_url: http(s) only.
        self.message.setOpenExternalLinks(False)
        self.message.linkActivated.connect(open_web_url)
        layout.addWidget(self.message)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.start_button = QPushButton("Log in", self)
        self.buttons.addButton(self.start_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.start_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._poll)

    def start(self) -> None:
        body: Dict[str, Any] = {"endpoint": self.backend.get("url"), "method": self.method.currentData()}
        if self.provider.currentData():
            body["provider_id"] = self.provider.currentData()
        self.start_button.setEnabled(False)
        self.message.setText("Asking the daemon…")
        self.client.post("/auth/login", body, self._started)

    def _started(self, result: ApiResult) -> None:
        if not result.ok:
            self.state = "failed"
            self.start_button.setEnabled(True)
            self.message.setText(f"Log-in could not start: {esc(result.error.message)}")
            return
        data = result.data or {}
        self.login_id = data.get("login_id")
        self.state = data.get("state", "pending")
        if self.state == "logged_in":
            self._done("logged_in", None)
            return
        url = None
        if data.get("method") == "device":
            self.code.setText(str(data.get("user_code") or ""))
            url = data.get("verification_uri_complete") or data.get("verification_uri")
            QApplication.clipboard().setText(str(data.get("user_code") or ""))
            self.message.setText(
                f"Enter the code above at {link(data.get('verification_uri'))} "
                "(copied to the clipboard; the page opens in your browser). Waiting…"
            )
            try:
                interval = int(data.get("interval") or 5)
            except (TypeError, ValueError):
                interval = 5
        else:
            url = data.get("authorization_url")
            self.message.setText(
                f"Log in in your browser ({link(url, 'open the page again')}); the daemon receives the answer. Waiting…"
            )
            interval = 2
        if url and self.open_browser and not open_web_url(url):
            self.message.setText(
                self.message.text()
                + f"<br>The log-in page is not a web address and was not opened: {esc(url)}"
            )
        self.timer.start(max(1, interval) * 1000)

    def _poll(self) -> None:
        if self.login_id:
            self.client.get(f"/auth/logins/{self.login_id}", self._polled)

    def _polled(self, result: ApiResult) -> None:
        if not result.ok:
            return
        state = (result.data or {}).get("state")
        if state and state != "pending":
            self._done(state, (result.data or {}).get("error"))

    def on_auth_event(self, entry: Dict[str, Any]) -> None:
        """An ``auth`` event: ends the dialog when it names this login."""
        if self.login_id and entry.get("login_id") == self.login_id:
            self._poll()

    def _done(self, state: str, error: Optional[str]) -> None:
        self.timer.stop()
        self.state = state
        self.start_button.setEnabled(state != "logged_in")
        if state == "logged_in":
            self.code.clear()
            self.message.setText("Logged in.")
            QTimer.singleShot(800, self.accept)
        else:
            self.message.setText(f"Log-in {esc(state)}: {esc(error or 'try again')}")

    def done(self, r):  # noqa: A003 (QDialog API)
        self.timer.stop()
        super().done(r)
