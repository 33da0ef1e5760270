"""Issue 17: one file SFTP → S3 encrypted with OpenPGP on the way. Ferry (the engine's
``gpg`` transform in its chunk pipeline) against the same thing done by hand: ``rclone cat``
of the SFTP source piped through ``gpg --encrypt`` into ``rclone rcat`` to the same sink.

Both encrypt to the same cv25519 key without compression (``-z 0``, Ferry's setting) and
both outputs are decrypted afterwards to prove they hold the source's bytes. Memory: the
Ferry process's peak RSS (VmHWM) and, apart, its ``gpg`` child's (VmHWM sampled by the child)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from bench import ferry
from bench.common import BUCKET, SINK_S3, Env, Figure, MiB, Sizes, mbps, median, ratio
from deploy.local import services


class Keyring:
    """A throw-away GnuPG home with one recipient key (its public part is what Ferry gets)."""

    def __init__(self, home: Path) -> None:
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True, mode=0o700)
        self.home = home
        self.gpg("--passphrase", "", "--quick-gen-key", "Bench <bench@example.com>", "ed25519", "sign,cert", "0")
        listing = self.gpg("--with-colons", "--list-keys").stdout.decode()
        self.fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
        self.gpg("--passphrase", "", "--quick-add-key", self.fingerprint, "cv25519", "encr", "0")
        self.public = self.gpg("--armor", "--export", self.fingerprint).stdout.decode()

    def close(self) -> None:
        """Stop the gpg-agent this home started (gpg leaves it running as a daemon)."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"], capture_output=True, timeout=30)

    def command(self, *args: str) -> list[str]:
        return ["gpg", "--homedir", str(self.home), "--batch", "--yes", "--pinentry-mode", "loopback", *args]

    def gpg(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), check=True, capture_output=True, timeout=600)

    def decrypted_sha256(self, path: Path) -> str:
        """SHA-256 of what ``gpg --decrypt`` makes of ``path`` (streamed, never on disk)."""
        proc = subprocess.Popen(
            self.command("--passphrase", "", "--decrypt", str(path)),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        digest = hashlib.sha256()
        while block := proc.stdout.read(MiB):
            digest.update(block)
        if proc.wait() != 0:
            raise RuntimeError(f"gpg could not decrypt {path.name}")
        return digest.hexdigest()


def _by_hand(env: Env, keyring: Keyring, src: Path, key: str) -> float:
    """``rclone cat sftp:SRC | gpg --encrypt | rclone rcat s3:KEY``: seconds."""
    rclone = services.which("rclone")  # the copy bench/ installs, as Env.rclone uses
    assert rclone
    gpg = " ".join(keyring.command("--trust-model", "always", "-z", "0", "--encrypt", "-r", keyring.fingerprint))
    pipeline = f"set -o pipefail; {rclone} cat 'sftp:{src}' | {gpg} | {rclone} rcat 's3:{BUCKET}/{key}'"
    start = time.perf_counter()
    subprocess.run(["bash", "-c", pipeline], env=env.rclone_env(), check=True, capture_output=True, timeout=3600)
    return time.perf_counter() - start


def run(env: Env, sizes: Sizes) -> Figure:
    size = sizes.throughput
    src = env.source_file(size)
    keyring = Keyring(env.work / "pgp-bench-gnupg")
    try:
        return _measure(env, sizes, src, keyring)
    finally:
        keyring.close()


def _measure(env: Env, sizes: Sizes, src: Path, keyring: Keyring) -> Figure:
    size = sizes.throughput
    want = env.sha256_of(src)
    runs: dict[str, list[float]] = {"ferry": [], "gpg_pipe": []}
    peaks: dict[str, list[float]] = {"ferry_peak_mib": [], "ferry_idle_mib": [], "gpg_child_peak_mib": []}
    errors: list[str] = []
    for _ in range(sizes.runs):
        prefix = f"pgp-hand-{uuid.uuid4().hex[:8]}"
        key = f"{prefix}/{src.name}.pgp"
        runs["gpg_pipe"].append(mbps(size, _by_hand(env, keyring, src, key)))
        assert keyring.decrypted_sha256(env.s3_object_path(key)) == want
        env.remove_prefix(prefix)

        prefix = f"pgp-ferry-{uuid.uuid4().hex[:8]}"
        key = f"{prefix}/{src.name}.pgp"
        request = ferry.request(env, "copy", source=ferry.sftp_loc(src), destination=ferry.s3_loc(key))
        request["pgp"] = {"encrypt_to": [{"fingerprint": keyring.fingerprint, "armored": keyring.public}]}
        child = ferry.try_ferry(env, request, errors)
        if child:
            report = child.json()
            assert report["source_sha256"] == want and report["size"] > size
            assert keyring.decrypted_sha256(env.s3_object_path(key)) == want
            runs["ferry"].append(mbps(size, report["seconds"]))
            peaks["ferry_peak_mib"].append(round(max(report["hwm_kib"], child.maxrss_kib) / 1024, 1))
            peaks["ferry_idle_mib"].append(round(report["idle_rss_kib"] / 1024, 1))
            peaks["gpg_child_peak_mib"].append(round(report["children_maxrss_kib"] / 1024, 1))
        env.remove_prefix(prefix)
    ferry_mbps, by_hand = median(runs["ferry"]), median(runs["gpg_pipe"])
    return Figure(
        name="pgp_encrypt",
        ferry=ferry_mbps,
        peer=by_hand,
        unit="MB/s",
        sink=SINK_S3,
        peer_name="rclone cat | gpg --encrypt | rclone rcat",
        goal="≥ 0.8x the hand-made pipe, with memory flat in file size",
        note=" ".join(errors),
        runs=runs,
        details={
            "size_bytes": size,
            "ratio_vs_gpg_pipe": ratio(ferry_mbps, by_hand),
            **{k: median(v) for k, v in peaks.items()},
            "cipher": "cv25519 recipient, AES-256 (GnuPG's default), no compression",
        },
    )


def met(fig: Figure) -> bool | None:
    if fig.ratio is None:
        return None
    return fig.ratio >= 0.8
