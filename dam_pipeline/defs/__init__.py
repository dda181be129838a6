"""The Dagster layer: assets, partitions, resources, jobs. Thin: the work is in the domain."""
