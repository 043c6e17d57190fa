"""The scanner fails closed: a detector that raises makes the scan raise, never return 'clean'."""

from __future__ import annotations

import pytest

from bastion.dlp import DetectorFailed, Scanner
from bastion.dlp.normalise import View


class Broken:
    """A detector plugged into the scanner's seam that fails like a buggy pattern would."""

    name = "broken"

    def detect(self, view: View) -> list[object]:
        raise RecursionError("maximum recursion depth exceeded")


def test_a_detector_error_fails_the_scan() -> None:
    scanner = Scanner(detectors=[Broken()])  # type: ignore[list-item]
    with pytest.raises(DetectorFailed) as err:
        scanner.scan("hello")
    assert err.value.http_status == 503 and "broken" in err.value.message


def test_every_scan_says_what_it_cannot_detect() -> None:
    assert set(Scanner().scan("Jane Roe lives at 10 Downing Street").skipped) == {
        "person_name",
        "street_address",
    }
