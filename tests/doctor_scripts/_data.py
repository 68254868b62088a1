"""Small seeded data sets for the doctor's benchmark scripts (a few hundred rows each)."""

import torch


def blobs(n=300, classes=3, features=2, seed=0):
    """Class indices [n] and standardized features [n, features]: Gaussian blobs."""
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, features, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, features, generator=g)
    return (x - x.mean(0)) / x.std(0), y


def binary(n=300, features=2, seed=0):
    """Labels {0., 1.} [n, 1] from a noisy linear rule, standardized features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = ((x.sum(1) + 0.3 * torch.randn(n, generator=g)) > 0).float().unsqueeze(1)
    return x, y


def regression(n=300, features=3, seed=0):
    """y [n, 1] = sin(x @ w) + noise, standardized features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    w = torch.randn(features, 1, generator=g)
    return x, torch.sin(x @ w) + 0.05 * torch.randn(n, 1, generator=g)


def split(x, y, val=0.25, seed=0):
    """A seeded random split: (x_train, y_train, x_val, y_val)."""
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    k = int(len(x) * val)
    return x[perm[k:]], y[perm[k:]], x[perm[:k]], y[perm[:k]]
