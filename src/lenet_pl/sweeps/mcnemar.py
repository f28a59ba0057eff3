"""Two trained networks compared digit by digit on the same test set: McNemar's test, and over seeds.

On a 10,000-digit test set at 99% accuracy, one accuracy has a sampling sd of ~0.1 points, the
size of the effects a sweep looks for. Two networks tested on the same digits agree on most of
them, and only the digits one gets right and the other wrong say anything about which is better:
b (A right, B wrong) and c (A wrong, B right). McNemar's exact test asks whether b and c could be
a fair coin's split of b + c; the difference in error rates, B - A, is (b - c) / n.

All proportions here are fractions of the test set (0.0012 is 0.12 points of error).

What a per-digit test says, and what it does not: it compares two *trained networks* on this test
set. It knows nothing of how much another training seed would move either network, so a tiny p
for one seed is not evidence that the configurations differ. Over several seeds, `over_seeds`
reports McNemar per seed and, for the configurations, the mean over seeds of the per-seed error
difference with the t-interval over seeds, which does contain the training noise. Pooling the
digit-seed pairs of all seeds into one table would not be valid: the same digits recur in every
seed, and the hard ones are hard for every seed (their discordance is correlated across seeds),
so 3 x 10,000 pairs are far from 30,000 independent ones, and the pooled test would still ignore
the seed-to-seed variation of the networks themselves.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from lenet_pl.sweeps.stats import CONFIDENCE, Interval, t_interval


@dataclass(frozen=True)
class McNemar:
    """The paired 2x2 table of two networks' right and wrong on the same digits, and the test of b against c."""

    both_right: int
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    both_wrong: int
    p_value: float  # exact two-sided: binomial test of b against b + c at 1/2
    low: float  # Newcombe's square-and-add interval for `difference`
    high: float
    confidence: float = CONFIDENCE

    @property
    def n(self) -> int:
        return self.both_right + self.b + self.c + self.both_wrong

    @property
    def error_a(self) -> float:
        return (self.c + self.both_wrong) / self.n

    @property
    def error_b(self) -> float:
        return (self.b + self.both_wrong) / self.n

    @property
    def difference(self) -> float:
        """error_b - error_a = (b - c) / n: negative when B makes fewer errors."""
        return (self.b - self.c) / self.n


def mcnemar_table(both_right: int, b: int, c: int, both_wrong: int, confidence: float = CONFIDENCE) -> McNemar:
    """McNemar's exact test and Newcombe's interval from the four counts of the paired table.

    The p-value is scipy's exact two-sided binomial test of b successes in b + c trials at 1/2
    (1 when b + c = 0), the same as McNemar's exact (conditional) test.

    The interval for error_b - error_a is Newcombe's (1998) square-and-add ("method 10"): Wilson
    score intervals for the two error rates, combined with the correlation of the paired table
    (phi, with Newcombe's continuity correction of its numerator). Unlike the Wald interval
    (b - c)/n +- z sqrt(b + c - (b - c)^2/n) / n, it does not shrink to nothing when b and c are
    small, and it stays within [-1, 1]; with hundreds of discordant digits the two agree.
    """
    counts = (both_right, b, c, both_wrong)
    if any(v < 0 for v in counts) or sum(counts) == 0:
        raise ValueError(f"the paired table needs counts of at least 0, not all 0: got {counts}")
    p_value = float(scipy_stats.binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    low, high = _newcombe(both_right, b, c, both_wrong, confidence)
    return McNemar(both_right, b, c, both_wrong, p_value, low, high, confidence)


def mcnemar(
    predicted_a: np.ndarray, predicted_b: np.ndarray, labels: np.ndarray, confidence: float = CONFIDENCE
) -> McNemar:
    """Compare two networks' predicted labels on the same digits (`labels` in the same order)."""
    predicted_a, predicted_b, labels = (np.asarray(v).ravel() for v in (predicted_a, predicted_b, labels))
    if not len(labels) == len(predicted_a) == len(predicted_b):
        raise ValueError(
            f"predictions of {len(predicted_a)} and {len(predicted_b)} digits cannot be paired on {len(labels)} labels"
        )
    right_a, right_b = predicted_a == labels, predicted_b == labels
    return mcnemar_table(
        int(np.sum(right_a & right_b)),
        int(np.sum(right_a & ~right_b)),
        int(np.sum(~right_a & right_b)),
        int(np.sum(~right_a & ~right_b)),
        confidence,
    )


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval for a proportion, without continuity correction."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _newcombe(both_right: int, b: int, c: int, both_wrong: int, confidence: float) -> tuple[float, float]:
    """Newcombe's square-and-add interval for error_b - error_a (Newcombe 1998, Stat Med 17:2635, method 10)."""
    n = both_right + b + c + both_wrong
    z = float(scipy_stats.norm.ppf((1 + confidence) / 2))
    wrong_b, wrong_a = b + both_wrong, c + both_wrong
    p1, p2 = wrong_b / n, wrong_a / n
    l1, u1 = _wilson(wrong_b, n, z)
    l2, u2 = _wilson(wrong_a, n, z)
    margins = wrong_b * (n - wrong_b) * wrong_a * (n - wrong_a)
    phi = 0.0
    if margins:
        # ad - bc of the table of (B wrong?, A wrong?): both wrong x both right - B only wrong x A only wrong
        cross = both_wrong * both_right - b * c
        corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
        phi = corrected / math.sqrt(margins)
    d = p1 - p2
    low = d - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = d + math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return low, high


@dataclass(frozen=True)
class OverSeeds:
    """Configuration B against A over seeds: each seed's McNemar table, and the seed-level mean difference."""

    per_seed: dict[int, McNemar]
    difference: Interval  # over seeds, of error_b - error_a: the t-interval on (seeds - 1) degrees of freedom


def over_seeds(
    predicted_a: Mapping[int, np.ndarray],
    predicted_b: Mapping[int, np.ndarray],
    labels: np.ndarray,
    confidence: float = CONFIDENCE,
) -> OverSeeds:
    """Per seed, McNemar's test of B's network against A's; over seeds, the mean error difference.

    The seeds both configurations have are paired (A's seed s against B's seed s, as the
    factorial's seed blocks pair them). The per-seed tables answer "do these two trained networks
    differ on this test set?"; `difference` answers "does the configuration change the error?",
    with the seed-to-seed noise of training in its interval (see the module's docstring for why
    the digits of different seeds are not pooled). With one seed there is no seed-level interval.
    """
    seeds = sorted(predicted_a.keys() & predicted_b.keys())
    per_seed = {seed: mcnemar(predicted_a[seed], predicted_b[seed], labels, confidence) for seed in seeds}
    return OverSeeds(per_seed, t_interval([per_seed[s].difference for s in seeds], confidence))
