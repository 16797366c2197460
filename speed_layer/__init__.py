"""The speed layer: exact real-time aggregates in the speed store, raw events to the landing zone.

- ``consumer``: the poll loop and the consumer-group wiring (when it runs: always; a failure
  stops the process, and a restart resumes exactly from the stored offsets);
- ``aggregation``: dedup and folding of a poll batch, derived from the view declarations;
- ``store``: one transaction per batch (aggregates + dedup state + offsets);
- ``landing``: durable, idempotent landing files and the per-partition progress;
- ``dlq``: invalid records to ``transactions.dlq`` with their reason.
"""
