"""Logins to OpenSSH's sshd with pinned host keys."""

import asyncio

import asyncssh
import pytest

from engine import hostkeys


async def _connect(sshd, pins, **kwargs):
    client = hostkeys.PinningClient(pins)
    conn = await asyncssh.connect(
        sshd.host,
        sshd.port,
        username=kwargs.pop("username", sshd.key_user),
        client_factory=lambda: client,
        known_hosts=hostkeys.NO_KNOWN_HOSTS,
        server_host_key_algs=hostkeys.host_key_algorithms(pins),
        client_keys=kwargs.pop("client_keys", [str(sshd.client_key)]),
        encryption_algs=["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"],
        **kwargs,
    )
    return conn, client


def test_login_with_the_pinned_host_key_lists_files(sshd):
    (sshd.data_dir / "hello.txt").write_text("hi")

    async def main():
        conn, client = await _connect(sshd, [sshd.pin])
        async with conn, conn.start_sftp_client() as sftp:
            return await sftp.listdir(str(sshd.data_dir)), client.seen

    names, seen = asyncio.run(main())
    assert "hello.txt" in names
    assert seen == sshd.pin


def test_a_wrong_pin_is_refused_and_names_the_key_seen(sshd):
    wrong = "ssh-ed25519 SHA256:" + "A" * 43

    async def main():
        try:
            conn, _client = await _connect(sshd, [wrong])
            conn.close()
        except asyncssh.HostKeyNotVerifiable:
            return "refused"
        return "accepted"

    assert asyncio.run(main()) == "refused"


def test_only_pinned_key_types_are_offered(sshd):
    ecdsa = sshd.host_key_pins["ecdsa-sha2-nistp256"]

    async def main():
        conn, client = await _connect(sshd, [ecdsa])
        conn.close()
        return client.seen

    assert asyncio.run(main()) == ecdsa


@pytest.mark.parametrize("pin", ["", "ssh-ed25519 abc", "ssh-dss SHA256:" + "A" * 43, "ssh-ed25519 SHA256:" + "A" * 42])
def test_malformed_pins_are_refused(pin):
    with pytest.raises(hostkeys.InvalidPin):
        hostkeys.parse_pin(pin)
