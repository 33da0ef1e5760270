"""OpenPGP in the chunk pipeline: encrypt, sign, decrypt, verify, streamed through ``gpg``.

Why a ``gpg`` subprocess over pipes (docs/pgp.md has the measurements): it streams with
memory flat in file size, it is GnuPG itself (what partners use), and it runs on its own
core beside the loop. pysequoia 0.1.x takes whole byte strings only; python-gnupg wraps
the same subprocess with threads and temporary files.

Each operation gets its own GnuPG home in tmpfs (``/dev/shm``): the caller's keys are
imported there, the operation runs, the agent (if a secret key started one) is stopped
and the directory is removed, also on failure or cancellation. There is never a
persistent keyring, and the clear text only ever travels through pipes. A passphrase goes
over its own pipe (``--passphrase-fd``, loopback pinentry), never on a command line or in
a file; the outcome is read from ``--status-fd`` (machine-readable status lines), so a
signature counts only when GnuPG reports ``VALIDSIG`` from the expected key.

The engine imports nothing of Ferry's: the worker hands keys in as :class:`PgpKey` (key
material from the database and Secrets Manager).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from engine.errors import PermanentError, TransientError

GPG = "gpg"
GPGCONF = "gpgconf"
TMPFS = "/dev/shm"  # noqa: S108 - tmpfs on purpose: keys in memory, one private dir per operation (mkdtemp)
READ_SIZE = 1024 * 1024  # stdout reads
# What asyncio buffers of gpg's output before it stops reading the pipe (it pauses at twice
# this): 1 MiB rather than its 64 KiB default, so the loop wakes up per MiB, not per 64 KiB.
PIPE_LIMIT = 512 * 1024

SUFFIXES = (".pgp", ".gpg", ".asc")

# A pipeline transform (``plumbing.Transform``): a chunk stream in, a chunk stream out.
Transform = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


class PgpFailed(PermanentError):
    """GnuPG refused the data or the keys (tampered file, wrong key, bad signature)."""

    code = "pgp_failed"


@dataclass(frozen=True)
class PgpKey:
    """One key as GnuPG imports it: an armored public or secret key block.

    ``passphrase`` protects a secret key; ``expires_at`` (epoch seconds) is checked before
    the key is used. Neither the key block nor the passphrase appears in ``repr``.
    """

    fingerprint: str
    armored: str = field(repr=False)
    passphrase: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    label: str = ""  # how messages name the key (its id and name), never its material

    def check_usable(self, now: float | None = None) -> None:
        if self.expires_at is not None and self.expires_at <= (now if now is not None else time.time()):
            raise PgpFailed(f"The OpenPGP key {self.label or self.fingerprint} has expired.", code="pgp_key_expired")


@dataclass(frozen=True)
class PgpStep:
    """What a delivery does to the bytes. Opening (decrypt and/or verify) runs first, then
    sealing (encrypt and/or sign), so a route may re-encrypt a partner's file for another."""

    encrypt_to: tuple[PgpKey, ...] = ()
    sign_with: PgpKey | None = None
    decrypt_with: PgpKey | None = None
    verify_with: PgpKey | None = None
    armor: bool = False

    @property
    def opens(self) -> bool:
        return self.decrypt_with is not None or self.verify_with is not None

    @property
    def seals(self) -> bool:
        return bool(self.encrypt_to) or self.sign_with is not None

    def all_keys(self) -> list[PgpKey]:
        keys = [*self.encrypt_to, self.sign_with, self.decrypt_with, self.verify_with]
        return [k for k in keys if k is not None]


def output_name(name: str, step: PgpStep) -> str:
    """The delivered file's name: ``.pgp`` (``.asc`` with armor) added when sealing; a
    ``.pgp``/``.gpg``/``.asc`` suffix stripped when opening (and nothing left to add)."""
    if step.opens:
        lower = name.lower()
        for suffix in SUFFIXES:
            if lower.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    if step.seals:
        name += ".asc" if step.armor else ".pgp"
    return name


