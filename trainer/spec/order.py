"""The order in which a run visits the training rows: the same on every backend.

A shuffled run visits, in epoch ``e``, the rows in the order of a pseudo-random permutation
of ``0..n-1`` that depends only on (run seed, epoch). It is counter-based: position ``p``
maps to row ``perm(p)`` through a 4-round Feistel network on the smallest even number of bits
that covers ``n``, with cycle-walking (re-apply until the value is < n). A GPU kernel can
compute any position's row on the fly from a few 32-bit integer operations, with no table
and no sequential random state; here it is computed for all positions at once with numpy.

Round keys and the round function use ``mix32``, a 32-bit integer hash (the "lowbias32"
constants from Chris Wellons' hash-prospector). All arithmetic is modulo 2**32.
"""

from __future__ import annotations

import numpy as np

MASK32 = np.uint64(0xFFFFFFFF)
ROUNDS = 4
_GOLDEN = 0x9E3779B9


def mix32(x: np.ndarray) -> np.ndarray:
    """A 32-bit integer hash of uint64 arrays holding values < 2**32."""
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & MASK32
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & MASK32
    return x ^ (x >> np.uint64(16))


def round_keys(seeds: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """Feistel round keys of each (seed, epoch) pair: uint64 array [K, ROUNDS] of 32-bit values.

    seeds, epochs: integer arrays [K].
    """
    seeds = np.asarray(seeds, dtype=np.uint64)
    epochs = np.asarray(epochs, dtype=np.uint64)
    h = mix32((seeds & MASK32) ^ np.uint64(0x243F6A88))
    h = mix32(h ^ (seeds >> np.uint64(32)))
    h = mix32(h ^ (epochs & MASK32))
    rounds = np.arange(1, ROUNDS + 1, dtype=np.uint64)
    return mix32(h[:, None] ^ ((rounds * np.uint64(_GOLDEN)) & MASK32))


def half_bits(n: int) -> int:
    """Bits in each Feistel half: the domain 2**(2*half) is the smallest even power >= n."""
    return max(1, (max(n, 2) - 1).bit_length() + 1) // 2


def feistel(x: np.ndarray, keys: np.ndarray, half: int) -> np.ndarray:
    """One pass of the Feistel permutation of ``0..2**(2*half)-1``.

    x: uint64 [K, m]; keys: uint64 [K, ROUNDS], one row of keys per row of x.
    """
    lo_mask = np.uint64((1 << half) - 1)
    left, right = x >> np.uint64(half), x & lo_mask
    for r in range(keys.shape[1]):
        left, right = right, left ^ (mix32(right ^ keys[:, r:r + 1]) & lo_mask)
    return (left << np.uint64(half)) | right


def permutations(seeds, epochs, n: int) -> np.ndarray:
    """Row orders of shuffled epochs: int64 array [K, n]; row k is a permutation of 0..n-1
    that depends only on (seeds[k], epochs[k])."""
    keys, half = round_keys(seeds, epochs), half_bits(n)
    x = np.broadcast_to(np.arange(n, dtype=np.uint64), (len(keys), n)).copy()
    x = feistel(x, keys, half)
    outside = x >= n
    while outside.any():   # cycle-walking: a few passes at most, as the domain is < 4n
        x = np.where(outside, feistel(x, keys, half), x)
        outside = x >= n
    return x.astype(np.int64)


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool) -> np.ndarray:
    """Row order of one epoch: int64 array [n]; the identity when not shuffled."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return permutations([seed], [epoch], n)[0]
