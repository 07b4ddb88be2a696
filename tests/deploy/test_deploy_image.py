"""Offline checks of the container image recipe: Dockerfile and .dockerignore.

No Docker engine and no hadolint here, so the rules are checked by reading the files:
multi-stage, a slim Python 3.11 base pinned by exact version, one image for every entry
point, a non-root user, no build tools in the final stage, and a build context that
carries the package sources and nothing else.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-(bookworm|trixie)$")
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "cmake", "libc6-dev", "python3-dev", "cargo")
APP_UID = "10001"


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions grouped by stage; continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages or ins.keyword == "ARG", f"line {ins.line}: {ins.keyword} before the first FROM"
            if stages:
                stages[-1].instructions.append(ins)
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT in exec (JSON) form; the shell form is refused (signals reach a shell)."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        pytest.fail(f"not in exec form (JSON array): {args}")
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def build_args() -> dict[str, str]:
    """ARG NAME=default lines before the first FROM (the ones a FROM may use)."""
    args = {}
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("FROM "):
            break
        if match := re.match(r"^ARG\s+(\w+)=(\S+)$", line):
            args[match[1]] = match[2]
    return args


def test_multi_stage_on_one_pinned_slim_python_311_base(stages: list[Stage]) -> None:
    """The base is a build argument (a locally made one stands in where no registry is reachable,
    docker/build-images.sh); its default is a pinned python:3.11 slim image."""
    assert len(stages) >= 2, "the Dockerfile must be multi-stage (a builder and a runtime stage)"
    names = {s.name for s in stages if s.name}
    defaults = build_args()
    for stage in stages:
        if stage.image in names:
            continue
        image = re.sub(r"^\$\{(\w+)\}$", lambda m: defaults.get(m[1], m[0]), stage.image)
        assert BASE_IMAGE.match(image), f"base {stage.image!r} ({image}) is not python:3.11.<patch>-slim-<debian>"
        assert not image.endswith(":latest") and "@" not in image.split(":")[0]
    bases = {s.image for s in stages if s.image not in names}
    # The venv is copied between stages: its interpreter symlink needs the same Python.
    assert len(bases) == 1, f"builder and runtime must use the same base image, got {sorted(bases)}"


def test_one_image_single_final_stage_copies_the_builders_venv(stages: list[Stage], final: Stage) -> None:
    builder_names = {s.name for s in stages[:-1]}
    copies = [i.args for i in final.all("COPY") if "--from=" in i.args]
    assert copies, "the final stage copies nothing from the builder"
    for args in copies:
        source = re.search(r"--from=(\S+)", args)
        assert source and source.group(1) in builder_names, f"COPY {args}: --from must name an earlier stage"
    assert any("/opt/venv" in args for args in copies), "the final stage must copy the builder's venv"
    env = " ".join(i.args for i in final.all("ENV"))
    assert re.search(r"PATH=/opt/venv/bin:", env), "the venv's bin must come first on PATH in the final stage"


def test_builder_installs_the_package_with_the_constraints_file(stages: list[Stage]) -> None:
    runs = " ".join(i.args for s in stages[:-1] for i in s.all("RUN"))
    assert re.search(r"pip install [^&;]*-c constraints\.txt [^&;]*\.", runs), (
        "the builder must `pip install -c constraints.txt .`"
    )
    copied = " ".join(i.args for s in stages[:-1] for i in s.all("COPY"))
    for needed in ("constraints.txt", "setup.cfg", "pyproject.toml", "README.md"):
        assert needed in copied, f"the builder does not COPY {needed} (the install needs it)"
    packages = configparser.ConfigParser()
    packages.read(ROOT / "setup.cfg")
    for package in packages["options.packages.find"]["include"].split():
        top = package.rstrip("*")
        assert f"{top}/" in copied, f"the builder does not COPY the package {top}/"
    env = " ".join(i.args for s in stages[:-1] for i in s.all("ENV"))
    assert "PIP_NO_CACHE_DIR=1" in env or "--no-cache-dir" in runs, "pip's cache would bloat the layer"


def test_final_stage_runs_as_the_non_root_uid_10001(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the final stage must set USER"
    user = users[-1].args.split(":")[0]
    assert user == APP_UID, f"USER must be the numeric uid {APP_UID} (runAsNonRoot needs a number), got {user}"
    assert users[-1].args.split(":")[-1] != "0", "the primary group must not be root"
    runs = " ".join(i.args for i in final.all("RUN"))
    assert f"--uid {APP_UID}" in runs, "the final stage must create the user with uid 10001"
    last_user_at = final.instructions.index(users[-1])
    later = [i.keyword for i in final.instructions[last_user_at + 1 :]]
    assert "RUN" not in later, "nothing may run as root after USER"


def test_final_stage_has_no_build_tools_and_no_package_installs(final: Stage) -> None:
    for ins in final.all("RUN"):
        words = set(re.split(r"[\s;&|]+", ins.args))
        tools = words & set(BUILD_TOOLS)
        assert not tools, f"line {ins.line}: build tools in the final stage: {sorted(tools)}"
        assert "pip" not in words, f"line {ins.line}: the final stage must not pip install (the builder does)"
        assert not re.search(r"apt-get\s+install", ins.args), f"line {ins.line}: no apt-get install in the final stage"


def test_no_remote_sources_and_no_latest_anywhere(stages: list[Stage]) -> None:
    for stage in stages:
        for ins in stage.instructions:
            assert ins.keyword != "ADD", f"line {ins.line}: use COPY, not ADD"
            piped = re.search(r"(curl|wget)[^|]*\|\s*(ba)?sh", ins.args)
            assert not piped, f"line {ins.line}: a download piped into a shell"
            assert "sudo" not in ins.args.split(), f"line {ins.line}: sudo"
    assert ":latest" not in DOCKERFILE.read_text()


def test_default_command_is_the_api_under_gunicorn(final: Stage) -> None:
    cmds = final.all("CMD")
    assert len(cmds) == 1, "exactly one CMD"
    cmd = exec_form(cmds[0].args)
    assert cmd[0] == "gunicorn" and cmd[1] == "-c", cmd
    conf = cmd[2]
    copies = [i.args for i in final.all("COPY")]
    assert any(args.endswith(" " + conf) and "api/gunicorn.conf.py" in args for args in copies), (
        f"{conf} must be the source tree's api/gunicorn.conf.py, copied into the final stage"
    )
    # No ENTRYPOINT: `ums-find consume`, `ums-find replay`, ... replace the command as a whole.
    assert not final.all("ENTRYPOINT"), "an ENTRYPOINT would prefix every other entry point"
    exposed = " ".join(i.args for i in final.all("EXPOSE")).split()
    assert "8080" in exposed, "the API port 8080 must be exposed"
    workdirs = [i.args for i in final.all("WORKDIR")]
    assert all(w.startswith("/") for w in workdirs), "WORKDIR must be absolute"


def test_gunicorn_config_and_console_script_exist_in_the_source() -> None:
    assert (ROOT / "api" / "gunicorn.conf.py").is_file()
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = cfg["options.entry_points"]["console_scripts"]
    assert re.search(r"^\s*ums-find\s*=", scripts, re.M), "the image's entry points need the ums-find script"


def test_writable_dirs_for_the_health_file_and_prometheus_exist_for_the_app_user(final: Stage) -> None:
    runs = " ".join(i.args for i in final.all("RUN"))
    for path in ("/run/ums-find/health", "/run/ums-find/prometheus"):
        assert path in runs, f"{path} must be created in the image (compose runs without an emptyDir)"
    assert f"chown -R {APP_UID}:{APP_UID} /run/ums-find" in runs


# --- .dockerignore ---------------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, str]]:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing"
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        patterns.append((negate, line.lstrip("!").strip().strip("/")))
    return patterns


def ignored(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent excludes it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negate, pattern in patterns:
        regex = fnmatch.translate(pattern.replace("**/", "\0")).replace("\0", "(?:.*/)?")
        if any(re.match(regex, prefix) for prefix in prefixes):
            result = not negate
    return result


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".run/stack/secrets.env",
        ".cache/kafka/libs/x.jar",
        ".cache/bin/compose-spec",
        "tests/unit/test_api.py",
        ".env",
        "docker/compose.env.example",
        "api/__pycache__/routes.cpython-311.pyc",
        "ums_find.egg-info/PKG-INFO",
        "k8s/base/kustomization.yaml",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert ignored(path, dockerignore_patterns()), f"{path} would be sent to the build context"


def test_dockerignore_keeps_every_file_the_dockerfile_copies(stages: list[Stage]) -> None:
    patterns = dockerignore_patterns()
    sources: list[str] = []
    for stage in stages:
        for ins in stage.all("COPY"):
            if "--from=" in ins.args:
                continue
            words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
            sources.extend(words[:-1])
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [p for p in path.rglob("*.py")] if path.is_dir() else [path]
        assert files, f"COPY {source}: nothing to copy"
        for file in files:
            rel = file.relative_to(ROOT).as_posix()
            if "__pycache__" in rel:
                continue
            assert not ignored(rel, patterns), f"{rel} is needed by the build but .dockerignore excludes it"
