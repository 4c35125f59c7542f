"""The sandbox Alida server that tests, the demo and benchmarks run against."""
