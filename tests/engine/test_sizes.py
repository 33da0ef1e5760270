"""Pure sizing rules: multipart part sizes, SFTP request windows, .part names."""

import pytest

from engine.s3io import MIB, part_size_for
from engine.sftpio import part_path, requests_in_flight


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


def test_part_path_is_hidden_beside_the_target():
    assert part_path("/in/dir/report 1.csv", "t-1") == "/in/dir/.report 1.csv.t-1.part"
