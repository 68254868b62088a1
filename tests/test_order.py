"""Tests for tinysweep.trainer.spec.order: the per-(seed, epoch) row order every backend shares.

All of it is deterministic integer hashing, so the statistical checks below are fixed
numbers, not flaky draws.
"""

import numpy as np
import pytest

from tinysweep.trainer.spec.order import epoch_order, half_bits, permutations

SIZES = [1, 2, 3, 4, 5, 7, 8, 16, 17, 31, 64, 65, 100, 1000, 1023, 1024, 1025]
SEEDS = [0, 1, 12345, 2**32 - 1, 2**32, 2**40 + 3, 2**63 - 1]


def assert_permutation(order, n):
    order = np.asarray(order)
    assert order.shape == (n,), order.shape
    assert order.dtype == np.int64, order.dtype
    np.testing.assert_array_equal(np.sort(order), np.arange(n))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", [0, 7, 2**40 + 3, 2**63 - 1])
def test_epoch_order_is_a_permutation(n, seed):
    for epoch in (0, 1, 2, 99):
        assert_permutation(epoch_order(seed, epoch, n, shuffle=True), n)


@pytest.mark.parametrize("n", SIZES)
def test_many_epochs_are_permutations(n):
    # cycle-walking must land every position inside 0..n-1 for every key, not just a few
    k = 64
    perms = permutations(np.full(k, 3), np.arange(k), n)
    assert perms.shape == (k, n) and perms.dtype == np.int64
    np.testing.assert_array_equal(np.sort(perms, axis=1), np.broadcast_to(np.arange(n), (k, n)))


def test_one_row():
    np.testing.assert_array_equal(epoch_order(5, 3, 1, shuffle=True), [0])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 1000])
def test_no_shuffle_is_arange(n):
    for seed, epoch in [(0, 0), (9, 4), (2**63 - 1, 1)]:
        order = epoch_order(seed, epoch, n, shuffle=False)
        assert order.dtype == np.int64
        np.testing.assert_array_equal(order, np.arange(n))


@pytest.mark.parametrize("n", [5, 17, 1000, 1025])
@pytest.mark.parametrize("seed", SEEDS)
def test_deterministic(n, seed):
    a = epoch_order(seed, 11, n, shuffle=True)
    b = epoch_order(seed, 11, n, shuffle=True)
    np.testing.assert_array_equal(a, b)
    # and the same when computed among other keys
    rows = permutations([1, seed, 2], [0, 11, 5], n)
    np.testing.assert_array_equal(rows[1], a)


@pytest.mark.parametrize("n", [10, 17, 64, 100, 1000, 1025])
@pytest.mark.parametrize("seed", SEEDS)
def test_differs_across_epochs(n, seed):
    orders = {tuple(epoch_order(seed, e, n, shuffle=True)) for e in range(20)}
    assert len(orders) == 20


@pytest.mark.parametrize("n", [10, 17, 64, 100, 1000, 1025])
@pytest.mark.parametrize("epoch", [0, 1, 50])
def test_differs_across_seeds(n, epoch):
    orders = {tuple(epoch_order(s, epoch, n, shuffle=True)) for s in SEEDS}
    assert len(orders) == len(SEEDS)


def test_seeds_differing_only_in_high_bits_differ():
    n = 100
    low = epoch_order(5, 0, n, shuffle=True)
    for high in (5 + 2**32, 5 + 2**40, 5 + 2**62):
        assert not np.array_equal(low, epoch_order(high, 0, n, shuffle=True)), high


def test_shuffle_is_not_identity():
    for n in (10, 64, 1000):
        for seed in (0, 1, 2**63 - 1):
            order = epoch_order(seed, 0, n, shuffle=True)
            assert (order != np.arange(n)).sum() >= n // 2, (n, seed, order)


def test_large_seeds_work():
    for seed in (2**40 + 3, 2**63 - 1):
        for n in (1, 7, 65, 1025):
            assert_permutation(epoch_order(seed, 0, n, shuffle=True), n)
            assert_permutation(epoch_order(seed, 12345, n, shuffle=True), n)


@pytest.mark.parametrize("n", [1, 3, 8, 65, 1023])
def test_permutations_rows_equal_epoch_order(n):
    seeds = [0, 0, 1, 2**40 + 3, 2**63 - 1, 42, 42]
    epochs = [0, 1, 0, 7, 3, 100, 0]
    rows = permutations(seeds, epochs, n)
    assert rows.shape == (len(seeds), n) and rows.dtype == np.int64
    for k, (s, e) in enumerate(zip(seeds, epochs)):
        np.testing.assert_array_equal(rows[k], epoch_order(s, e, n, shuffle=True),
                                      err_msg=f"row {k}: seed {s}, epoch {e}")


def test_permutations_accepts_numpy_arrays():
    seeds = np.array([3, 4, 5], dtype=np.int64)
    epochs = np.array([0, 1, 2], dtype=np.int64)
    rows = permutations(seeds, epochs, 33)
    for k in range(3):
        np.testing.assert_array_equal(rows[k], epoch_order(int(seeds[k]), int(epochs[k]), 33, True))


def test_row_zero_position_is_spread():
    # Over 2000 epochs at n = 8, row 0 should land at each position about 250 times.
    n, k = 8, 2000
    for seed in (0, 1, 2**63 - 1):
        perms = permutations(np.full(k, seed), np.arange(k), n)
        position = np.argmax(perms == 0, axis=1)
        hits = np.bincount(position, minlength=n)
        assert ((hits >= 150) & (hits <= 350)).all(), (seed, hits)
        # and the first visited row is spread too
        first = np.bincount(perms[:, 0], minlength=n)
        assert ((first >= 150) & (first <= 350)).all(), (seed, first)


def test_position_row_matrix_is_spread_at_n_1000():
    # Over 400 epochs at n = 1000, no (position -> row) pair repeats much and the mean row at
    # each position is near the middle: a guard against an order close to the identity.
    n, k = 1000, 400
    perms = permutations(np.full(k, 17), np.arange(k), n)
    mean_row = perms.mean(axis=0)
    assert np.abs(mean_row - (n - 1) / 2).max() < 120, np.abs(mean_row - (n - 1) / 2).max()
    fixed_points = (perms == np.arange(n)).sum(axis=1)
    assert fixed_points.mean() < 3, fixed_points.mean()


@pytest.mark.parametrize("n, half", [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (16, 2), (17, 3),
                                     (64, 3), (65, 4), (1000, 5), (1024, 5), (1025, 6)])
def test_half_bits_domain_covers_n_and_is_small(n, half):
    assert half_bits(n) == half
    assert 2 ** (2 * half) >= n
    assert 2 ** (2 * half) < 4 * max(n, 2)
