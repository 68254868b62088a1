# Source on a machine with no package registry (the lent GPU machines): makes the checkout
# importable as tinysweep without pip, by linking the package layout setup.py declares.
mkdir -p /tmp/tinysweep_path/tinysweep
for f in tinysweep/*.py; do ln -sf "$PWD/$f" /tmp/tinysweep_path/tinysweep/; done
ln -sfn "$PWD/trainer" /tmp/tinysweep_path/tinysweep/trainer
ln -sfn "$PWD/kernels" /tmp/tinysweep_path/tinysweep/kernels
export PYTHONPATH=/tmp/tinysweep_path${PYTHONPATH:+:$PYTHONPATH}
