"""Diabetes progression, a regression: scaled features and target around a grid search
whose candidates and folds train in one tinysweep sweep, then one model on its own.

    pip install 'tinysweep[sklearn]'
    python examples/diabetes_regression.py      # a few seconds on a 2-core CPU
"""

from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes
from sklearn.model_selection import KFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tinysweep.sklearn import MLPRegressor, SweepSearchCV

X, y = load_diabetes(return_X_y=True)       # 442 rows, 10 features; y from 25 to 346
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

# The target's values are whole numbers, which scikit-learn's type_of_target reads as
# class labels: say loss="mse". A wide-ranging target trains better scaled.
search = SweepSearchCV(
    {"lr": [1e-3, 3e-3, 1e-2], "hidden": [(8,), (32,)], "weight_decay": [0.0, 0.1]},
    cv=KFold(5, shuffle=True, random_state=0), loss="mse", optimizer="adamw",
    epochs=100, seeds=3)                      # 12 candidates x 5 folds x 3 seeds: 180 runs
model = TransformedTargetRegressor(make_pipeline(StandardScaler(), search),
                                   transformer=StandardScaler())
model.fit(X_train, y_train)

search = model.regressor_[-1]
print(f"best: {search.best_params_}, mean CV R² {search.best_score_:.3f}")
print(f"held-out R² {model.score(X_test, y_test):.3f} (a linear RidgeCV: 0.369 on this split)")

# One model alone, scored by scikit-learn's cross_val_score (5 separate fits).
one = TransformedTargetRegressor(
    make_pipeline(StandardScaler(), MLPRegressor(hidden=(8,), lr=3e-3, epochs=100)),
    transformer=StandardScaler())
scores = cross_val_score(one, X_train, y_train, cv=KFold(5, shuffle=True, random_state=0))
print(f"MLPRegressor(hidden=(8,), lr=3e-3): CV R² {scores.mean():.3f} ± {scores.std():.3f}")