def transforms(step: PgpStep) -> list[Transform]:
    """The pipeline transforms for ``step`` (``plumbing.Transform`` functions), in order."""
    out: list[Transform] = []
    if step.opens:
        out.append(lambda chunks: open_stream(chunks, step))
    if step.seals:
        out.append(lambda chunks: seal_stream(chunks, step))
    return out


# --- one GnuPG home per operation --------------------------------------------------------


class _Home:
    """A GnuPG home in tmpfs for one operation; removed (agent stopped first) on exit."""

    def __init__(self, tmpfs: str = TMPFS) -> None:
        if not os.path.isdir(tmpfs):
            # Key material must not reach a disk: without tmpfs, refuse rather than fall back.
            raise PgpFailed(f"{tmpfs} (tmpfs) is missing: OpenPGP needs it for its keys.", code="pgp_unavailable")
        self.path = tempfile.mkdtemp(prefix="ferry-gpg-", dir=tmpfs)
        self.agent = False

    def args(self) -> list[str]:
        return [
            GPG,
            "--homedir",
            self.path,
            "--batch",
            "--no-tty",
            "--no-options",
            "--no-auto-key-locate",
            "--no-auto-key-retrieve",
            "--trust-model",
            "always",  # trust is the route's choice of key, not a web of trust
            "--pinentry-mode",
            "loopback",
        ]

    async def import_keys(self, keys: Sequence[PgpKey]) -> None:
        if any("PRIVATE KEY" in k.armored for k in keys):
            self.agent = True
        blob = "\n".join(k.armored for k in keys).encode()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.args(),
                "--import",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise _missing() from None
        await proc.communicate(blob)
        if proc.returncode != 0:
            raise PgpFailed("GnuPG could not import the route's OpenPGP keys.", code="pgp_key_invalid")

    async def close(self) -> None:
        if self.agent:
            with contextlib.suppress(Exception):
                proc = await asyncio.create_subprocess_exec(
                    GPGCONF,
                    "--homedir",
                    self.path,
                    "--kill",
                    "gpg-agent",
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                await asyncio.wait_for(proc.wait(), 10)
        shutil.rmtree(self.path, ignore_errors=True)


# --- streaming through gpg -----------------------------------------------------------------


@dataclass
class _Status:
    lines: list[str] = field(default_factory=list)

    def has(self, keyword: str) -> bool:
        return any(line.split(" ", 2)[1:2] == [keyword] for line in self.lines)

    def fields(self, keyword: str) -> list[list[str]]:
        return [line.split(" ")[2:] for line in self.lines if line.split(" ", 2)[1:2] == [keyword]]


async def _read_status(fd: int, status: _Status) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    try:
        while line := await reader.readline():
            status.lines.append(line.decode(errors="replace").rstrip("\n"))
    finally:
        transport.close()


async def _feed(chunks: AsyncIterator[bytes], stdin: asyncio.StreamWriter) -> None:
    try:
        async for chunk in chunks:
            stdin.write(chunk)
            await stdin.drain()
    finally:
        with contextlib.suppress(Exception):
            stdin.close()


async def _run_gpg(
    chunks: AsyncIterator[bytes],
    home: _Home,
    args: list[str],
    passphrase: str | None,
    status: _Status,
) -> AsyncIterator[bytes]:
    """Stream ``chunks`` through ``gpg args``: yields its output as it comes. On return,
    ``status`` holds its status lines and the process has exited (its code is appended as
    ``[GNUPG:] EXIT <code>``). Raises what the input stream raised, if it failed."""
    status_r, status_w = os.pipe()
    pass_fds = [status_w]
    command = [*home.args(), "--status-fd", str(status_w)]
    pass_r = -1
    if passphrase is not None:
        pass_r, pass_w = os.pipe()
        os.write(pass_w, passphrase.encode() + b"\n")  # small: fits the pipe's buffer
        os.close(pass_w)
        pass_fds.append(pass_r)
        command += ["--passphrase-fd", str(pass_r)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,  # its messages may quote user ids: status lines suffice
            pass_fds=pass_fds,
            limit=PIPE_LIMIT,
        )
    except FileNotFoundError:
        os.close(status_r)
        raise _missing() from None
    finally:
        os.close(status_w)
        if pass_r >= 0:
            os.close(pass_r)
    reading = asyncio.ensure_future(_read_status(status_r, status))
    assert proc.stdin is not None and proc.stdout is not None
    feeding = asyncio.ensure_future(_feed(chunks, proc.stdin))
    finished = False
    try:
        while True:
            out = await proc.stdout.read(READ_SIZE)
            if not out:
                break
            yield out
            if feeding.done() and feeding.exception() is not None and not _pipe_error(feeding.exception()):
                break  # the source failed: stop here, the error is raised below
        code = await proc.wait()
        await reading
        status.lines.append(f"[GNUPG:] EXIT {code}")
        finished = True
        await _finish_feed(feeding)
    finally:
        if not finished:
            feeding.cancel()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await proc.wait()
            reading.cancel()
            with contextlib.suppress(BaseException):
                await feeding
            with contextlib.suppress(BaseException):
                await reading


def _pipe_error(exc: BaseException | None) -> bool:
    return isinstance(exc, (BrokenPipeError, ConnectionResetError))


async def _finish_feed(feeding: asyncio.Future[None]) -> None:
    """Raise what the source raised; a broken pipe means gpg stopped reading (its status
    says why, and the caller judges that)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await feeding


def _exit_code(status: _Status) -> int:
    codes = status.fields("EXIT")
    return int(codes[-1][0]) if codes else -1


async def seal_stream(chunks: AsyncIterator[bytes], step: PgpStep) -> AsyncIterator[bytes]:
    """Encrypt to ``step.encrypt_to`` and/or sign with ``step.sign_with``."""
    for key in step.all_keys():
        key.check_usable()
    home = _Home()
    try:
        await home.import_keys([*step.encrypt_to, *([step.sign_with] if step.sign_with else [])])
        # No compression: payloads are mostly compressed already and zlib would cost ten times the
        # cipher's time (docs/pgp.md).
        args = ["--compress-algo", "none"]
        if step.armor:
            args.append("--armor")
        for key in step.encrypt_to:
            args += ["--recipient", key.fingerprint]
        if step.encrypt_to:
            args.append("--encrypt")
        if step.sign_with is not None:
            args += ["--local-user", step.sign_with.fingerprint, "--sign"]
        status = _Status()
        async for out in _run_gpg(chunks, home, args, step.sign_with.passphrase if step.sign_with else None, status):
            yield out
        _judge_seal(status, step)
    finally:
        await home.close()


def _judge_seal(status: _Status, step: PgpStep) -> None:
    if status.has("INV_RECP"):
        raise PgpFailed(
            "GnuPG refused a recipient key (expired, revoked or not for encryption).", code="pgp_key_unusable"
        )
    if status.has("INV_SGNR"):
        raise PgpFailed("GnuPG could not sign with the route's key.", code="pgp_sign_failed")
    if status.has("BAD_PASSPHRASE") or status.has("MISSING_PASSPHRASE"):
        raise PgpFailed("The passphrase of the route's signing key is wrong.", code="pgp_sign_failed")
    if step.encrypt_to and not status.has("END_ENCRYPTION"):
        raise PgpFailed("GnuPG did not finish encrypting the file.", code="pgp_encrypt_failed")
    if step.sign_with is not None and not status.has("SIG_CREATED"):
        raise PgpFailed("GnuPG did not sign the file.", code="pgp_sign_failed")
    if _exit_code(status) != 0:
        raise PgpFailed("GnuPG failed while encrypting or signing the file.", code="pgp_encrypt_failed")


async def open_stream(chunks: AsyncIterator[bytes], step: PgpStep) -> AsyncIterator[bytes]:
    """Decrypt with ``step.decrypt_with`` and/or check the signature of ``step.verify_with``.

    The clear text streams on before GnuPG has seen the end of the file (its integrity check
    and signature come last), so the verdict is raised after the last chunk and before the
    stream ends: the destination's writer then never commits, and its temporary file or
    multipart upload is removed like after any failed copy.
    """
    for key in step.all_keys():
        key.check_usable()
    home = _Home()
    try:
        await home.import_keys([k for k in (step.decrypt_with, step.verify_with) if k is not None])
        status = _Status()
        passphrase = step.decrypt_with.passphrase if step.decrypt_with else None
        async for out in _run_gpg(chunks, home, ["--decrypt"], passphrase, status):
            yield out
        _judge_open(status, step)
    finally:
        await home.close()


def _judge_open(status: _Status, step: PgpStep) -> None:
    encrypted = status.has("ENC_TO") or status.has("BEGIN_DECRYPTION")
    if status.has("BAD_PASSPHRASE"):
        raise PgpFailed("The passphrase of the route's decryption key is wrong.", code="pgp_decrypt_failed")
    if encrypted and (
        step.decrypt_with is None or status.has("DECRYPTION_FAILED") or not status.has("DECRYPTION_OKAY")
    ):
        raise PgpFailed(
            "The file could not be decrypted with the route's key (another recipient's file, "
            "or it was changed in transit).",
            code="pgp_decrypt_failed",
        )
    if step.decrypt_with is not None and not encrypted:
        raise PgpFailed("The file is not OpenPGP-encrypted.", code="pgp_decrypt_failed")
    if status.has("BADMDC") or status.has("BADSIG"):
        raise PgpFailed("The file was changed after it was signed or encrypted.", code="pgp_verify_failed")
    if step.verify_with is not None:
        expected = step.verify_with.fingerprint.upper()
        signers = {f.upper() for fields in status.fields("VALIDSIG") for f in (fields[0], fields[-1]) if f}
        if (
            expected not in signers
            or not status.has("GOODSIG")
            or status.has("ERRSIG")
            or status.has("EXPKEYSIG")
            or status.has("REVKEYSIG")
        ):
            raise PgpFailed(
                f"The file is not signed by the expected key {step.verify_with.label or expected}.",
                code="pgp_verify_failed",
            )
    if not status.has("PLAINTEXT") and not status.has("DECRYPTION_OKAY"):
        raise PgpFailed("The file is not an OpenPGP message.", code="pgp_failed")
    code = _exit_code(status)
    # Exit 2 without a verdict above: an unverifiable signature we were not asked to check.
    if code not in (0, 2) or (code == 2 and step.verify_with is not None):
        raise PgpFailed("GnuPG could not open the file.", code="pgp_failed")


def _missing() -> TransientError:
    # Transient: the worker's image lacks gpg (an operator's fix); another worker may have it.
    return TransientError("gpg is not installed on this worker.", code="pgp_unavailable")


# --- what a key is -------------------------------------------------------------------------

ALGORITHMS = {
    "1": "rsa",
    "2": "rsa",
    "3": "rsa",
    "16": "elgamal",
    "17": "dsa",
    "18": "ecdh",
    "19": "ecdsa",
    "22": "eddsa",
}
MAX_KEY_BYTES = 64 * 1024


class InvalidKey(ValueError):
    """An uploaded key GnuPG cannot use; the message is safe to show (never key material)."""


@dataclass(frozen=True)
class KeyInfo:
    """What GnuPG says of one uploaded key (its primary key, user ids, usable capabilities)."""

    fingerprint: str
    secret: bool
    user_ids: tuple[str, ...]
    algorithm: str  # e.g. "ed25519", "rsa3072"
    created_at: float
    expires_at: float | None
    revoked: bool
    expired: bool
    can_encrypt: bool
    can_sign: bool
    public_armored: str = field(repr=False)


async def _gpg(home: _Home, *args: str, data: bytes = b"", passphrase: str | None = None) -> tuple[int, bytes]:
    command = [*home.args(), *args]
    pass_fds: list[int] = []
    pass_r = -1
    if passphrase is not None:
        pass_r, pass_w = os.pipe()
        os.write(pass_w, passphrase.encode() + b"\n")
        os.close(pass_w)
        pass_fds.append(pass_r)
        command[len(home.args()) : len(home.args())] = ["--passphrase-fd", str(pass_r)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            pass_fds=pass_fds,
        )
    except FileNotFoundError:
        raise _missing() from None
    finally:
        if pass_r >= 0:
            os.close(pass_r)
    out, _ = await asyncio.wait_for(proc.communicate(data), 60)
    return proc.returncode or 0, out


async def inspect_key(armored: str, passphrase: str | None = None, *, now: float | None = None) -> KeyInfo:
    """Import ``armored`` (one public or secret key) into a throw-away tmpfs home and read it
    back: fingerprint, user ids, algorithm, dates, revocation, capabilities, and the public
    part (what Ferry stores). For a secret key, ``passphrase`` must unlock it (checked by an
    export, which needs the key unprotected). Raises :class:`InvalidKey`."""
    if not armored.strip() or len(armored.encode()) > MAX_KEY_BYTES:
        raise InvalidKey(f"An ASCII-armored OpenPGP key of at most {MAX_KEY_BYTES // 1024} KiB.")
    if "-----BEGIN PGP" not in armored:
        raise InvalidKey("Not an ASCII-armored OpenPGP key (-----BEGIN PGP PUBLIC KEY BLOCK----- ...).")
    secret = "PRIVATE KEY BLOCK" in armored
    home = _Home()
    home.agent = secret
    try:
        code, _ = await _gpg(home, "--import", data=armored.encode(), passphrase=passphrase if secret else None)
        listing = "--list-secret-keys" if secret else "--list-keys"
        _, out = await _gpg(home, "--with-colons", "--fixed-list-mode", listing)
        records = [line.split(":") for line in out.decode(errors="replace").splitlines()]
        primaries = [r for r in records if r[0] in ("pub", "sec")]
        if code not in (0, 2) or not primaries:
            raise InvalidKey("GnuPG could not read this key.")
        if len(primaries) > 1:
            raise InvalidKey("Upload one key at a time (this block holds several).")
        primary = primaries[0]
        fingerprint = next(r[9] for r in records if r[0] == "fpr")
        if secret:
            if passphrase is None:
                passphrase = ""
            unlocked, _ = await _gpg(home, "--armor", "--export-secret-keys", fingerprint, passphrase=passphrase)
            if unlocked != 0:
                raise InvalidKey("The passphrase does not unlock this private key.")
        _, public = await _gpg(home, "--armor", "--export", fingerprint)
    finally:
        await home.close()
    now = now if now is not None else time.time()
    expires = float(primary[6]) if primary[6] else None
    caps = primary[11]
    algo = ALGORITHMS.get(primary[3], f"algorithm-{primary[3]}")
    curve = primary[16] if len(primary) > 16 else ""
    return KeyInfo(
        fingerprint=fingerprint,
        secret=secret,
        user_ids=tuple(_unescape(r[9]) for r in records if r[0] == "uid"),
        algorithm=curve or f"{algo}{primary[2]}",
        created_at=float(primary[5] or 0),
        expires_at=expires,
        revoked=primary[1] == "r",
        expired=primary[1] == "e" or (expires is not None and expires <= now),
        can_encrypt="E" in caps,
        can_sign="S" in caps,
        public_armored=public.decode(),
    )


def _unescape(text: str) -> str:
    """GnuPG's colon listings escape bytes as ``\\xNN``."""
    return text.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", errors="replace")
