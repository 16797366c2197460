"""How Spark names the store's objects, and what it needs to reach S3.

Landing files are keys in the storage contract; Spark (Hadoop) reads them by URI: a local
path on the default backend, ``s3a://bucket/prefix/key`` on S3. The same URI names a file in a
version's manifest (``input_files``), which compaction reads to keep files a version needs.
"""

from __future__ import annotations

from pathlib import Path

from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from lambda_contracts.storage import LocalStore, parse_s3_url

S3A_JARS = ("hadoop-aws-*.jar", "bundle-*.jar", "analyticsaccelerator-s3-*.jar")


def spark_uri(layout: Layout, key: str) -> str:
    """The URI Spark reads (or writes) an object, or a prefix given without its slash, by."""
    if isinstance(layout.store, LocalStore):
        return layout.store.path(key)
    return f"s3a://{layout.store.path(key)}"


class S3AJarsMissing(RuntimeError):
    """Spark cannot read s3:// without hadoop-aws and the AWS SDK bundle."""


def s3a_jars(settings: Settings) -> list[Path]:
    """The jars that give Spark the s3a filesystem, fetched once into ``spark_s3a_jars``."""
    found = [next(iter(sorted(settings.spark_s3a_jars.glob(p))), None) for p in S3A_JARS]
    if any(j is None for j in found):
        raise S3AJarsMissing(
            f"hadoop-aws and the AWS SDK bundle are not in {settings.spark_s3a_jars}: run "
            "`make s3a-jars` once"
        )
    return [j for j in found if j is not None]


def s3a_conf(settings: Settings) -> dict[str, str]:
    """Spark settings for the master dataset on S3 (none on the local default).

    Credentials are not passed here: hadoop-aws reads AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY (and the rest of the AWS chain) from the job's environment.
    """
    if settings.storage_url is None:
        return {}
    location = parse_s3_url(settings.storage_url)
    bucket = f"spark.hadoop.fs.s3a.bucket.{location.bucket}"
    classpath = ":".join(str(j) for j in s3a_jars(settings))
    conf = {
        # On the class path of the driver and of each executor, read where the jars are on
        # every Spark host (`make s3a-jars` here; the image's /opt/spark-s3a in compose and
        # the cluster's hosts). Shipping them with `spark.jars` instead copied the 640 MB
        # into a temporary directory per application (and per executor) at every run, and
        # a killed JVM left its copy behind.
        "spark.driver.extraClassPath": classpath,
        "spark.executor.extraClassPath": classpath,
        f"{bucket}.endpoint.region": settings.s3_region,
        # Landing files are written once and never appended: no need for the input
        # stream's change detection to re-check every read.
        "spark.hadoop.fs.s3a.change.detection.mode": "none",
    }
    if settings.s3_endpoint:
        conf[f"{bucket}.endpoint"] = settings.s3_endpoint
        conf[f"{bucket}.path.style.access"] = "true"
        conf[f"{bucket}.connection.ssl.enabled"] = str(
            settings.s3_endpoint.startswith("https")
        ).lower()
    return conf
