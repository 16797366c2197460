"""The speed layer: exact real-time aggregates in the speed store, raw events to the landing zone.

- ``main``: the ``lambda-speed`` command: one process of the consumer group, until SIGTERM;
- ``consumer``: the poll loop: poll, cut, commit, housekeeping, and the rewind after an error;
- ``partition_guard``: each partition's cursors, the seeks to them, halts and log checks;
- ``batcher``: a partition's polled records cut into what the store and the landing zone lack;
- ``event_block``: a run of valid events as columns, the shape a batch travels in;
- ``commit_pipeline``: the store transactions in flight, settled in order, resynchronised after
  a failure, and the durable offsets committed to the group;
- ``committer`` and ``store_process``: the thread waiting for each transaction, the child
  process running it;
- ``poison``: a record the store refuses is isolated and dead-lettered, its partition goes on;
- ``store``: one transaction per batch (aggregates + dedup state + offsets), fenced;
- ``store_sql``: that transaction's statements, rendered once per dialect;
- ``store_retry``: a fenced commit is final, a transient database error re-runs the transaction;
- ``store_cursors``: each partition's stored offset and halt, and the operator's reset;
- ``housekeeping``: between polls, landing flushes, log checks, idle seals, lag and health;
- ``landing`` and ``write_behind``: durable, idempotent landing files and the progress per
  partition, written in order behind the loop;
- ``broker_clock``: a lower bound of the brokers' clock, for sealing idle partitions;
- ``dlq``: invalid records to ``transactions.dlq`` with their reason;
- ``health``, ``progress`` and ``metrics``: readiness, the watchdog, Prometheus;
- ``reset``: ``lambda-speed reset-offsets``, when the log and the stored offsets disagree.
"""
