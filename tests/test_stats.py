"""lenet_pl.sweeps.stats on numbers worked out by hand: intervals, selection, effects, interactions, paths."""

import math

import pytest
from scipy import stats as scipy_stats

from lenet_pl.sweeps.stats import (
    Trial,
    effect,
    interactions,
    main_effects,
    paired_difference,
    path,
    select,
    t_interval,
    undone,
)


def test_t_interval_matches_the_textbook_formula_and_scipy():
    interval = t_interval([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, s = 1.2910, t(0.975, 3) = 3.1824: half-width 3.1824 * 1.2910 / 2 = 2.0543
    assert interval.mean == pytest.approx(2.5)
    assert interval.half_width == pytest.approx(2.05426, abs=1e-4)
    assert (interval.low, interval.high) == pytest.approx(
        scipy_stats.t.interval(0.95, 3, loc=2.5, scale=scipy_stats.sem([1, 2, 3, 4]))
    )
    assert interval.n == 4 and interval.text() == "2.50 +- 2.05"


def test_t_interval_of_three_seeds_uses_two_degrees_of_freedom():
    interval = t_interval([99.0, 99.2, 99.4])  # s = 0.2, t(0.975, 2) = 4.3027
    assert interval.half_width == pytest.approx(4.30265 * 0.2 / math.sqrt(3), abs=1e-4)


def test_one_value_has_a_mean_but_no_interval_and_none_has_neither():
    one = t_interval([3.0])
    assert one.mean == 3.0 and not one.has_interval and one.text() == "3.00 (1 seed)"
    assert t_interval([]).n == 0 and t_interval([]).text() == "-"


def test_paired_difference_uses_the_seeds_both_have():
    before = {0: 1.0, 1: 1.2, 2: 1.1, 3: 9.0}
    after = {0: 0.8, 1: 1.1, 2: 0.8}
    diff = paired_difference(before, after)  # -0.2, -0.1, -0.3
    assert diff.n == 3 and diff.mean == pytest.approx(-0.2)
    assert diff.half_width == pytest.approx(4.30265 * 0.1 / math.sqrt(3), abs=1e-4)


# --- learning-rate selection ------------------------------------------------------------------


def test_selection_takes_the_best_mean_validation_score_over_the_selection_seeds():
    trials = [
        Trial(0.01, 0, 0.970),
        Trial(0.01, 1, 0.980),  # mean 0.975
        Trial(0.1, 0, 0.990),
        Trial(0.1, 1, 0.950),  # mean 0.970
        Trial(1.0, 0, 0.960),
        Trial(1.0, 1, 0.960),
    ]
    chosen = select(trials, [0.01, 0.1, 1.0], seeds=[0, 1])
    assert chosen.chosen == 0.01 and chosen.at_edge
    assert chosen.scores == pytest.approx({0.01: 0.975, 0.1: 0.970, 1.0: 0.960})


def test_a_failed_or_diverged_candidate_loses_and_is_listed_with_its_failure():
    trials = [Trial(0.1, 0, 0.99), Trial(0.3, 0, None, "TrainingDiverged: loss inf at step 12"), Trial(0.03, 0, 0.98)]
    chosen = select(trials, [0.03, 0.1, 0.3], seeds=[0])
    assert chosen.chosen == 0.1 and not chosen.at_edge
    assert chosen.lost == {0.3: "seed 0: TrainingDiverged: loss inf at step 12"}
    # even a failure on one seed of two loses the candidate, whatever the other seed scored
    two_seeds = [
        Trial(0.1, 0, 0.999),
        Trial(0.1, 1, None, "TrainingDiverged: x"),
        Trial(0.3, 0, 0.9),
        Trial(0.3, 1, 0.9),
    ]
    assert select(two_seeds, [0.1, 0.3], seeds=[0, 1]).chosen == 0.3


def test_ties_go_to_the_smaller_value_whatever_the_order_of_the_runs():
    trials = [Trial(0.3, 0, 0.98), Trial(0.1, 0, 0.98), Trial(0.03, 0, 0.97)]
    assert select(trials, [0.03, 0.1, 0.3], seeds=[0]).chosen == 0.1
    assert select(list(reversed(trials)), [0.3, 0.1, 0.03], seeds=[0]).chosen == 0.1


def test_nothing_is_chosen_while_a_candidate_is_pending_unless_the_stage_is_complete():
    trials = [Trial(0.1, 0, 0.99), Trial(0.3, 0, None)]  # 0.3 still running; 0.03 never started
    pending = select(trials, [0.03, 0.1, 0.3], seeds=[0])
    assert pending.chosen is None and pending.pending == (0.03, 0.3) and pending.status == "pending"
    complete = select(trials, [0.03, 0.1, 0.3], seeds=[0], complete=True)
    assert complete.chosen == 0.1
    assert complete.lost == {0.03: "no result for seed 0", 0.3: "no result for seed 0"}
    everything_failed = select([Trial(0.1, 0, None, "boom")], [0.1], seeds=[0])
    assert everything_failed.chosen is None and everything_failed.status == "all candidates lost"


def test_runs_of_other_seeds_or_values_do_not_enter_the_selection():
    trials = [Trial(0.1, 0, 0.95), Trial(0.3, 0, 0.96), Trial(0.3, 1, 0.999), Trial(5.0, 0, 1.0)]
    chosen = select(trials, [0.1, 0.3], seeds=[0])
    assert chosen.chosen == 0.3 and chosen.scores == pytest.approx({0.1: 0.95, 0.3: 0.96})


def test_a_screened_selection_runs_the_later_seeds_on_the_first_seeds_best_and_chooses_on_their_mean():
    # seed 0 alone prefers 0.3 (by 0.001), but 0.1 is better on average over seeds 0 and 6
    first = [Trial(0.03, 0, 0.950), Trial(0.1, 0, 0.980), Trial(0.3, 0, 0.981), Trial(1.0, 0, None, "diverged")]
    screen = select(first, [0.03, 0.1, 0.3, 1.0], seeds=[0, 6], top=2)
    assert screen.chosen is None and screen.pending == (0.1, 0.3)  # the finalists wait for seed 6
    assert screen.first_seed == {0.03: 0.950, 0.1: 0.980, 0.3: 0.981} and screen.first_seed_choice == 0.3
    assert screen.lost == {0.03: "screened out: not among the 2 best on seed 0", 1.0: "seed 0: diverged"}
    both = select([*first, Trial(0.1, 6, 0.984), Trial(0.3, 6, 0.977)], [0.03, 0.1, 0.3, 1.0], seeds=[0, 6], top=2)
    assert both.chosen == 0.1 and both.scores == pytest.approx({0.1: 0.982, 0.3: 0.979})
    assert both.first_seed_choice == 0.3 and both.changed_by_more_seeds and not both.at_edge
    assert both.screened_out == [0.03]  # ran on seed 0 only; the diverged 1.0 lost, it was not screened out
    # a finalist that fails on the later seed loses; the other finalist wins even if seed 0 ranked it second
    failed = select([*first, Trial(0.3, 6, None, "diverged"), Trial(0.1, 6, 0.9)], [0.03, 0.1, 0.3, 1.0], [0, 6], top=2)
    assert failed.chosen == 0.1 and failed.lost[0.3] == "seed 6: diverged"
    # while seed 0 has not reported every candidate, nothing is screened (the finalists are not known)
    early = select(first[:2], [0.03, 0.1, 0.3, 1.0], seeds=[0, 6], top=2)
    assert early.chosen is None and set(early.pending) == {0.3, 1.0} and early.first_seed_choice is None


def test_top_larger_than_the_grid_is_the_plain_mean_over_seeds():
    trials = [Trial(v, s, 0.9 + v / 10 - s * v / 5) for v in (0.1, 0.3) for s in (0, 1)]
    assert select(trials, [0.1, 0.3], [0, 1], top=5) == select(trials, [0.1, 0.3], [0, 1])


# --- effects and interactions -----------------------------------------------------------------

AXES = ["activation", "optimizer"]
LEVELS = {"activation": ["tanh", "relu"], "optimizer": ["sgd", "adam"]}
# test error (%) per (activation, optimizer) and seed: relu helps by 2 points with SGD, 1 with Adam
# (+-0.1 seed noise); Adam helps by 4 with tanh, 3 with relu.
CELLS = {
    ("tanh", "sgd"): {0: 10.0, 1: 10.2, 2: 9.8},
    ("relu", "sgd"): {0: 8.0, 1: 8.1, 2: 7.9},
    ("tanh", "adam"): {0: 6.0, 1: 6.1, 2: 5.9},
    ("relu", "adam"): {0: 5.0, 1: 5.2, 2: 4.8},
}


def test_main_effect_averages_matched_pairs_per_seed_then_takes_a_t_interval_over_seeds():
    relu = effect(CELLS, AXES, "activation", "tanh", "relu")
    # per seed: seed 0 (-2 - 1)/2 = -1.5, seed 1 (-2.1 - 0.9)/2 = -1.5, seed 2 (-1.9 - 1.1)/2 = -1.5
    assert relu.per_seed == pytest.approx({0: -1.5, 1: -1.5, 2: -1.5})
    assert relu.interval.mean == pytest.approx(-1.5) and relu.interval.half_width == pytest.approx(0.0, abs=1e-9)
    assert relu.pairs == 6 and relu.pairs_better == 6 and relu.swap == "tanh -> relu"
    adam = effect(CELLS, AXES, "optimizer", "sgd", "adam")
    # per seed: (-4 - 3)/2 = -3.5, (-4.1 - 2.9)/2 = -3.5, (-3.9 - 3.1)/2 = -3.5
    assert adam.interval.mean == pytest.approx(-3.5)
    assert [e.swap for e in main_effects(CELLS, AXES, LEVELS)] == ["tanh -> relu", "sgd -> adam"]


def test_seed_noise_of_the_per_seed_effects_sets_the_interval():
    cells = {("a",): {0: 1.0, 1: 1.0, 2: 1.0}, ("b",): {0: 0.5, 1: 0.7, 2: 0.3}}
    found = effect(cells, ["x"], "x", "a", "b")  # -0.5, -0.3, -0.7: mean -0.5, s 0.2
    assert found.interval.mean == pytest.approx(-0.5)
    assert found.interval.half_width == pytest.approx(4.30265 * 0.2 / math.sqrt(3), abs=1e-4)


def test_interaction_table_of_a_hand_made_2x2():
    (relu_by_optimizer, adam_by_activation) = interactions(CELLS, AXES, LEVELS)
    assert relu_by_optimizer.swap.swap == "tanh -> relu" and relu_by_optimizer.by == "optimizer"
    assert (relu_by_optimizer.by_base, relu_by_optimizer.by_level) == ("sgd", "adam")
    assert relu_by_optimizer.under_base.interval.mean == pytest.approx(-2.0)  # -2, -2.1, -1.9
    assert relu_by_optimizer.under_level.interval.mean == pytest.approx(-1.0)  # -1, -0.9, -1.1
    # the difference per seed: +1, +1.2, +0.8: relu helps 1 point less under Adam
    assert relu_by_optimizer.difference.mean == pytest.approx(1.0)
    assert relu_by_optimizer.difference.half_width == pytest.approx(4.30265 * 0.2 / math.sqrt(3), abs=1e-4)
    assert adam_by_activation.under_base.interval.mean == pytest.approx(-4.0)
    assert adam_by_activation.under_level.interval.mean == pytest.approx(-3.0)
    assert adam_by_activation.difference.mean == pytest.approx(1.0)


def test_a_configuration_without_its_partner_gives_no_pairs():
    cells = {("tanh", "sgd"): {0: 10.0}, ("relu", "adam"): {0: 5.0}}
    relu = effect(cells, AXES, "activation", "tanh", "relu")
    assert relu.pairs == 0 and relu.interval.n == 0


def test_every_seed_averages_the_same_configurations_when_some_lack_a_seed():
    # relu/max lacks seed 2 (a sweep cut short): averaging seed 2 over relu/avg alone would give
    # per-seed effects -1, -1, -2, a mean of -1.33, where every complete pair says -1.
    cells = {
        ("tanh", "avg"): {0: 2.0, 1: 2.0, 2: 2.0},
        ("relu", "avg"): {0: 0.0, 1: 0.0, 2: 0.0},
        ("tanh", "max"): {0: 2.0, 1: 2.0, 2: 2.0},
        ("relu", "max"): {0: 2.0, 1: 2.0},
    }
    relu = effect(cells, ["activation", "pooling"], "activation", "tanh", "relu")
    assert relu.per_seed == pytest.approx({0: -1.0, 1: -1.0})  # both configurations on seeds 0 and 1
    assert relu.interval.mean == pytest.approx(-1.0) and relu.pairs == 4 and relu.left_out == 1
    # with most configurations complete, the incomplete one is left out instead of the seed
    cells |= {("tanh", "x"): {0: 1.0, 1: 1.0, 2: 1.0}, ("relu", "x"): {0: 0.5, 1: 0.5, 2: 0.5}}
    relu = effect(cells, ["activation", "pooling"], "activation", "tanh", "relu")
    assert sorted(relu.per_seed) == [0, 1, 2] and relu.pairs == 6 and relu.left_out == 2
    assert relu.per_seed[2] == pytest.approx((-2.0 - 0.5) / 2)


# --- a path -----------------------------------------------------------------------------------


def test_a_path_uses_the_seeds_every_step_has_so_bars_and_changes_agree():
    start, adam = path([("1998", {0: 1.0, 1: 1.2, 2: 5.0}), ("Adam", {0: 0.9, 1: 1.1})])
    assert start.level.mean == pytest.approx(1.1) and start.level.n == 2  # seed 2 left out of every step
    assert adam.change.mean == pytest.approx(-0.1) == pytest.approx(adam.level.mean - start.level.mean)


def test_path_report_on_a_hand_made_path():
    steps = [
        ("1998", {0: 1.00, 1: 1.10, 2: 0.90}),
        ("Adam", {0: 0.90, 1: 0.95, 2: 0.85}),  # -0.10, -0.15, -0.05
        ("ReLU", {0: 0.80, 1: 0.95, 2: 0.80}),  # -0.10, 0.00, -0.05
    ]
    start, adam, relu = path(steps)
    assert start.change is None and start.level.mean == pytest.approx(1.0)
    assert start.level.half_width == pytest.approx(4.30265 * 0.1 / math.sqrt(3), abs=1e-4)
    assert adam.change.mean == pytest.approx(-0.10)
    assert adam.change.half_width == pytest.approx(4.30265 * 0.05 / math.sqrt(3), abs=1e-4)
    assert relu.change.mean == pytest.approx(-0.05) and relu.from_start.mean == pytest.approx(-0.15)
    (label, hurt), (_, free) = undone({0: 0.8, 1: 0.9}, [("no Adam", {0: 1.0, 1: 1.2}), ("no ReLU", {0: 0.8, 1: 0.9})])
    assert label == "no Adam" and hurt.mean == pytest.approx(0.25) and free.mean == pytest.approx(0.0)
