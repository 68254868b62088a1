"""What a sweep is: its config (the one typed source of the hyperparameter names),
search space, draws, runs as columns, data, folds, the model's layers and the
shuffle orders. Imports nothing else of tinysweep's."""
