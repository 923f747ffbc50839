"""Staff audit log (issue 23): an append-only, hash-chained record of staff acts."""
