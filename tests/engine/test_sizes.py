"""Pure sizing rules: multipart part sizes, SFTP request windows, .part names."""

import pytest

from engine.listing import PART_RE
from engine.s3io import MIB, part_size_for
from engine.sftpio import legacy_part_path, part_path, requests_in_flight


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, 8 * MIB),
        (1, 8 * MIB),
        (2 * 1024 * MIB, 8 * MIB),
        (9000 * 8 * MIB, 8 * MIB),
        (9000 * 8 * MIB + 1, 8 * MIB + 1),
    ],
)
def test_part_size_is_max_8_mib_or_size_over_9000(size, expected):
    assert part_size_for(size) == expected
    assert -(-size // part_size_for(size)) <= 9000


def test_part_size_override():
    assert part_size_for(10**9, 5 * MIB) == 5 * MIB


def test_request_window():
    assert requests_in_flight(261120, 16) == 16  # OpenSSH: 16 x 255 KiB
    assert requests_in_flight(16 * 1024, 16) == 128  # no limits extension: keep ~2 MiB in flight
    assert requests_in_flight(261120, 64) == 64


def test_part_path_is_hidden_beside_the_target_and_short():
    assert part_path("/in/dir/report 1.csv", "t-1") == "/in/dir/.ferry-t-1.part"
    assert part_path("/in/dir/" + "x" * 255, "t-1", "3") == "/in/dir/.ferry-t-1.3.part"
    assert legacy_part_path("/in/dir/report 1.csv", "t-1", "3") == "/in/dir/.report 1.csv.t-1.3.part"


@pytest.mark.parametrize(
    "name",
    [
        ".ferry-0b9e4c3a-8d1f-4f55-9a2e-5c1d2e3f4a5b.2.part",
        ".ferry-t-1.part",
        ".report 1.csv.t-1.3.part",
        ".a.csv.t-1.part",
    ],
)
def test_both_part_name_forms_are_hidden_from_listings(name):
    assert PART_RE.match(name)
    assert not PART_RE.match("report.part") and not PART_RE.match(".ferry-notes.txt")
