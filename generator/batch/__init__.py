"""Batch API files: gzipped JSON lines of guest upserts and order inserts, and their schemas."""
