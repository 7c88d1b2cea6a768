"""Real mail servers on loopback for the email connector's tests.

- `Dovecot`: Debian's dovecot 2.3 (`apt-get install dovecot-imapd`; .ci/run installs it), started
  in the foreground (`dovecot -F -c <conf>`) from a throwaway config: IMAP on 127.0.0.1 at a free
  port, no TLS, PLAIN/LOGIN sign-in from a passwd-file, Maildir storage, its sockets and state in a
  short temporary folder (Unix socket paths are limited to 108 bytes: pytest's tmp_path is too
  deep). It runs as the current user; as root (CI), dovecot refuses to run its login processes
  or to open mail as root, so they run as Debian's `dovenull` and `nobody`. Test mail goes in
  with IMAP APPEND, as a mail delivery agent would put it there.
- `FakeSMTP`: an aiosmtpd server with AUTH (PLAIN, LOGIN) required, which records what it
  accepted and answers a scripted SMTP reply at RCPT or DATA when told to.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from imapclient import IMAPClient

DOVECOT = os.environ.get("CXM_DOVECOT", "/usr/sbin/dovecot")
USER, PASSWORD = "care@acme.test", "imap-pass-3f9c1d"
START_TIMEOUT = 15.0

CONFIG = """
base_dir = {root}/run
state_dir = {root}/state
instance_name = cxm-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
mailbox_list_index = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/mail/%u
}}
service auth {{
  user = {auth_user}
}}
service anvil {{
  chroot =
  # No growing delay after a failed sign-in (the tests fail some on purpose).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_dovecot() -> None:
    """Skip a test that needs Dovecot where it is not installed; fail instead under CI, where
    .ci/run installs it and the email tests must run."""
    import pytest

    if not os.path.exists(DOVECOT):
        reason = f"dovecot is not installed ({DOVECOT}): apt-get install dovecot-imapd"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so the email tests must run)", pytrace=False)
        pytest.skip(reason)


class Dovecot:
    def __init__(self) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self.root = Path(tempfile.mkdtemp(prefix="cxmdv-"))
        self.process: subprocess.Popen | None = None

    def start(self) -> Dovecot:
        users = self._users()
        (self.root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        (self.root / "mail").mkdir()
        if os.geteuid() == 0:
            self.root.chmod(0o711)  # the mail user (nobody) must reach mail/ below it
            os.chown(self.root / "mail", users["mail_uid"], users["mail_gid"])
        conf = self.root / "dovecot.conf"
        conf.write_text(CONFIG.format(root=self.root, port=self.port, **users))
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        self._wait_for_greeting()
        return self

    def _users(self) -> dict[str, Any]:
        me = pwd.getpwuid(os.geteuid())
        if me.pw_uid != 0:
            group = grp.getgrgid(me.pw_gid).gr_name
            return {"internal_user": me.pw_name, "internal_group": group, "login_user": me.pw_name,
                    "auth_user": me.pw_name, "mail_uid": me.pw_uid, "mail_gid": me.pw_gid}
        nobody = pwd.getpwnam("nobody")
        return {"internal_user": "dovecot", "internal_group": "dovecot", "login_user": "dovenull",
                "auth_user": "root", "mail_uid": nobody.pw_uid, "mail_gid": nobody.pw_gid}

    def _wait_for_greeting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited with {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not answer on port {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    # --- Mail ----------------------------------------------------------------------------------
    def client(self) -> IMAPClient:
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def create(self, mailbox: str) -> None:
        with self.client() as imap:
            imap.create_folder(mailbox)

    def recreate(self, mailbox: str) -> int:
        """Delete and create `mailbox` again: the server gives it a new UIDVALIDITY."""
        with self.client() as imap:
            imap.delete_folder(mailbox)
            imap.create_folder(mailbox)
            return int(imap.select_folder(mailbox)[b"UIDVALIDITY"])

    def append(self, mailbox: str, raw: bytes | EmailMessage, when=None) -> int:
        """Deliver one email; returns its UID."""
        data = raw.as_bytes() if isinstance(raw, EmailMessage) else raw
        with self.client() as imap:
            answer = imap.append(mailbox, data, msg_time=when)
        # "[APPENDUID <uidvalidity> <uid>] Append completed."
        return int(answer.split(b"]")[0].split()[-1])

    def flags(self, mailbox: str) -> dict[int, tuple]:
        with self.client() as imap:
            imap.select_folder(mailbox, readonly=True)
            return imap.get_flags(imap.search(["ALL"]))


class FakeSMTP:
    """`fail("RCPT", "550 5.1.1 ...")` answers the next RCPT TO with that reply."""

    def __init__(self, username: str, password: str, *, ssl_context: ssl.SSLContext | None = None,
                 tls_context: ssl.SSLContext | None = None) -> None:
        """`ssl_context`: SMTP over implicit TLS (port 465's way); `tls_context`: STARTTLS offered
        and required (port 587's way); each with that server context."""
        self.username, self.password = username.encode(), password.encode()
        self.received: list[dict[str, Any]] = []
        self.logins: list[str] = []
        self.scripted: dict[str, str] = {}
        # Loopback and throwaway credentials: AUTH without TLS is what this test server is for.
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port(), auth_required=True,
                                     auth_require_tls=False, authenticator=self._authenticate,
                                     ssl_context=ssl_context, tls_context=tls_context,
                                     require_starttls=tls_context is not None)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self.controller.port

    def start(self) -> FakeSMTP:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def fail(self, stage: str, reply: str) -> None:
        self.scripted[stage] = reply

    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(item["content"], policy=policy.default) for item in self.received]

    def _authenticate(self, server, session, envelope, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.username, self.password)
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if "RCPT" in self.scripted:
            return self.scripted.pop("RCPT")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if "DATA" in self.scripted:
            return self.scripted.pop("DATA")
        self.received.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "content": envelope.original_content or envelope.content})
        return "250 2.0.0 Ok: queued"
