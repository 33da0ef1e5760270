"""Opening an SSH connection to a customer's SFTP server: pinned host keys, modern
ciphers, the checked address, errors sorted into transient and permanent."""

from __future__ import annotations

import asyncssh

from engine import hostkeys
from engine.errors import AuthenticationFailed, HostKeyMismatch, PermanentError, TransientError
from engine.spec import SftpSpec

# aes128-gcm is the fastest here (asyncssh's default order puts slower ciphers first).
ENCRYPTION_ALGS = [
    "aes128-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
]


def _client_keys(spec: SftpSpec) -> list[asyncssh.SSHKey] | None:
    if not spec.private_key:
        return None
    try:
        return [asyncssh.import_private_key(spec.private_key, spec.passphrase)]
    except (asyncssh.KeyImportError, ValueError) as exc:
        # Never quote the key: name the problem only.
        raise PermanentError("The endpoint's private key could not be loaded.", code="bad_private_key") from exc


async def connect(spec: SftpSpec, *, timeout: float = 15.0) -> asyncssh.SSHClientConnection:
    """Connect and authenticate; raise HostKeyMismatch, AuthenticationFailed or a
    TransientError (refused, reset, timed out)."""
    client = hostkeys.PinningClient(list(spec.host_keys))
    try:
        return await asyncssh.connect(
            spec.connect_address or spec.host,
            spec.port,
            username=spec.username,
            password=spec.password,
            client_keys=_client_keys(spec),
            passphrase=None,
            agent_path=None,
            client_factory=lambda: client,
            known_hosts=hostkeys.NO_KNOWN_HOSTS,
            server_host_key_algs=hostkeys.host_key_algorithms(list(spec.host_keys)),
            encryption_algs=ENCRYPTION_ALGS,
            connect_timeout=timeout,
            login_timeout=timeout,
            keepalive_interval=30,
            preferred_auth=["publickey", "password"] if spec.private_key else ["password"],
            ignore_encrypted=False,
            config=None,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        seen = client.seen or "an unknown key"
        raise HostKeyMismatch(f"The server presented host key {seen}, which is not pinned for this endpoint.") from exc
    except asyncssh.PermissionDenied as exc:
        raise AuthenticationFailed(f"The server refused the login for user {spec.username!r}.") from exc
    except TimeoutError as exc:
        raise TransientError(f"Timed out connecting to {spec.host}:{spec.port}.", code="timeout") from exc
    except ConnectionRefusedError as exc:
        raise TransientError(f"Connection refused by {spec.host}:{spec.port}.", code="connection_refused") from exc
    except (OSError, asyncssh.ConnectionLost, asyncssh.DisconnectError) as exc:
        message = f"Could not connect to {spec.host}:{spec.port}: {type(exc).__name__}."
        raise TransientError(message, code="connection_failed") from exc
