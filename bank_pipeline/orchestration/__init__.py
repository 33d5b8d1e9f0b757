"""Dagster wiring: partitions, resources, assets, checks, jobs, schedules and sensors."""
