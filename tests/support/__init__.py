"""Test support: real services (Kafka, PostgreSQL) for the tests, ground-truth helpers, and the
helpers test modules share (a test module imports them from here, never from another test)."""
