"""Livepeer's leaderboard API on our lake: the Stats contract, how a run maps onto it, the scores."""
