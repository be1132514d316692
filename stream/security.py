"""ZeroMQ CURVE keys: authenticated, encrypted streaming between machines.

Key directory layout (made by ``python -m stream.keys --out DIR``)::

    DIR/server.key         server public key    -> every subscriber (client) needs it
    DIR/server.key_secret  server key pair      -> only the publishing (binding) stages
    DIR/client.key         client public key    -> copy of authorized/client.key
    DIR/client.key_secret  client key pair      -> only the subscribing (connecting) stages
    DIR/authorized/*.key   public keys the publishers accept; add one file per extra client

A publisher binds as ``curve_server`` and a ZAP authenticator admits only the clients whose public
key is in ``DIR/authorized``; a subscriber without a listed key pair receives nothing.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

__all__ = ["CurveKeys", "SecurityError", "create_keys", "start_authenticator"]

log = logging.getLogger(__name__)


#: file mode of the secret key files: read and write for the owner only.
SECRET_MODE = 0o600


class SecurityError(RuntimeError):
    """A key directory that lacks a needed key file or holds an unreadable one."""


def _load(path: Path, name: str) -> tuple[bytes, bytes | None]:
    """``(public, secret or None)`` of a key file; ``name``: what the caller gave the folder as."""
    if not path.is_file():
        raise SecurityError(
            f"{name}: missing key file {path} (make keys with: python -m stream.keys --out DIR)"
        )
    try:
        return zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise SecurityError(f"{name}: cannot read key file {path}: {exc}") from exc


def _load_pair(path: Path, name: str) -> tuple[bytes, bytes]:
    """``(public, secret)`` of a ``*.key_secret`` file; a file without a secret key is refused, and
    one that others may read is used with a warning (``stream.keys`` writes them :data:`SECRET_MODE`)."""
    public, secret = _load(path, name)
    if secret is None:
        raise SecurityError(f"{name}: {path} holds no secret key")
    mode = path.stat().st_mode & 0o777
    if os.name == "posix" and mode & 0o077:
        log.warning("%s: %s is a secret key that others may read (mode %o); chmod %o %s", name, path, mode,
                    SECRET_MODE, path)
    return public, secret


@dataclass(frozen=True)
class CurveKeys:
    """The key directory given by ``--curve-keys DIR`` (``name``: how errors name it, e.g. a Python
    caller's ``curve_keys`` argument)."""

    directory: Path
    name: str = "--curve-keys"

    @property
    def authorized(self) -> Path:
        return self.directory / "authorized"

    def apply_server(self, sock: zmq.Socket) -> None:
        """Make ``sock`` (a binding publisher) a CURVE server with the server key pair."""
        public, secret = _load_pair(self.directory / "server.key_secret", self.name)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True

    def apply_client(self, sock: zmq.Socket) -> None:
        """Make ``sock`` (a connecting subscriber) a CURVE client of the server key."""
        server_public, _ = _load(self.directory / "server.key", self.name)
        public, secret = _load_pair(self.directory / "client.key_secret", self.name)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_serverkey = server_public


#: a refused client key is named in a warning at most once per this many seconds (ZeroMQ retries
#: every few hundred milliseconds).
REFUSAL_EVERY_S = 60.0


class _RefusalLog:
    """The authenticator's log (pyzmq calls ``debug``/``info``/``error`` on it): its ``DENIED``
    lines, a subscriber whose key is not in ``authorized/``, become one warning per client key per
    :data:`REFUSAL_EVERY_S`; the rest stay at their level.  (A subscriber without keys, or with
    another server's public key, fails the CURVE handshake before the authenticator sees it.)"""

    def __init__(self, authorized: Path) -> None:
        self.authorized = authorized
        self._last: dict[str, float] = {}

    def debug(self, msg: str, *args: object) -> None:
        text = msg % args if args else msg
        if not text.startswith("DENIED"):
            log.debug("%s", text)
            return
        now = time.monotonic()  # the text names the client's key: one warning per key and period
        if now - self._last.get(text, -math.inf) >= REFUSAL_EVERY_S:
            self._last[text] = now
            log.warning("--curve-keys: a subscriber was refused, its key is not in %s (%s)", self.authorized, text)

    def info(self, msg: str, *args: object) -> None:
        log.info(msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        log.warning(msg, *args)

    def error(self, msg: str, *args: object) -> None:
        log.error(msg, *args)


def start_authenticator(ctx: zmq.Context, keys: CurveKeys) -> ThreadAuthenticator:
    """Start the ZAP handler of ``ctx`` admitting only the public keys in ``keys.authorized``."""
    if not keys.authorized.is_dir():
        raise SecurityError(f"{keys.name}: missing folder of allowed client keys {keys.authorized}")
    allowed = sorted(keys.authorized.glob("*.key"))
    if not allowed:
        raise SecurityError(f"{keys.name}: {keys.authorized} holds no *.key public key: no client could connect")
    for path in allowed:  # one unreadable file would make the authenticator refuse every client
        _load(path, keys.name)
    auth = ThreadAuthenticator(ctx, log=_RefusalLog(keys.authorized))
    auth.start()
    auth.configure_curve(domain="*", location=str(keys.authorized))
    return auth


def create_keys(out: Path) -> list[Path]:
    """Write a server and a client key pair into ``out`` (layout in the module docstring).

    The ``*.key_secret`` files are readable by their owner only (mode 0600), the public ``*.key``
    files by everyone (the umask permitting).  Refuses to overwrite existing keys (raises
    :class:`SecurityError`).  Returns the files written.
    """
    out = Path(out)
    existing = [p for p in ("server.key_secret", "client.key_secret") if (out / p).exists()]
    if existing:
        raise SecurityError(f"--out {out}: already holds {', '.join(existing)}; choose an empty folder")
    (out / "authorized").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in ("server", "client"):
        # created 0600 before pyzmq writes the secret into it, so it is never readable by others
        os.close(os.open(out / f"{name}.key_secret", os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE))
        public, secret = zmq.auth.create_certificates(out, name)
        os.chmod(secret, SECRET_MODE)  # should pyzmq ever replace the file instead of writing into it
        written += [Path(public), Path(secret)]
    written.append(Path(shutil.copy(out / "client.key", out / "authorized" / "client.key")))
    return written
