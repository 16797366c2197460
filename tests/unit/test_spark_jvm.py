"""Which JDK a Spark job runs on and when its driver starts from an AOT cache
(``batch_layer.jvm``), over fake JDK homes: a directory with ``bin/java`` and a ``release``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from batch_layer import jvm, jvm_training
from batch_layer.submit import spark_conf, spark_env
from lambda_contracts.settings import Settings


def fake_jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").touch()
    (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    return home


@pytest.fixture
def jdks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A JVM directory holding 17, 21, a deprecated 25, a supported 25 and an unsupported 26;
    no JAVA_HOME and no java on PATH."""
    root = tmp_path / "jvm"
    for name, version in [
        ("jdk-17", "17.0.15"),
        ("jdk-21", "21.0.4"),
        ("jdk-25-early", "25.0.2"),
        ("jdk-25", "25.0.3"),
        ("jdk-26", "26.0.1"),
    ]:
        fake_jdk(root, name, version)
    monkeypatch.setattr(jvm, "JVM_DIRS", (root,))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    return root


def test_a_release_file_gives_the_version_and_a_home_without_java_has_none(tmp_path: Path) -> None:
    assert jvm.jdk_version(fake_jdk(tmp_path, "a", "25.0.3")) == (25, 0, 3)
    assert jvm.jdk_version(fake_jdk(tmp_path, "b", "17")) == (17, 0, 0)
    (tmp_path / "b" / "bin" / "java").unlink()
    assert jvm.jdk_version(tmp_path / "b") is None
    assert jvm.jdk_version(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        ((11, 0, 2), False),
        ((17, 0, 1), True),
        ((21, 0, 0), True),
        ((23, 0, 1), False),
        ((25, 0, 2), False),
        ((25, 0, 3), True),
        ((25, 1, 0), True),
        ((26, 0, 0), False),
    ],
)
def test_spark_supports_java_17_21_and_25_from_25_0_3(
    version: tuple[int, int, int], supported: bool
) -> None:
    assert jvm.spark_supports(version) is supported


def test_a_local_job_runs_on_the_newest_supported_jdk(jdks: Path) -> None:
    assert jvm.spark_java_home(Settings()) == (jdks / "jdk-25").resolve()
    assert spark_env(Settings())["JAVA_HOME"] == str((jdks / "jdk-25").resolve())


def test_the_setting_wins_and_a_cluster_keeps_the_environment_jdk(jdks: Path) -> None:
    chosen = jdks / "jdk-17"
    assert jvm.spark_java_home(Settings(spark_java_home=chosen)) == chosen
    cluster = Settings(spark_master="spark://spark-master:7077")
    assert jvm.spark_java_home(cluster) is None  # executors elsewhere must run the same JDK
    assert "JAVA_HOME" not in spark_env(cluster)
    assert jvm.aot_cache(cluster) is None


def test_the_driver_starts_from_an_aot_cache_only_once_one_is_trained(
    jdks: Path, tmp_path: Path
) -> None:
    settings = Settings(spark_jvm_cache_dir=tmp_path / "cache")
    cache = jvm.aot_cache(settings)
    assert cache is not None and "jdk-25.0.3" in cache.name
    options = spark_conf(settings)["spark.driver.extraJavaOptions"]
    assert "AOTCache" not in options and "-XX:+UseG1GC" in options
    cache.parent.mkdir()
    cache.touch()
    assert f"-XX:AOTCache={cache}" in spark_conf(settings)["spark.driver.extraJavaOptions"]
    # another driver class path (the s3a jars) is another cache, not trained yet
    assert jvm.aot_cache(settings, "/jars/hadoop-aws.jar") != cache
    assert "AOTCache" not in jvm.driver_java_options(settings, "/jars/hadoop-aws.jar")


def test_another_checkouts_spark_jars_are_another_cache(
    jdks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache trained by another virtualenv names other jar paths: the JVM would refuse it."""
    settings = Settings(spark_jvm_cache_dir=tmp_path)
    here = jvm.aot_cache(settings)
    assert jvm.spark_jars().endswith("pyspark/jars") and Path(jvm.spark_jars()).is_dir()
    monkeypatch.setattr(jvm, "spark_jars", lambda: "/elsewhere/.venv/pyspark/jars")
    assert jvm.aot_cache(settings) != here


def test_jars_installed_again_at_the_same_path_are_another_cache(
    jdks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JVM checks each jar's size and mtime: a cache of the jars before a reinstall at the
    same path fails with "Unable to use AOT cache" (seen in CI), so it must not be chosen."""
    jars = tmp_path / "jars"
    jars.mkdir()
    for name in ("spark-core.jar", "spark-sql.jar"):
        (jars / name).write_bytes(b"jar")
    monkeypatch.setattr(jvm, "spark_jars", lambda: str(jars))
    settings = Settings(spark_jvm_cache_dir=tmp_path / "cache")
    before = jvm.aot_cache(settings)
    assert jvm.aot_cache(settings) == before  # stable while nothing changes
    os.utime(jars / "spark-core.jar", ns=(0, 1_000_000_000))
    reinstalled = jvm.aot_cache(settings)
    assert reinstalled != before
    (jars / "spark-sql.jar").write_bytes(b"another jar")
    assert jvm.aot_cache(settings) not in (before, reinstalled)
    extra = tmp_path / "hadoop-aws.jar"
    extra.write_bytes(b"aws")
    with_extra = jvm.aot_cache(settings, str(extra))
    os.utime(extra, ns=(0, 2_000_000_000))
    assert jvm.aot_cache(settings, str(extra)) != with_extra


def test_no_aot_cache_on_a_jdk_that_has_none(jdks: Path, tmp_path: Path) -> None:
    settings = Settings(spark_java_home=jdks / "jdk-21", spark_jvm_cache_dir=tmp_path)
    assert jvm.aot_cache(settings) is None
    assert jvm_training.train(settings) is None
    assert spark_conf(settings)["spark.driver.extraJavaOptions"] == "-XX:+UseG1GC"


def test_prune_keeps_the_newest_caches_and_removes_old_partial_files(tmp_path: Path) -> None:
    now = time.time()
    ages_s = {"a.aot": 10, "b.aot": 20, "c.aot": 30, "d.aot": 40, ".e.aot.1": 7200, ".f.aot.2": 60}
    for name, age in ages_s.items():
        (tmp_path / name).touch()
        os.utime(tmp_path / name, (now - age, now - age))
    jvm.prune(tmp_path, keep=2, partial_after_s=3600)
    # the two newest caches, and the partial file of a training that may still be running
    assert sorted(p.name for p in tmp_path.iterdir()) == [".f.aot.2", "a.aot", "b.aot"]
