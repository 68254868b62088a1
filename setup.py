"""tinysweep: many tiny MLP training runs at once.

kernels/ and trainer/ install as tinysweep.kernels and tinysweep.trainer (both top-level
names belong to other PyPI packages); tinysweep/ holds only the package's front door.
torch is pinned loosely on purpose: install the CPU build first (see the Makefile), or
pip takes a multi-GB CUDA build.
"""

from setuptools import setup

setup(
    name="tinysweep",
    version="0.1.0",
    description="Train hundreds to millions of tiny MLPs at once: sweeps that say why a model does not converge",
    python_requires=">=3.10",
    packages=["tinysweep", "tinysweep.trainer", "tinysweep.kernels", "tinysweep.trainer.spec",
              "tinysweep.trainer.backends", "tinysweep.trainer.pipeline",
              "tinysweep.trainer.insight"],
    package_dir={"tinysweep": "tinysweep", "tinysweep.trainer": "trainer",
                 "tinysweep.kernels": "kernels"},
    # triton: the fused kernels (on Linux, where its wheels are; the CPU runs them only
    # under TRITON_INTERPRET=1, as the tests do); numba: the fused CPU kernels (--backend
    # numba, auto's choice on the CPU). Both are optional at run time: without them auto
    # falls back to the torch backend and their tests skip.
    install_requires=["torch>=2.4", "numpy", "pandas", "pyarrow", "pyyaml", "tqdm", "matplotlib",
                      "triton>=3.2; platform_system == 'Linux'", "numba>=0.60",
                      # plotly: only its offline bundle, plotly.min.js, inlined in report.html
                      "plotly>=5"],
    package_data={"tinysweep.trainer.insight": ["report_assets/*.js", "report_assets/*.css"]},
    # ray: --executor ray (the tests start a local instance, so they need it too); polars
    # and duckdb: the tests read results.parquet with them; lightning: the doctor's Lightning
    # callback (a 0.85 MB wheel, 7.5 s to install with its dependencies beside torch);
    # optuna: tinysweep tune; scikit-learn: tinysweep.sklearn (SweepSearchCV and the
    # single-model estimators; `import tinysweep` never imports it); tensorboard: export
    # --to tensorboard (optuna, export --to optuna, is the tune extra's); selenium: the
    # test that opens report.html in the system's Chromium
    extras_require={"ray": ["ray"], "lightning": ["lightning"], "tune": ["optuna"],
                    "sklearn": ["scikit-learn>=1.6"], "tensorboard": ["tensorboard"],
                    "test": ["pytest", "pytest-benchmark", "hypothesis", "ray", "polars",
                             "duckdb", "lightning", "optuna", "scikit-learn>=1.6", "tensorboard", "selenium"]},
    entry_points={"console_scripts": ["tinysweep = tinysweep.trainer.cli:entry"]},
)
