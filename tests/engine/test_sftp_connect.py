"""engine.sftp_connect against OpenSSH's sshd: errors carry their kind."""

import asyncio

import pytest

from deploy.local.services import free_port
from engine.errors import AuthenticationFailed, HostKeyMismatch, TransientError
from engine.sftp_connect import connect
from engine.spec import SftpSpec


def spec_for(sshd, **overrides) -> SftpSpec:
    values = dict(
        endpoint_id="e1",
        version=1,
        host=sshd.host,
        port=sshd.port,
        username=sshd.key_user,
        host_keys=(sshd.pin,),
        private_key=sshd.client_key.read_text(),
    )
    values.update(overrides)
    return SftpSpec(**values)


def _login(spec) -> tuple[str, str]:
    """Log in and return (the user the server accepted, the home folder SFTP reports)."""

    async def main() -> tuple[str, str]:
        conn = await connect(spec, timeout=5)
        try:
            async with conn.start_sftp_client() as sftp:
                return conn.get_extra_info("username"), await sftp.realpath(".")
        finally:
            conn.close()
            await conn.wait_closed()

    return asyncio.run(main())


def test_key_login(sshd):
    user, home = _login(spec_for(sshd))
    assert user == sshd.key_user and home.startswith("/")


def test_passphrase_key_login(sshd):
    spec = spec_for(
        sshd, private_key=sshd.client_key_passphrase_path.read_text(), passphrase=sshd.client_key_passphrase
    )
    user, home = _login(spec)
    assert user == sshd.key_user and home.startswith("/")


def test_password_login(sshd):
    if sshd.password_user is None:
        pytest.fail("password logins need the test run as root (a system user with a password)")
    user, _ = _login(spec_for(sshd, username=sshd.password_user, private_key=None, password=sshd.password))
    assert user == sshd.password_user


def test_wrong_password_is_permanent(sshd):
    if sshd.password_user is None:
        pytest.fail("password logins need the test run as root")
    with pytest.raises(AuthenticationFailed) as err:
        _login(spec_for(sshd, username=sshd.password_user, private_key=None, password="wrong-password"))
    assert not err.value.transient
    assert "wrong-password" not in str(err.value)


def test_wrong_pin_is_permanent_and_names_the_fingerprint_seen(sshd):
    with pytest.raises(HostKeyMismatch) as err:
        _login(spec_for(sshd, host_keys=("ssh-ed25519 SHA256:" + "B" * 43,)))
    assert sshd.pin in str(err.value)
    assert not err.value.transient


def test_closed_port_is_transient():
    with pytest.raises(TransientError) as err:
        _login(
            SftpSpec(
                endpoint_id="e",
                version=1,
                host="127.0.0.1",
                port=free_port(),
                username="x",
                host_keys=("ssh-ed25519 SHA256:" + "A" * 43,),
                password="x",
            )
        )
    assert err.value.transient
    assert err.value.code == "connection_refused"


def test_pinned_key_type_the_server_lacks_is_a_host_key_mismatch(sshd):
    # The test sshd has Ed25519 and ECDSA host keys only: an RSA pin shares no algorithm with it.
    assert "ssh-rsa" not in sshd.host_key_pins
    with pytest.raises(HostKeyMismatch) as err:
        _login(spec_for(sshd, host_keys=("ssh-rsa SHA256:" + "B" * 43,)))
    assert not err.value.transient and err.value.code == "host_key_mismatch"
    message = str(err.value)
    assert "rsa-sha2-512" in message and "ssh-ed25519" in message
