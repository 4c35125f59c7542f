"""Batch exports: status words, the API calls, download, files, jobs."""
