"""Clusters a run can be sent to (Ray), as the launchers and the run database talk to them."""
