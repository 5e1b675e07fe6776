"""Data loading, training, evaluation and leaderboards for 3DIEBench-style datasets."""
