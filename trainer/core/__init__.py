"""What every stage shares: the run's config and its types, errors, paths and metric keys."""
