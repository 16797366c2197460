"""The serving layer: FastAPI answers by merging the batch views with the speed views.

- ``snapshot``: one consistent read per request (CURRENT once, then both stores);
- ``batch_store`` (DuckDB) and ``speed_store`` (SQLAlchemy) fetch rows of a view;
- ``merge``: the pure merge and roll-up, derived from the view declarations;
- ``routes``: one router per resource; ``main`` builds the app.
"""
