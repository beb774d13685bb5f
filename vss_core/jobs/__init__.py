"""Background jobs: the registry and its snapshots, the job board in Redis, and RQ runners and workers."""
