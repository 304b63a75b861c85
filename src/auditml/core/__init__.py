"""Pure code over bytes and values: no database, file, clock, subprocess or network access."""
