"""Static checks of the Docker production stack (no Docker engine needed).

* docker-compose.yml and the docker-compose.external-db.yml override are
  validated against the official Compose Specification JSON schema
  (tests/fixtures/compose-spec.json, see PROVENANCE-compose.md);
* then what the schema cannot know: the service set, healthy dependencies,
  no literal secrets, published ports, declared volumes, the commands;
* the Dockerfile (non-root, no baked secrets, no build tools in the final
  stage), .dockerignore and .env.example are checked against the same contract;
* the compose file is interpolated with the values from .env.example by a
  small implementation of Compose's ``${VAR...}`` rules, and the resulting
  DATABASE_URL is checked and fed to ``pipeline.config.Settings``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
EXTERNAL_DB_OVERRIDE = ROOT / "docker-compose.external-db.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA_FILE = ROOT / "tests" / "fixtures" / "compose-spec.json"
SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"

EXPECTED_SERVICES = {"postgres", "pipeline", "dashboard"}
APP_SERVICES = ("pipeline", "dashboard")
#: The `scale` profile (issue 13): object storage, a bucket maker, a Dask scheduler and its workers.
SCALE_SERVICES = ("minio", "buckets", "dask-scheduler", "dask-worker")


# --------------------------------------------------------------------------
# helpers: YAML loading (with Compose's !reset / !override tags)
# --------------------------------------------------------------------------


class ResetDict(dict):
    """A mapping tagged ``!reset`` or ``!override``: replaces, never merges."""


class ResetList(list):
    """A sequence tagged ``!reset`` or ``!override``."""


class _ComposeLoader(yaml.SafeLoader):
    pass


def _construct_replacing(loader: yaml.SafeLoader, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return ResetDict(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return ResetList(loader.construct_sequence(node, deep=True))
    value = loader.construct_scalar(node)
    return None if value in ("", "null", "~") else value


_ComposeLoader.add_constructor("!reset", _construct_replacing)
_ComposeLoader.add_constructor("!override", _construct_replacing)


def load_compose(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        doc = yaml.load(fh, Loader=_ComposeLoader)  # noqa: S506 - SafeLoader subclass
    assert isinstance(doc, dict), f"{path.name} is not a YAML mapping"
    return doc


def merge_compose(base: dict, override: dict) -> dict:
    """The subset of Compose's multi-file merge this repo uses.

    Mappings merge key by key, sequences are appended, scalars replaced,
    and a ``!reset``/``!override`` value replaces whatever was there.
    """
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, (ResetDict, ResetList)) or value is None:
            result[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_compose(result[key], value)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = result[key] + copy.deepcopy(value)
        else:
            result[key] = copy.deepcopy(value)
    return result


# --------------------------------------------------------------------------
# helpers: Compose variable interpolation
# --------------------------------------------------------------------------


class InterpolationError(ValueError):
    pass


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


def _expand(body: str, env: dict) -> str:
    match = _NAME.match(body)
    if not match:
        raise InterpolationError(f"invalid interpolation format: ${{{body}}}")
    name, rest = match.group(0), body[match.end() :]
    if rest == "":
        return env.get(name, "")
    for op in _OPERATORS:
        if rest.startswith(op):
            arg = rest[len(op) :]
            break
    else:
        raise InterpolationError(f"invalid interpolation format: ${{{body}}}")
    is_set = name in env
    is_nonempty = bool(env.get(name))
    present = is_nonempty if op.startswith(":") else is_set
    if op in (":-", "-"):
        return env[name] if present else interpolate_str(arg, env)
    if op in (":?", "?"):
        if not present:
            raise InterpolationError(f"required variable {name} is missing a value: {interpolate_str(arg, env)}")
        return env[name]
    return interpolate_str(arg, env) if present else ""  # :+ and +


def interpolate_str(text: str, env: dict) -> str:
    """``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``, ``${VAR:?e}``,
    ``${VAR?e}``, ``${VAR:+a}``, ``${VAR+a}``, with nesting in the argument."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            depth, j = 1, i + 2
            while j < len(text) and depth:
                if text.startswith("${", j):
                    depth += 1
                    j += 2
                    continue
                if text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                raise InterpolationError(f"unterminated ${{ in {text!r}")
            out.append(_expand(text[i + 2 : j - 1], env))
            i = j
        else:
            match = _NAME.match(text, i + 1)
            if not match:
                raise InterpolationError(f"invalid interpolation format in {text!r}")
            out.append(env.get(match.group(0), ""))
            i = match.end()
    return "".join(out)


