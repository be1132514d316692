"""benchmarks.select's rule on measured figures: shortfalls, edge check first, ties, incumbent.
(The CLI on a trained generator: tests/test_train.py::test_select_cli_on_run_checkpoints.)"""

from __future__ import annotations

import pytest

from benchmarks.select import Candidate, markdown, pick, rank, score, shortfalls

#: set means in the shape of benchmarks.evaluate.evaluate: x, y and g's figures.
X = {"grain_lat": 7.0, "kl_y": 0.20, "cnr": 1.10, "log_corr": 0.55}
Y = {"grain_lat": 3.0, "kl_y": 0.0, "cnr": 1.60, "log_corr": 0.66}


def _res(**g: float) -> dict[str, dict[str, float]]:
    return {"x": X, "y": Y, "g": {**{"grain_lat": 3.0, "kl_y": 0.05, "cnr": 1.60, "log_corr": 0.70}, **g}}


def _cand(name: str, edge: float, met: int, short: float) -> Candidate:
    """``met`` targets met out of 8 on two sets, ``short`` the grain shortfall on the second."""
    flags = [i < met for i in range(8)]
    return Candidate(name, edge,
                     {"a": dict(zip("grain kl cnr log_corr".split(), flags[:4], strict=True)),
                      "b": dict(zip("grain kl cnr log_corr".split(), flags[4:], strict=True))},
                     {"a": {"grain": 0.0, "kl": 2.0, "cnr": 0.0, "log_corr": 0.0},
                      "b": {"grain": short, "kl": 3.0, "cnr": 0.0, "log_corr": 0.0}})


def test_shortfalls_are_zero_when_met_and_relative_when_missed() -> None:
    assert shortfalls(_res()) == {"grain": 0.0, "kl": 0.0, "cnr": 0.0, "log_corr": 0.0}
    missed = shortfalls(_res(grain_lat=7.5, kl_y=0.3, cnr=1.216, log_corr=0.44))
    assert missed["grain"] == pytest.approx(7.5 / 3.75 - 1)  # twice the allowed grain: 100 %
    assert missed["kl"] == pytest.approx(0.3 / 0.1 - 1)
    assert missed["cnr"] == pytest.approx(1 - 1.216 / 1.52)  # 0.95 x y's 1.60 is the bar, not x's 1.10
    assert missed["log_corr"] == pytest.approx(0.2)


def test_rule_edge_check_first_then_targets_then_shortfall() -> None:
    edgy = _cand("edgy", 7.5, 8, 0.0)
    few = _cand("few", 1.0, 5, 0.0)
    tie_small, tie_big = _cand("tie_small", 2.0, 6, 0.1), _cand("tie_big", 2.0, 6, 0.4)
    ranked = rank([few, tie_big, edgy, tie_small])
    assert [c.weights for c in ranked] == ["tie_small", "tie_big", "few", "edgy"]
    assert pick([few, tie_big, edgy, tie_small]).weights == "tie_small"
    assert pick([edgy]) is None
    table = markdown([few, edgy])
    assert "| few | ok 1.0 | GKCL | G... | 5/8 | 0.000 | 0 |" in table and "| edgy | EDGE 7.5 |" in table


def test_ties_at_zero_shortfall_go_to_fewer_harmed_pairs() -> None:
    more = Candidate(**{**vars(_cand("more_harm", 1.0, 6, 0.0)), "harmed": 14})
    fewer = Candidate(**{**vars(_cand("fewer_harm", 1.0, 6, 0.0)), "harmed": 11})
    assert [c.weights for c in rank([more, fewer])] == ["fewer_harm", "more_harm"]
    assert pick([more, fewer]).weights == "fewer_harm"
    # harm only breaks ties: a file with more targets wins whatever it harms
    assert pick([fewer, Candidate(**{**vars(_cand("more_met", 1.0, 7, 0.5)), "harmed": 30})]).weights == "more_met"


def test_score_counts_targets_and_harmed_pairs_over_the_sets() -> None:
    harm = {"cnr": 2, "pairs_cnr": 20, "log_corr": 3, "pairs_log_corr": 20}
    c = score("w.pt", 1.5, {"a": {**_res(), "worse_than_x": harm},
                            "b": {**_res(grain_lat=7.5), "worse_than_x": {**harm, "cnr": 0}}})
    assert c.total == 7 and c.met["b"]["grain"] is False and c.harmed == 2 + 3 + 0 + 3
    assert markdown([c]).splitlines()[-1].endswith("| 7/8 | 1.000 | 8 |")


def test_incumbent_is_replaced_only_by_more_targets() -> None:
    shipped = _cand("shipped", 5.0, 6, 0.5)
    tie, better = _cand("tie", 1.0, 6, 0.0), _cand("better", 1.0, 7, 0.9)
    assert pick([shipped, tie], incumbent="shipped").weights == "shipped"  # a tie keeps what is in use
    assert pick([shipped, tie, better], incumbent="shipped").weights == "better"
    assert pick([_cand("shipped", 9.0, 8, 0.0), tie], incumbent="shipped").weights == "tie"  # failing edges
    with pytest.raises(ValueError, match="incumbent"):
        pick([tie], incumbent="shipped")
