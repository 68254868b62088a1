"""The user's world: config, data, backends, results and the command line."""
