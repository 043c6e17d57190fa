"""Scorers on hand-made inputs with known answers."""

from __future__ import annotations

import pytest

from bastion.evals.scoring import gsm8k_extract, gsm8k_match, parse_letter, score_mc, stderr, wilson_interval


def test_acc_takes_raw_argmax_and_acc_norm_divides_by_choice_length() -> None:
    # Choice 1 has the best raw log-likelihood; per character, the long choice 2 is better.
    r = score_mc([-10.0, -4.0, -12.0], ["abcde", "xy", "a much longer choice text"], gold=2)
    assert (r.pred, r.acc) == (1, 0.0)
    assert (r.pred_norm, r.acc_norm) == (2, 1.0)


def test_mc_ties_go_to_the_first_choice() -> None:
    assert score_mc([-1.0, -1.0], ["aa", "bb"], gold=1).pred == 0


def test_mc_needs_one_loglikelihood_per_choice() -> None:
    with pytest.raises(ValueError):
        score_mc([-1.0], ["a", "b"], gold=0)


@pytest.mark.parametrize(("text", "expected"), [
    ("B", 1), ("(C) because", 2), ("  a. Paris", 0), ("Answer: D", 3), ("answer is b", 1),
    ("The answer is probably B", None), ("E", None), ("", None), ("Because A", None),
])
def test_letter_parse_is_strict(text: str, expected: int | None) -> None:
    assert parse_letter(text, 4) == expected


def test_gsm8k_strict_and_flexible_extraction() -> None:
    text = "She has 3 + 4 = 7 apples. Then 7 * 2 = 14. So the answer is 14."
    assert gsm8k_extract(text) == ("14.", "14.")
    assert gsm8k_match("14.", "14") == 1.0
    # No trained phrase: strict fails, flexible takes the last number.
    assert gsm8k_extract("I think it is $1,200 total") == (None, "$1,200")
    assert gsm8k_match("$1,200", "1200") == 1.0
    assert gsm8k_match(None, "5") == 0.0
    assert gsm8k_match("15", "5") == 0.0


def test_wilson_interval_matches_known_values() -> None:
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_stderr_is_sample_standard_error() -> None:
    assert stderr([1.0, 0.0, 1.0, 0.0]) == pytest.approx(0.288675, abs=1e-6)
    assert stderr([1.0]) == 0.0
