"""A dataset on disk: writing it (sorted, sharded, merged), its manifest, reading, validating."""
