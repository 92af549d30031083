"""The Docker files cannot be built here (no engine): check what can be checked by reading them."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_compose_runs_redis_api_and_a_gpu_worker_on_shared_storage() -> None:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    assert set(services) == {"redis", "api", "worker"}
    assert "--appendonly" in services["redis"]["command"]
    for name in ("api", "worker"):
        svc = services[name]
        assert (ROOT / svc["build"]["dockerfile"]).is_file()
        assert svc["environment"]["UDIC_REDIS_URL"].startswith("redis://redis:")
        assert "storage:/data/storage" in svc["volumes"]
        assert svc["environment"]["UDIC_STORAGE_ROOT"] == "/data/storage"
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert set(spec["volumes"]) >= {"storage", "redis-data"}
    assert Path(ROOT / "docker-compose.yml").read_text().count("8000") >= 1
