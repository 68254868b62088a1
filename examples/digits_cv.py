"""Handwritten digits, scikit-learn's way: a grid search with 5-fold cross-validation in
which every candidate, fold and seed trains at once, in one tinysweep sweep.

    pip install 'tinysweep[sklearn]'
    python examples/digits_cv.py            # about 10 s on a 2-core CPU (numba backend)
"""

import pandas as pd
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from tinysweep.sklearn import SweepSearchCV

X, y = load_digits(return_X_y=True)          # 1,797 rows of 8x8 pixels (0..16), 10 classes
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y,
                                                    random_state=0)

search = SweepSearchCV(
    {"lr": [1e-3, 3e-3, 1e-2], "hidden": [(16,), (32,)], "batch_size": [32, 128]},
    cv=5,            # StratifiedKFold(5), as GridSearchCV's cv=5
    seeds=2,         # each candidate trains twice per fold; a split scores their mean
    epochs=30)       # 12 candidates x 5 folds x 2 seeds = 120 runs, one sweep
search.fit(X_train, y_train)

table = pd.DataFrame(search.cv_results_)
print(table.sort_values("rank_test_score")[
    ["param_lr", "param_hidden", "param_batch_size", "mean_test_score", "std_test_score",
     "rank_test_score"]].head(6).to_string(index=False))
print(f"\nbest: {search.best_params_}, mean CV accuracy {search.best_score_:.3f}")
print(f"refitted on all {len(X_train)} training rows (seed {search.best_estimator_.seed}): "
      f"held-out accuracy {search.score(X_test, y_test):.3f}")

# The sweep behind it, as tinysweep sees it: one row per setting over its 10 replicates
# (5 folds x 2 seeds), with a 95% interval; rank 1 marks those within noise of the best.
summary = search.results_.summary(metric="final_val_accuracy")
print("\n" + summary[["lr", "hidden", "batch_size", "n", "final_val_accuracy_mean",
                      "final_val_accuracy_ci_low", "final_val_accuracy_ci_high",
                      "rank"]].head(4).to_string(index=False))
