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
# views.toml (LAMBDA_VIEWS_FILE's default, /app/views.toml) is baked in when it exists: the
# glob may match nothing. A changed file is deployed by `docker compose up -d --build`.
COPY pyproject.toml README.md views.toml* ./
COPY requirements ./requirements
COPY lambda_contracts ./lambda_contracts
COPY speed_layer ./speed_layer
COPY batch_layer ./batch_layer
COPY serving ./serving
COPY producer ./producer
COPY infra ./infra
COPY dags ./dags
RUN pip install --no-cache-dir -c requirements/constraints.txt -e . \
 && pip install --no-cache-dir -c requirements/constraints.txt 'pyspark==4.3.0'

VOLUME ["/data"]
# -g: a signal goes to the whole process group, so spark-submit and the JVMs it starts stop
# with the command that started them.
ENTRYPOINT ["/usr/bin/tini", "-g", "--"]