def interpolate(obj, env: dict):
    """Interpolate every string value (not keys), as Compose does."""
    if isinstance(obj, dict):
        return type(obj)((k, interpolate(v, env)) for k, v in obj.items())
    if isinstance(obj, list):
        return type(obj)(interpolate(v, env) for v in obj)
    if isinstance(obj, str):
        return interpolate_str(obj, env)
    return obj


def string_values(obj):
    if isinstance(obj, dict):
        for value in obj.values():
            yield from string_values(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from string_values(value)
    elif isinstance(obj, str):
        yield obj


def referenced_variables(doc: dict) -> set[str]:
    names: set[str] = set()
    for value in string_values(doc):
        names.update(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", value.replace("$$", "")))
    return names


def is_pure_interpolation(value) -> bool:
    """True for exactly one ``${...}`` reference (with default/error text)."""
    if not isinstance(value, str) or not (value.startswith("${") and value.endswith("}")):
        return False
    depth, i = 0, 0
    while i < len(value):  # one balanced ${...} spanning the whole value
        if value.startswith("${", i):
            depth += 1
            i += 2
            continue
        if value[i] == "}":
            depth -= 1
            if depth == 0 and i != len(value) - 1:
                return False
        i += 1
    return depth == 0


# --------------------------------------------------------------------------
# helpers: .env, Dockerfile, .dockerignore
# --------------------------------------------------------------------------

_ENV_LINE = re.compile(r"^\s*(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def env_example_entries() -> list[tuple[str, str, bool, bool]]:
    """(name, value, active, has_comment_above) for each ``NAME=value`` line,
    active or commented out (``# NAME=value``)."""
    entries = []
    previous = ""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _ENV_LINE.match(line)
        if match:
            active = match.group(1) is None
            value = match.group(3).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            entries.append((match.group(2), value, active, previous.lstrip().startswith("#")))
        previous = line
    return entries


def env_example_values() -> dict[str, str]:
    return {name: value for name, value, active, _ in env_example_entries() if active}


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)] with continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    buffer = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and blank lines, also inside a continuation
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        line = buffer + stripped
        buffer = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not buffer, "Dockerfile ends inside a line continuation"
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _exec_form(args: str) -> list[str]:
    args = args.strip()
    if args.startswith("["):
        return json.loads(args)
    return shlex.split(args)


def _copy_sources(args: str) -> tuple[list[str], str]:
    parts = [p for p in _exec_form(args) if not p.startswith("--")]
    return parts[:-1], parts[-1]


def _glob_to_regex(pattern: str) -> str:
    """Go filepath.Match plus Docker's ``**`` (patternmatcher semantics)."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern[i : i + 1] == "/":
                out += "(?:.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":  # character class: Go and Python both negate with ^
            end = pattern.index("]", i + 1)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(char)
        i += 1
    return out


def dockerignore_rules() -> list[tuple[re.Pattern, bool]]:
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        pattern = line[1:].strip() if exclusion else line
        pattern = pattern.lstrip("/").rstrip("/")
        pattern = re.sub(r"/+", "/", pattern)
        if pattern.startswith("./"):
            pattern = pattern[2:]
        rules.append((re.compile(_glob_to_regex(pattern) + r"\Z"), exclusion))
    return rules


def is_dockerignored(path: str, rules=None) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent
    directories decides; ``!`` patterns re-include."""
    rules = dockerignore_rules() if rules is None else rules
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for regex, exclusion in rules:
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not exclusion
    return ignored


def env_dict(service: dict) -> dict:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return dict(environment)


def command_list(service: dict) -> list[str]:
    command = service.get("command")
    return list(command) if isinstance(command, list) else shlex.split(command or "")


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator(schema):
    # The spec declares "$schema": "https://json-schema.org/draft-07/schema";
    # jsonschema registers draft 7 under its canonical http://...# id only and
    # would otherwise fall back to the latest draft (with a DeprecationWarning).
    if schema.get("$schema", "").rstrip("#") in (
        "https://json-schema.org/draft-07/schema",
        "http://json-schema.org/draft-07/schema",
    ):
        schema = {**schema, "$schema": "http://json-schema.org/draft-07/schema#"}
    cls = jsonschema.validators.validator_for(schema)
    assert cls is jsonschema.Draft7Validator
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def example_env() -> dict:
    return env_example_values()


@pytest.fixture(scope="module")
def interpolated(compose, example_env) -> dict:
    return interpolate(compose, example_env)


# --------------------------------------------------------------------------
# schema validation
# --------------------------------------------------------------------------


def test_schema_fixture_is_the_pinned_upstream_file(schema):
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert schema["$id"] == "compose_spec.json"
    assert "services" in schema["properties"]


@pytest.mark.parametrize("path", [COMPOSE_FILE, EXTERNAL_DB_OVERRIDE], ids=lambda p: p.name)
def test_compose_files_validate_against_compose_spec(path, validator, example_env):
    doc = load_compose(path)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    # What Compose really validates is the interpolated file.
    env = {**example_env, "DATABASE_URL": "postgresql://u:p@db.example:5432/crypto"}
    errors = list(validator.iter_errors(interpolate(doc, env)))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_schema_validation_actually_rejects_broken_files(compose, validator):
    """Control: the validator is not a no-op on this file."""
    broken = copy.deepcopy(compose)
    broken["services"]["dashboard"]["restartt"] = "always"  # typo'd key
    assert not validator.is_valid(broken)
    broken = copy.deepcopy(compose)
    broken["services"]["postgres"]["healthcheck"]["test"] = {"cmd": "pg_isready"}
    assert not validator.is_valid(broken)


def test_no_obsolete_top_level_version(compose):
    assert "version" not in compose


# --------------------------------------------------------------------------
# what the schema cannot check
# --------------------------------------------------------------------------


def test_exactly_the_three_services(services):
    """Without a profile: the three services; the scale profile's services start only with it."""
    assert {name for name, service in services.items() if not service.get("profiles")} == EXPECTED_SERVICES
    assert {name for name, service in services.items() if service.get("profiles")} == set(SCALE_SERVICES)


def test_the_scale_profile_adds_object_storage_a_scheduler_and_two_workers_from_the_app_image(services):
    for name in SCALE_SERVICES:
        assert services[name]["profiles"] == ["scale"], name
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")  # pinned, not :latest
    assert services["dask-scheduler"]["image"] == services["pipeline"]["image"] == services["dask-worker"]["image"]
    assert services["dask-scheduler"]["command"][:2] == ["dask", "scheduler"]
    worker = services["dask-worker"]
    assert worker["command"][:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    assert worker["deploy"]["replicas"] == 2
    assert "--memory-limit" in worker["command"] and "--nthreads" in worker["command"]  # bounded per worker
    # Workers read bronze from the object store themselves: they get the app's settings.
    assert env_dict(worker) == env_dict(services["pipeline"])
    for name in ("minio", "dask-scheduler", "dask-worker"):
        assert services[name]["healthcheck"]["test"], name
    assert worker["depends_on"]["buckets"] == {"condition": "service_completed_successfully"}
    assert worker["depends_on"]["dask-scheduler"] == {"condition": "service_healthy"}
    assert "objects" in load_compose(COMPOSE_FILE)["volumes"]


def test_postgres_is_the_official_image_with_a_healthcheck(services):
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    test = postgres["healthcheck"]["test"]
    joined = " ".join(test) if isinstance(test, list) else test
    assert "pg_isready" in joined
    # $$ = a variable for the container's shell, not an empty compose variable
    assert "$$POSTGRES_USER" in joined and "$$POSTGRES_DB" in joined
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in postgres["healthcheck"], key
    assert "ports" not in postgres, "PostgreSQL must not be published by default"


def test_every_dependency_is_defined_healthchecked_and_waited_for(services):
    seen = 0
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: use the long depends_on syntax"
        for target, spec in depends_on.items():
            seen += 1
            assert target in services, f"{name} depends on undefined {target}"
            healthcheck = services[target].get("healthcheck") or {}
            if (spec or {}).get("condition") == "service_completed_successfully":
                assert "restart" not in services[target], f"{target} is a one-shot job: it must not restart"
                continue
            test = healthcheck.get("test")
            assert test and not healthcheck.get("disable"), f"{target} has no healthcheck"
            assert (test[0] if isinstance(test, list) else test) != "NONE"
            assert (spec or {}).get("condition") == "service_healthy", f"{name} -> {target}"
    for name in APP_SERVICES:
        assert "postgres" in (services[name].get("depends_on") or {}), name
    assert seen >= 2


def _mask_interpolations(value: str) -> str:
    """Replace every top-level ``${...}`` with ``\x00`` (so ':' and '@' inside
    defaults or error texts don't confuse URL parsing)."""
    out, i, depth = [], 0, 0
    while i < len(value):
        if value.startswith("$$", i) and depth == 0:
            out.append("$$")
            i += 2
            continue
        if value.startswith("${", i):
            if depth == 0:
                out.append("\x00")
            depth += 1
            i += 2
            continue
        if depth:
            depth -= value[i] == "}"
        else:
            out.append(value[i])
        i += 1
    return "".join(out)


def _password_problems(doc: dict) -> list[str]:
    problems = []
    for name, service in (doc.get("services") or {}).items():
        for key, value in env_dict(service).items():
            if value is None or is_pure_interpolation(str(value)):
                continue
            value = str(value)
            if "PASSWORD" in key.upper():
                problems.append(f"{name}.{key} is a literal: {value!r}")
                continue
            masked = _mask_interpolations(value)
            if "://" in masked and "@" in masked:
                userinfo = masked.split("://", 1)[1].rsplit("@", 1)[0]
                if ":" in userinfo and userinfo.split(":", 1)[1] != "\x00":
                    problems.append(f"{name}.{key} has a literal password: {value!r}")
            elif key.upper() == "DATABASE_URL":
                problems.append(f"{name}.{key} is neither a URL nor an interpolation: {value!r}")
    return problems


@pytest.mark.parametrize("path", [COMPOSE_FILE, EXTERNAL_DB_OVERRIDE], ids=lambda p: p.name)
def test_no_literal_passwords(path):
    doc = load_compose(path)
    assert _password_problems(doc) == []
    # Control: the check catches a literal password in either form.
    leaked = copy.deepcopy(load_compose(COMPOSE_FILE))
    leaked["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"
    leaked["services"]["pipeline"]["environment"] = dict(
        leaked["services"]["pipeline"]["environment"],
        DATABASE_URL="postgresql://crypto:hunter2@postgres:5432/crypto",
    )
    assert len(_password_problems(leaked)) == 2


def test_dashboard_publishes_8501_and_serves_on_it(services):
    dashboard = services["dashboard"]
    published = []
    for port in dashboard.get("ports", []):
        if isinstance(port, dict):
            published.append((str(port.get("published")), str(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            published.append((parts[-2] if len(parts) > 1 else "", parts[-1]))
    assert ("8501", "8501") in published
    cmd = command_list(dashboard)
    assert cmd[:3] == ["streamlit", "run", "dashboard/app.py"]
    assert "--server.port=8501" in cmd
    assert "--server.address=0.0.0.0" in cmd
    assert "--server.headless=true" in cmd
    health = " ".join(dashboard["healthcheck"]["test"])
    assert "http://127.0.0.1:8501/_stcore/health" in health
    assert "curl" not in health and "wget" not in health  # neither exists in python:3.11-slim


def _volume_mounts(service: dict) -> list[tuple[str, str, str]]:
    """(type, source, target) for every entry of ``volumes``."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            mounts.append((entry.get("type", "volume"), entry.get("source", ""), entry["target"]))
            continue
        parts = entry.split(":")
        if len(parts) == 1:
            mounts.append(("anonymous", "", parts[0]))
            continue
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
        mounts.append((kind, source, target))
    return mounts


def test_named_volumes_are_declared_and_hold_the_state(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for kind, source, target in _volume_mounts(service):
            assert kind != "anonymous", f"{name}: anonymous volume at {target}"
            if kind == "volume":
                assert source in declared, f"{name} uses undeclared volume {source!r}"
    pg_mounts = {t: (k, s) for k, s, t in _volume_mounts(services["postgres"])}
    assert pg_mounts.get("/var/lib/postgresql/data", ("", ""))[0] == "volume"
    for name in APP_SERVICES:
        mounts = {t: (k, s) for k, s, t in _volume_mounts(services[name])}
        data_dir = env_dict(services[name])["DATA_DIR"]
        assert data_dir == "/data"
        assert mounts.get(data_dir) == ("volume", "bronze"), f"{name}: bronze not at DATA_DIR"
    assert {"pgdata", "bronze"} <= declared


def test_pipeline_runs_the_scheduler(services):
    pipeline = services["pipeline"]
    assert command_list(pipeline) == ["python", "-m", "pipeline", "schedule"]
    assert pipeline.get("stop_signal") == "SIGTERM"
    assert pipeline.get("stop_grace_period")
    assert "ports" not in pipeline


def test_app_services_share_image_environment_and_restart_policy(services, interpolated):
    pipeline, dashboard = (interpolated["services"][n] for n in APP_SERVICES)
    assert env_dict(pipeline) == env_dict(dashboard)
    assert pipeline.get("build") == dashboard.get("build") is not None
    assert pipeline.get("image") == dashboard.get("image")
    for name, service in services.items():
        if name == "buckets":  # a one-shot job (creates the buckets and exits)
            assert "restart" not in service
            continue
        assert service.get("restart") == "unless-stopped", name
    expected = {
        "DATABASE_URL",
        "DATA_DIR",
        "COINGECKO_API_KEY",
        "COINGECKO_API_PLAN",
        "PIPELINE_INTERVAL_MINUTES",
        "PIPELINE_TOP_N",
        "VS_CURRENCY",
    }
    assert expected <= set(env_dict(pipeline))


# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL|DATABASE_URL", re.I)
_BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|cmake|make|libpq-dev|python3-dev)\b")


def _env_or_arg_names(instruction: str, args: str) -> list[str]:
    if instruction == "ARG":
        return [args.split("=", 1)[0].strip()]
    tokens = shlex.split(args)
    if tokens and "=" not in tokens[0]:  # legacy "ENV KEY value"
        return [tokens[0]]
    return [token.split("=", 1)[0] for token in tokens]


def test_dockerfile_is_multistage_from_python_slim():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        assert stage[0][1].split()[0] == "python:3.11-slim"
    final = stages[-1]
    copies_venv = [a for i, a in final if i == "COPY" and a.startswith("--from=") and "/opt/venv" in a]
    assert copies_venv, "final stage must copy the venv from the builder"


def test_dockerfile_installs_requirements_in_a_cached_layer():
    builder = dockerfile_stages()[0]
    order = [(i, a) for i, a in builder if i in ("COPY", "RUN")]
    copy_req = next(n for n, (i, a) in enumerate(order) if i == "COPY" and "requirements.lock" in a)
    install = next(n for n, (i, a) in enumerate(order) if i == "RUN" and "pip install" in a)
    assert "--require-hashes -r requirements.lock" in order[install][1], "the image installs the hashed lock"
    assert copy_req < install
    for i, a in order[:install]:
        if i == "COPY":
            sources, _ = _copy_sources(a)
            assert sources == ["requirements.lock"], f"COPY before pip install busts the cache: {a}"
    assert any("/opt/venv" in a for i, a in builder if i == "RUN")


def test_dockerfile_runs_as_non_root_app_user():
    final = dockerfile_stages()[-1]
    users = [a for i, a in final if i == "USER"]
    assert users, "final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    run_text = " ".join(a for i, a in final if i == "RUN")
    assert re.search(r"useradd\b.*--uid 10001\b.*\bapp\b", run_text)
    assert user in ("app", "10001")
    assert re.search(r"chown\s+(app|10001)(:(app|10001))?\s+/data\b", run_text), "/data not owned by app"
    last_user = max(n for n, (i, _) in enumerate(final) if i == "USER")
    assert all(i != "RUN" for i, _ in final[last_user:]), "RUN after USER runs as the app user"


def test_dockerfile_final_stage_contract():
    final = dockerfile_stages()[-1]
    env_names = {}
    for i, a in final:
        if i == "ENV":
            for token in shlex.split(a):
                if "=" in token:
                    key, value = token.split("=", 1)
                    env_names[key] = value
    assert env_names.get("PYTHONUNBUFFERED") == "1"
    assert env_names.get("DATA_DIR") == "/data"
    assert any(i == "EXPOSE" and "8501" in a.split() for i, a in final)
    cmds = [a for i, a in final if i == "CMD"]
    assert cmds and _exec_form(cmds[-1]) == ["python", "-m", "pipeline", "schedule"]
    copied = set()
    for i, a in final:
        if i == "COPY" and "--from=" not in a:
            copied.update(s.rstrip("/") for s in _copy_sources(a)[0])
    assert {"pipeline", "dashboard", "sql", ".streamlit", "data/sample"} <= copied


def test_dockerfile_bakes_no_secret():
    for stage in dockerfile_stages():
        for instruction, args in stage:
            if instruction in ("ENV", "ARG"):
                for name in _env_or_arg_names(instruction, args):
                    assert not _SECRET_NAME.search(name), f"{instruction} {name} looks like a secret"
            assert not re.search(r"://[^/\s:@]+:[^@\s]+@", args), f"credentials in {instruction} {args}"
            if instruction == "COPY":
                assert ".env" not in _copy_sources(args)[0]


def test_dockerfile_final_stage_has_no_build_tools():
    final = dockerfile_stages()[-1]
    for instruction, args in final:
        if instruction == "RUN":
            assert not _BUILD_TOOLS.search(args), f"build tools in final stage: {args}"
            assert "pip install" not in args, "dependencies belong in the builder stage"
    # Control: the pattern would catch the usual offenders.
    assert _BUILD_TOOLS.search("apt-get install -y --no-install-recommends build-essential")
    assert _BUILD_TOOLS.search("apt-get install -y gcc libpq-dev")


def test_dockerfile_copy_sources_exist_and_are_in_the_build_context():
    rules = dockerignore_rules()
    for stage in dockerfile_stages():
        for instruction, args in stage:
            if instruction not in ("COPY", "ADD") or "--from=" in args:
                continue
            for source in _copy_sources(args)[0]:
                path = ROOT / source
                assert path.exists(), f"COPY source {source} is missing from the repo"
                files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
                probes = [p.relative_to(ROOT).as_posix() for p in files] or [source.rstrip("/") + "/x"]
                for probe in probes:
                    if "__pycache__" in probe or probe.endswith(".pyc") or probe.endswith("secrets.toml"):
                        continue
                    assert not is_dockerignored(probe, rules), f"{probe} is excluded by .dockerignore"


# --------------------------------------------------------------------------
# .dockerignore and .env.example
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".git",
        ".git/HEAD",
        ".env",
        ".env.production",
        ".venv/bin/python",
        "data/warehouse.db",
        "data/bench/x.json",
        "data/raw/2025-01-01/run-1/markets.json",
        "pipeline/__pycache__/config.cpython-311.pyc",
        ".pytest_cache/v/cache",
        "test-artifacts/shot.png",
        "bench-results/run.json",
        ".streamlit/secrets.toml",
        "tests/unit/test_x.py",
    ],
)
def test_dockerignore_excludes(path):
    assert is_dockerignored(path), path


@pytest.mark.parametrize(
    "path",
    [
        "requirements.txt",
        "requirements.lock",
        "data/sample/markets.json",
        "pipeline/__main__.py",
        "dashboard/app.py",
        "sql/gold/views.sql",
        ".streamlit/config.toml",
    ],
)
def test_dockerignore_keeps_what_the_image_needs(path):
    assert not is_dockerignored(path), path


def test_env_example_documents_every_interpolated_variable(compose):
    entries = env_example_entries()
    documented = {name for name, *_ in entries}
    used = referenced_variables(compose) | referenced_variables(load_compose(EXTERNAL_DB_OVERRIDE))
    assert {"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "COINGECKO_API_KEY"} <= used
    missing = used - documented
    assert not missing, f"not in .env.example: {sorted(missing)}"
    undocumented = [name for name, _, _, commented in entries if not commented]
    assert not undocumented, f"no comment line above: {undocumented}"
    active = env_example_values()
    assert active["POSTGRES_PASSWORD"], "placeholder password must be non-empty"
    assert "DATABASE_URL" not in active, "DATABASE_URL must stay commented (external DB only)"
    assert active["COINGECKO_API_PLAN"] in ("demo", "pro")
    assert active["COINGECKO_API_KEY"] == ""


def test_env_file_is_git_and_docker_ignored():
    gitignore = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in [line.strip() for line in gitignore]
    assert is_dockerignored(".env")


# --------------------------------------------------------------------------
# interpolation with .env.example
# --------------------------------------------------------------------------


def test_interpolator_follows_compose_rules():
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate_str("${SET:-d}|${EMPTY:-d}|${UNSET:-d}|${EMPTY-d}", env) == "v|d|d|"
    assert interpolate_str("$$SET ${SET} $SET ${UNSET}", env) == "$SET v v "
    assert interpolate_str("${UNSET:-${SET:-x}}", env) == "v"
    assert interpolate_str("${SET:+alt}${UNSET:+alt}", env) == "alt"
    with pytest.raises(InterpolationError, match="required variable EMPTY.*set it"):
        interpolate_str("${EMPTY:?set it}", env)
    assert interpolate_str("${EMPTY?set it}", env) == ""


def test_database_url_from_env_example_points_at_postgres(interpolated, example_env):
    services = interpolated["services"]
    urls = {name: env_dict(services[name])["DATABASE_URL"] for name in APP_SERVICES}
    assert urls["pipeline"] == urls["dashboard"]
    url = urlsplit(urls["pipeline"])
    assert url.scheme == "postgresql"
    assert url.hostname == "postgres" and "postgres" in services
    assert url.port == 5432
    postgres_env = env_dict(services["postgres"])
    assert url.username == postgres_env["POSTGRES_USER"] == example_env["POSTGRES_USER"]
    assert url.password == postgres_env["POSTGRES_PASSWORD"] == example_env["POSTGRES_PASSWORD"]
    assert url.path == "/" + postgres_env["POSTGRES_DB"]
    assert "$" not in urls["pipeline"]


def test_missing_password_stops_compose(compose, example_env):
    env = dict(example_env)
    del env["POSTGRES_PASSWORD"]
    with pytest.raises(InterpolationError, match="POSTGRES_PASSWORD"):
        interpolate(compose, env)
    with pytest.raises(InterpolationError, match="POSTGRES_PASSWORD"):
        interpolate(compose, {**env, "POSTGRES_PASSWORD": ""})


def test_interpolated_environment_is_accepted_by_pipeline_settings(interpolated):
    from pipeline.config import Settings

    for name in APP_SERVICES:
        env = {k: str(v) for k, v in env_dict(interpolated["services"][name]).items()}
        settings = Settings.from_env(env)
        assert settings.is_postgres, name
        assert str(settings.data_dir) == "/data"
        assert settings.api_key is None  # empty key in .env.example = no key
        assert settings.interval_minutes == int(env["PIPELINE_INTERVAL_MINUTES"])
        assert settings.top_n == int(env["PIPELINE_TOP_N"])


# --------------------------------------------------------------------------
# external PostgreSQL override
# --------------------------------------------------------------------------


def test_external_db_override_replaces_the_bundled_database(compose, example_env):
    override = load_compose(EXTERNAL_DB_OVERRIDE)
    external_url = "postgresql://etl:pw@db.example.internal:6543/analytics"
    env = {**example_env, "DATABASE_URL": external_url}
    merged = merge_compose(interpolate(compose, env), interpolate(override, env))
    services = merged["services"]
    active = {name for name, s in services.items() if not s.get("profiles")}
    assert active == set(APP_SERVICES), "bundled postgres must be profile-gated"
    for name in APP_SERVICES:
        service = services[name]
        assert env_dict(service)["DATABASE_URL"] == external_url
        # Compose rejects a dependency on a service that is not started.
        for target in service.get("depends_on") or {}:
            assert target in active, f"{name} still waits for disabled {target}"
        assert command_list(service) == command_list(compose["services"][name])
    # Without DATABASE_URL the override refuses to start instead of silently using postgres:5432.
    with pytest.raises(InterpolationError, match="DATABASE_URL"):
        interpolate(override, example_env)
