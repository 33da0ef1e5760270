"""The peers and their settings: each at its defaults and at its best documented settings
(issue 14). "Best" is picked per session from a small grid (:func:`bench.common.tune`),
each candidate tried once on the benchmark's own data; the page lists the exact flags.

OpenSSH ``sftp``: its default cipher here is chacha20-poly1305 (Ferry negotiates
aes128-gcm, which AES-NI makes cheaper), ``-R`` requests in flight (default 64) and ``-B``
bytes per request (default 32768). sftp-server's messages are at most 256 KiB: the client
clamps a read's ``-B`` to the server's announced limits (limits@openssh.com), but a ``put``
with ``-B 262144`` fails ("Outbound message too long 262169"), so the grid's largest is
261120 (255 KiB, also what rclone's docs give for OpenSSH).

rclone: ``--transfers``/``--checkers`` (files in parallel, default 4/8),
``--multi-thread-streams``/``--multi-thread-cutoff`` (ranged streams per large file, default
4 above 256 MiB), ``--s3-upload-concurrency``/``--s3-chunk-size`` (multipart parts in
flight, default 4 of 5 MiB), ``--sftp-concurrency``/``--sftp-chunk-size`` (SFTP requests
in flight per file, default 64 of 32 KiB; rclone's docs give 255k for OpenSSH servers). By
default rclone checks each copied file's MD5 with ``md5sum`` over an SSH exec channel (this
sshd allows a shell); the ``*_nohash`` variants turn every hash off
(``--sftp-disable-hashcheck --ignore-checksum``, and for S3 ``--s3-disable-checksum``), so
they no longer verify content, only sizes.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.common import Variant

GCM = "aes128-gcm@openssh.com"  # the cipher Ferry negotiates with OpenSSH's sshd

OPENSSH_DEFAULTS = Variant("openssh_sftp", "OpenSSH sftp, its defaults", verifies=False)
# The grid: the first candidate is what the smoke test uses untried.
MAX_B = 261120  # 255 KiB: the largest -B whose write fits sftp-server's 256 KiB message
_OPENSSH_POINTS = [(256, MAX_B), (64, 32768), (128, 32768), (256, 32768), (64, 65536), (128, 65536)]
_OPENSSH_POINTS += [(256, 65536), (64, MAX_B), (128, MAX_B)]
OPENSSH_GRID = [
    Variant("openssh_sftp_best", "OpenSSH sftp, best of its grid", ("-c", GCM, "-R", str(r), "-B", str(b)), False)
    for r, b in _OPENSSH_POINTS
]

RCLONE_DEFAULTS = Variant("rclone", "rclone copy, its defaults")
# Ferry's cipher named explicitly (Go's SSH has its own preference order), bigger SFTP
# requests and more of them in flight.
_SFTP_BEST = ("--sftp-ciphers", GCM, "--sftp-chunk-size", "255k", "--sftp-concurrency", "128")
# One large file: ranged streams and multipart parts in flight.
RCLONE_LARGE_GRID = [
    Variant(
        "rclone_best",
        "rclone copy, best of its grid",
        (
            "--multi-thread-streams",
            str(streams),
            "--multi-thread-cutoff",
            "64Mi",
            "--multi-thread-chunk-size",
            chunk,
            "--s3-chunk-size",
            chunk,
            "--s3-upload-concurrency",
            str(streams),
            *_SFTP_BEST,
        ),
    )
    for streams, chunk in ((8, "16Mi"), (4, "16Mi"), (4, "64Mi"), (16, "16Mi"))
]
# Many small files: files in parallel (a 4 KiB file is one request each way).
RCLONE_SMALL_GRID = [
    Variant("rclone_best", "rclone copy, best of its grid", ("--transfers", str(n), "--checkers", str(n)))
    for n in (32, 16, 64)
]
GRID_FILES = 200  # the small-file grids copy this many of the folder's files (--files-from)


def grid_subset(folder_files: list[str], list_path: Path) -> tuple[str, ...]:
    """rclone flags that copy only the folder's first :data:`GRID_FILES` files: the grid of
    files-in-parallel settings is tried on a slice, so that trying it costs seconds, not
    minutes of ``md5sum`` over SSH (the figures compare the settings with each other)."""
    names = sorted(os.path.basename(f) for f in folder_files)[:GRID_FILES]
    list_path.write_text("".join(f"{name}\n" for name in names))
    return ("--files-from", str(list_path))


NO_HASH = ("--sftp-disable-hashcheck", "--ignore-checksum", "--s3-disable-checksum")


def without_hashes(best: Variant) -> Variant:
    """The best setting with every hash check off (sizes only)."""
    return Variant(
        "rclone_best_nohash", "rclone copy, best settings without hash checks", (*best.flags, *NO_HASH), False
    )


def peer_details(variants: list[Variant], env_grids: dict[str, dict[str, float]], *keys: str) -> dict[str, object]:
    """What goes in a figure's details about its peers: each variant's exact flags, and the
    grid each best was picked from (figure per setting, each tried once)."""
    return {
        "peer_variants": {v.key: " ".join(v.flags) or "(defaults)" for v in variants},
        "peer_grids": {k: env_grids[k] for k in keys if k in env_grids},
    }
