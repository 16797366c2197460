# One image for every platform service in docker compose: the same code and pinned
# dependencies as local mode (speed layer, serving, Airflow, Spark master/worker, producer).

# Spark's s3a filesystem (hadoop-aws + the AWS SDK bundle), from the same pom as local mode.
FROM maven:3.9-eclipse-temurin-17 AS s3a-jars
COPY infra/spark/pom.xml /build/pom.xml
RUN mvn -q -B -f /build/pom.xml package -Ds3a.jars=/opt/spark-s3a

FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/default-java-17
# The JDK's directory name carries the architecture (amd64, arm64): point at it by a fixed link.
ENV JAVA_HOME=/usr/lib/jvm/default-java-17 \
    PYTHONUNBUFFERED=1 \
    LAMBDA_DATA_DIR=/data \
    LAMBDA_SPARK_S3A_JARS=/opt/spark-s3a
COPY --from=s3a-jars /opt/spark-s3a /opt/spark-s3a

WORKDIR /app
# The dependencies first, from pyproject.toml and the pinned constraints alone: a code edit
# rebuilds only the layers below, not ~1 GB of packages. pyspark last, so every file under
# pyspark/ is its own (the Spark provider brings pyspark-client, which writes there too).
COPY pyproject.toml ./
COPY requirements ./requirements
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\\n')" \
      > /tmp/dependencies.txt \
 && pip install --no-cache-dir -c requirements/constraints.txt -r /tmp/dependencies.txt \
 && pip install --no-cache-dir --force-reinstall --no-deps -c requirements/constraints.txt 'pyspark==4.3.0' \
 && rm /tmp/dependencies.txt

# views.toml (LAMBDA_VIEWS_FILE's default, /app/views.toml) is baked in when it exists: the
# glob may match nothing (README.md keeps the COPY from being empty). A changed file is
# deployed by `docker compose up -d --build`.
COPY README.md views.toml* ./
COPY lambda_contracts ./lambda_contracts
COPY speed_layer ./speed_layer
COPY batch_layer ./batch_layer
COPY serving ./serving
COPY producer ./producer
COPY infra ./infra
COPY dags ./dags
RUN pip install --no-cache-dir --no-deps -e .

# Not root: a user of its own, owning only the data volume (a named volume starts with the
# image's /data, so with this owner). Spark's worker keeps its work directory there too.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin lambda \
 && mkdir -p /data && chown lambda:lambda /data
ENV SPARK_WORKER_DIR=/data/spark-worker
USER lambda

VOLUME ["/data"]
# -g: a signal goes to the whole process group, so spark-submit and the JVMs it starts stop
# with the command that started them. run-service holds a container whose service exits 78
# (a configuration error) instead of letting the restart policy loop on it.
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/app/infra/compose/run-service"]
