"""The Docker files cannot be built here (no engine): check what can be checked by reading them."""

from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT


def dockerfile(name: str) -> list[tuple[str, str]]:
    text = (ROOT / "docker" / name).read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, rest = line.partition(" ")
            out.append((instr.upper(), rest.strip()))
    return out


def test_dockerfiles_are_well_formed_and_copy_real_paths() -> None:
    for name, base in (("Dockerfile.api", "python:3.11"), ("Dockerfile.worker", "nvidia/cuda:")):
        instrs = dockerfile(name)
        assert instrs[0][0] == "FROM" and instrs[0][1].startswith(base), instrs[0]
        known = {"FROM", "ARG", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "HEALTHCHECK", "CMD"}
        assert {i for i, _ in instrs} <= known
        for instr, rest in instrs:
            if instr == "COPY":
                for src in rest.split()[:-1]:
                    assert (ROOT / src).exists(), f"{name}: COPY {src} does not exist"
        cmd = [r for i, r in instrs if i == "CMD"]
        assert len(cmd) == 1
        module = re.search(r'"-m", "([\w.]+)"', cmd[0])[1]  # type: ignore[index]
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file()
        assert any(i == "USER" and r != "root" for i, r in instrs)  # not running as root


def test_compose_runs_redis_minio_api_and_scalable_gpu_workers_sharing_only_redis_and_the_bucket() -> None:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    assert set(services) == {"redis", "minio", "minio-init", "api", "worker"}
    assert "--appendonly" in services["redis"]["command"]
    assert services["minio"]["image"].startswith("quay.io/minio/minio:RELEASE.")  # a pinned release
    assert "mc mb --ignore-existing local/udic" in services["minio-init"]["command"][0]
    for name in ("api", "worker"):
        svc = services[name]
        env = svc["environment"]
        assert (ROOT / svc["build"]["dockerfile"]).is_file()
        assert env["UDIC_REDIS_URL"].startswith("redis://redis:")
        assert env["UDIC_STORAGE_URL"] == "s3://udic/storage" and env["UDIC_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
        assert "volumes" not in svc  # nothing shared on disk: a worker may run on any host
        assert svc["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    # `docker compose up --scale worker=N` needs a worker with no fixed name and no host port
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"] and devices[0]["count"] == 1
    assert set(spec["volumes"]) >= {"minio-data", "redis-data"}
    assert services["api"]["ports"] == ["8000:8000"]
    # the credentials MinIO is started with are the ones api and worker use
    minio_user = services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert services["api"]["environment"]["AWS_ACCESS_KEY_ID"] == minio_user


def test_images_install_the_s3_client() -> None:
    """boto3 is a dependency of the package both images pip install."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("boto3") for d in deps)
    for name in ("Dockerfile.api", "Dockerfile.worker"):
        assert any(i == "RUN" and "pip install --no-cache-dir ." in r for i, r in dockerfile(name))
