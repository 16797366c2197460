"""The serving layer: FastAPI answers by merging the batch views with the speed views.

- ``main`` builds the app; ``routes``: one router per resource; ``deps``: what a request gets;
- ``version_switch`` and ``snapshot_cache``: the batch version served, loaded and warmed off
  the request path, and the consistency check of each answer against CURRENT and the speed
  floor;
- ``batch_store`` (DuckDB), ``batch_cache`` and ``key_index``: rows of a batch view;
- ``speed_store``: rows of a speed view (compiled SQL on pooled connections);
- ``queries``, ``row_query`` and ``merge``: what a route asks, and the pure merge and roll-up,
  derived from the view declarations;
- ``watermark``, ``kafka_lag``: how fresh the answers are; ``metrics``: Prometheus;
- ``schemas`` and ``timeparse``: the API's response models and time parameters.
"""
