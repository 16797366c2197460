"""Which JDK a local Spark job runs on, and the ahead-of-time cache its JVM starts from.

A rebuild's JVM spends its first seconds loading and linking Spark's classes and running them
interpreted. JDK 25 can start from an AOT cache (JEP 483, 514, 515) that a training run of the
same job wrote: Spark's classes already parsed and linked, and their methods' profiles, so
the JIT compiles the hot ones sooner. In three alternating pairs a 10M-event rebuild took
59.3 / 54.2 / 63.5 s on JDK 17 and 46.2 / 49.6 / 50.3 s on JDK 25 with a cache; JDK 25
without one was in between (``bench/README.md``).

Spark 4.2+ runs on Java 17, 21 and 25 (25 from 25.0.3). For a local master (the whole job is
one JVM) the job runs on the newest supported JDK found, unless ``LAMBDA_SPARK_JAVA_HOME``
names one; on a cluster the driver keeps the environment's JDK, which must match the
executors', unless that setting says otherwise. The cache is only valid for the JDK build
and the class path it was trained with (Spark's version, where its jars are, the driver's
extra class path), so they are in its file name; a JVM that cannot use a cache anyway (another
build of the JDK) says so on stderr and runs without it. The JVM also checks each jar's size
and modification time, so they are in the name too: a virtualenv installed again at the same
path trains a cache of its own.

``python -m batch_layer.jvm_training`` trains the cache once per machine (``make`` does,
before ``up``, ``test`` and ``bench``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from importlib.metadata import version as package_version
from importlib.util import find_spec
from pathlib import Path

from lambda_contracts.settings import Settings

JdkVersion = tuple[int, int, int]
JVM_DIRS = (Path("/usr/lib/jvm"), Path("/opt/java"))  # where Linux distributions and images
# put JDKs (Debian, Ubuntu, Fedora; the Temurin images' /opt/java/openjdk)
AOT_FROM: JdkVersion = (25, 0, 3)  # the first JDK Spark supports that reads an AOT cache
SUPPORTED_MAJORS = (17, 21, 25)
GC_OPTIONS = "-XX:+UseG1GC"
RELEASE_VERSION = re.compile(r'^JAVA_VERSION="(\d+)(?:\.(\d+))?(?:\.(\d+))?', re.MULTILINE)
KEEP_CACHES = 3


def jdk_version(home: Path) -> JdkVersion | None:
    """The version a JDK's ``release`` file states (``JAVA_VERSION="25.0.3"``), if any."""
    try:
        found = RELEASE_VERSION.search((home / "release").read_text())
    except OSError:
        return None
    if found is None or not (home / "bin" / "java").exists():
        return None
    major, minor, patch = (int(part or 0) for part in found.groups())
    return major, minor, patch


def spark_supports(version: JdkVersion) -> bool:
    """Java 17, 21 and 25.0.3+ (Spark 4.2's documented range; earlier 25s are deprecated)."""
    return version[0] in SUPPORTED_MAJORS and (version[0] != 25 or version >= AOT_FROM)


def installed_jdks() -> dict[Path, JdkVersion]:
    """The JDKs in ``JAVA_HOME``, behind ``java`` on PATH and in the usual directories."""
    homes = [Path(p) for p in (os.environ.get("JAVA_HOME"),) if p]
    on_path = shutil.which("java")
    if on_path:
        homes.append(Path(on_path).resolve().parent.parent)
    homes += [p for d in JVM_DIRS if d.is_dir() for p in sorted(d.iterdir())]
    found = {home.resolve(): jdk_version(home) for home in homes}
    return {home: v for home, v in found.items() if v is not None}


def spark_java_home(settings: Settings) -> Path | None:
    """The JDK the job runs on: the setting, else (local master only) the newest supported
    one installed; None keeps the environment's."""
    if settings.spark_java_home is not None:
        return settings.spark_java_home
    if not settings.spark_runs_locally:
        return None
    supported = {h: v for h, v in installed_jdks().items() if spark_supports(v)}
    return max(supported, key=lambda h: supported[h]) if supported else None


def aot_cache(settings: Settings, extra_class_path: str = "") -> Path | None:
    """Where the AOT cache of this JDK, this Spark and this driver class path lives (None on
    a JDK without AOT caches, or when the JDK is the environment's and unknown here)."""
    home = spark_java_home(settings)
    found = jdk_version(home) if home else None
    if found is None or found < AOT_FROM:
        return None
    jdk = ".".join(map(str, found))
    class_path = hashlib.sha256(class_path_identity(extra_class_path).encode()).hexdigest()[:12]
    name = f"spark-{package_version('pyspark')}-jdk-{jdk}-{class_path}.aot"
    return settings.spark_jvm_cache_dir / name


def class_path_identity(extra_class_path: str = "") -> str:
    """Every jar of the driver's class path with its size and modification time. The JVM
    refuses a cache whose jars are not the very files it was trained with: a virtualenv
    installed again at the same path (same jars, new mtimes) needs a cache of its own."""
    jars_dir = spark_jars()
    jars = sorted(Path(jars_dir).glob("*.jar")) if jars_dir else []
    jars += [Path(entry) for entry in extra_class_path.split(":") if entry]
    return "\n".join([jars_dir, *(f"{jar}:{file_stamp(jar)}" for jar in jars)])


def file_stamp(path: Path) -> str:
    """A file's size and modification time; "-" for one that is missing."""
    try:
        st = path.stat()
    except OSError:
        return "-"
    return f"{st.st_size}:{st.st_mtime_ns}"


def spark_jars() -> str:
    """Where this environment's Spark jars are: a cache is trained for one class path, and
    two checkouts (two virtualenvs) of one Spark version have two."""
    spec = find_spec("pyspark")
    locations = spec.submodule_search_locations if spec else None
    return str(Path(next(iter(locations)), "jars")) if locations else ""


def driver_java_options(settings: Settings, extra_class_path: str = "") -> str:
    """The driver JVM's options: G1, and the AOT cache when one was trained for it."""
    cache = aot_cache(settings, extra_class_path)
    if cache is not None and cache.is_file():
        return f"{GC_OPTIONS} -XX:AOTCache={cache}"
    return GC_OPTIONS


def prune(cache_dir: Path, keep: int = KEEP_CACHES, partial_after_s: float = 3600) -> None:
    """Remove all but the ``keep`` newest caches (each checkout or JDK update trains one, of
    200 MB), and the partial files of training runs killed over an hour ago. A running JVM
    keeps a removed cache mapped."""
    caches = sorted(cache_dir.glob("*.aot"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in caches[keep:]:
        old.unlink(missing_ok=True)
    for partial in cache_dir.glob(".*.aot.*"):
        if time.time() - partial.stat().st_mtime > partial_after_s:
            partial.unlink(missing_ok=True)


def describe(settings: Settings) -> str:
    """The JDK the job runs on and the AOT cache its driver starts from, for a terminal or a
    benchmark report."""
    home = spark_java_home(settings)
    cache = aot_cache(settings)
    started = cache if cache is not None and cache.is_file() else "none"
    return f"Spark runs on {home or 'the environment JDK'}; AOT cache: {started}"
