"""The batch layer: recompute every view from the landing zone with Spark, publish atomically.

- ``spark_job``: the PySpark application (run through ``spark-submit``), with its steps in
  ``spark_dedup`` (the dedup and its index) and ``spark_views`` (writing the views);
- ``versions``: version directories, the CURRENT pointer, publish, rollback, pruning;
- ``validate``: a version's manifest must reconcile with its views before it is published;
- ``speed_sync``: expire absorbed speed rows and measure speed-vs-batch drift;
- ``submit``: the spark-submit command line, from settings;
- ``cli``: ``lambda-batch`` to run, publish, roll back and list versions by hand.
"""
