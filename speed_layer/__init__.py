"""The speed layer: exact real-time aggregates in the speed store, raw events to the landing zone.

- ``main``: the ``lambda-speed`` command: one process of the consumer group, until SIGTERM;
- ``consumer``: the poll loop: guard the cursors, cut each poll batch, commit it, housekeeping;
- ``event_block``: a run of valid events as columns, the shape a batch travels in;
- ``poison``: a record the store refuses is isolated and dead-lettered, its partition goes on;
- ``committer`` and ``store_process``: the store's transactions in flight, in a child process;
- ``store``: one transaction per batch (aggregates + dedup state + offsets), fenced;
- ``landing`` and ``write_behind``: durable, idempotent landing files and the progress per
  partition, written in order behind the loop;
- ``broker_clock``: a lower bound of the brokers' clock, for sealing idle partitions;
- ``dlq``: invalid records to ``transactions.dlq`` with their reason;
- ``health``, ``progress`` and ``metrics``: readiness, the watchdog, Prometheus;
- ``reset``: ``lambda-speed reset-offsets``, when the log and the stored offsets disagree.
"""
