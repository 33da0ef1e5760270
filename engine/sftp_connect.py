"""Opening an SSH connection to a customer's SFTP server: pinned host keys, modern
ciphers, the checked address, errors sorted into transient and permanent."""

from __future__ import annotations

import asyncssh

from engine import hostkeys
from engine.errors import AuthenticationFailed, HostKeyMismatch, PermanentError, TransientError, classify
from engine.spec import SftpSpec

# aes128-gcm is the fastest here (asyncssh's default order puts slower ciphers first).
ENCRYPTION_ALGS = [
    "aes128-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
]

# Key exchange and MACs: modern ones only (asyncssh's defaults still include SHA-1 and
# GSS methods). Post-quantum hybrid first, then curve25519, the NIST curves, and the
# finite-field groups of 2048 bits or more with SHA-2. GET /api/v1/network publishes these.
KEX_ALGS = [
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
]
# Only used with the -ctr ciphers (the AEAD ciphers carry their own integrity).
MAC_ALGS = [
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
]


def _client_keys(spec: SftpSpec) -> list[asyncssh.SSHKey] | None:
    """The keys to offer, in order: the current one, then a rotated one in its overlap
    (asyncssh tries each until the server accepts one)."""
    if not spec.private_key:
        return None
    pairs = [(spec.private_key, spec.passphrase)]
    if spec.previous_private_key:
        pairs.append((spec.previous_private_key, spec.previous_passphrase))
    try:
        return [asyncssh.import_private_key(key, passphrase) for key, passphrase in pairs]
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
            kex_algs=KEX_ALGS,
            mac_algs=MAC_ALGS,
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
        said = classify(exc)
        if isinstance(said, HostKeyMismatch):  # the server gave the reason itself
            raise said from exc
        if client.seen is None:
            # OpenSSH drops the connection (a reset or EOF, no reason given) when no host key
            # algorithm is shared: a pin of a key type the server lacks. That is no network
            # fault, and retrying cannot help, so ask the server which key types it has.
            offered = await _offered_if_unpinned(spec, timeout)
            if offered:
                raise HostKeyMismatch(hostkeys.type_mismatch_message(offered, list(spec.host_keys))) from exc
        message = f"Could not connect to {spec.host}:{spec.port}: {type(exc).__name__}."
        raise TransientError(message, code="connection_failed") from exc


async def _offered_if_unpinned(spec: SftpSpec, timeout: float) -> list[str]:
    """The server's host keys when it has some but of no pinned type, else [] (a real
    network fault, or a server that answers none of our handshakes)."""
    offered = await hostkeys.scan(spec.connect_address or spec.host, spec.port, timeout=timeout)
    pinned_types = {hostkeys.parse_pin(p)[0] for p in spec.host_keys}
    if any(pin.split(" ", 1)[0] in pinned_types for pin in offered):
        return []
    return offered
