#!/bin/sh
# Drop from /opt/venv what no LakeRAG process loads. Builder stages only; each
# line says why the files are dead weight (images/README.md has the sizes, the
# e2e tests prove the images still run the pipeline, serve and export).
set -eu
site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cd "$site"

# The packages' own test suites, C/C++ headers and static libraries, type stubs.
find . -type d \( -name tests -o -name __pycache__ \) -not -path '*.dist-info*' -prune -exec rm -rf {} +
find . \( -name '*.pyi' -o -name '*.a' \) -type f -delete
find . -type d -name include -path './*/include' -prune -exec rm -rf {} +

# pyarrow: Arrow Flight (RPC; only `import pyarrow.flight` loads it, 35 MB), the
# C++ test module, and the Cython sources of the compiled modules.
if [ -d pyarrow ]; then
    rm -f pyarrow/_flight.*.so pyarrow/libarrow_flight.so* pyarrow/libarrow_python_flight.so* \
        pyarrow/_pyarrow_cpp_tests.*.so
    find pyarrow \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \) -type f -delete
fi

# pyspark: jars of what LakeRAG's Spark never starts (~200 MB): the Hive metastore,
# Thrift server and their JDBC/ORM stack (enableHiveSupport is never called), the
# Spark Connect server and its Ammonite REPL, the Scala REPL and compiler, YARN,
# RocksDB (state store and history-server backends, neither configured), netty's
# native libraries for other platforms; the examples and MLlib sample data.
# Kept: Kubernetes (LAKERAG_SPARK_MASTER=k8s://), ORC's hive-storage-api, MLlib.
if [ -d pyspark/jars ]; then
    (cd pyspark/jars && rm -rf connect-repl rocksdbjni-*.jar spark-connect_*.jar spark-repl_*.jar \
        scala-compiler-*.jar jline-*.jar spark-hive_*.jar spark-hive-thriftserver_*.jar spark-yarn_*.jar \
        hive-beeline-*.jar hive-cli-*.jar hive-common-*.jar hive-exec-*.jar hive-jdbc-*.jar \
        hive-metastore-*.jar hive-serde-*.jar hive-service-rpc-*.jar hive-shims-*.jar \
        datanucleus-*.jar derby-*.jar derbyshared-*.jar derbytools-*.jar javax.jdo-*.jar jdo-api-*.jar \
        javolution-*.jar libthrift-*.jar libfb303-*.jar antlr-runtime-3*.jar ST4-*.jar HikariCP-*.jar \
        commons-dbcp-*.jar commons-pool-1*.jar jta-*.jar transaction-api-*.jar super-csv-*.jar json-1.*.jar \
        netty-*-osx-*.jar netty-*-windows-*.jar)
    arch=$(uname -m | sed 's/aarch64/aarch_64/')
    for jar in pyspark/jars/netty-*-linux-*.jar; do
        case "$jar" in *"-linux-$arch.jar") ;; *) rm -f "$jar" ;; esac
    done
    rm -rf pyspark/examples pyspark/data
fi

# onnxruntime: libonnxruntime.so is the C API library for other languages; the
# Python module (onnxruntime_pybind11_state) carries its own copy and never loads it.
rm -f onnxruntime/capi/libonnxruntime.so*

# botocore: the API models of the ~450 AWS services; LakeRAG calls S3, and the
# credential chain STS (IRSA, assume-role), SSO/SSO-OIDC and sign-in. Any other
# service fails with botocore's UnknownServiceError naming it.
if [ -d botocore/data ]; then
    for service in botocore/data/*/; do
        case "$(basename "$service")" in
            s3|sts|sso|sso-oidc|signin) ;;
            *) rm -rf "$service" ;;
        esac
    done
fi

# hf_xet: huggingface_hub's client for the Hub's Xet storage; nothing in these images
# downloads from the Hub, and huggingface_hub falls back to plain HTTP without it.
if [ -d hf_xet ]; then
    /opt/build/bin/pip --python /opt/venv/bin/python uninstall --yes --quiet --disable-pip-version-check hf-xet
fi

# Wheels cannot hold symlinks, so libfoo.so, libfoo.so.N and libfoo.so.N.M ship as
# identical copies: keep the longest name, link the others to it.
/opt/venv/bin/python - <<'EOF'
import hashlib, os, pathlib
groups = {}
for path in pathlib.Path(".").rglob("*.so*"):
    if path.is_file() and not path.is_symlink():
        groups.setdefault((path.parent, path.stat().st_size, hashlib.sha256(path.read_bytes()).digest()), []).append(path)
for paths in groups.values():
    keep, *copies = sorted(paths, key=lambda p: (-len(p.name), p.name))
    for copy in copies:
        copy.unlink()
        copy.symlink_to(keep.name)
EOF
