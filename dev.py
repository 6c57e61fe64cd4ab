#!/usr/bin/env python3
"""The two quick-start commands, needing nothing but Python 3.11+:

    python3 dev.py demo    install into ./.venv, build demo data, serve it on http://127.0.0.1:8000/
    python3 dev.py test    install into ./.venv, then ruff, mypy, import contracts and the whole
                           test suite on SQLite and on PostgreSQL (127.0.0.1:5432), with Redis
                           (127.0.0.1:6379) for the rate-limit tests

`.ci/run` runs `python3 dev.py test`. Extra arguments after `test` go to pytest; after `demo`, to
`callvault demo`. `test` also takes, before the pytest arguments:

    --at 2027-12-31T23:59   run the suite with every process's clock moved to that local time (libfaketime,
                            Debian's `faketime`): no test may depend on the day it runs
    --db sqlite|postgres    one database only (the default is both, one after the other)
    --parallel              both databases at once (each its own pytest, temp folder and log under build/)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import venv
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
# System tools the product and its tests use (Debian package names); installed when missing and possible.
SYSTEM_PACKAGES = {"espeak-ng": "espeak-ng", "sipp": "sip-tester", "chromium": "chromium",
                   "fusermount3": "fuse3", "wrk": "wrk",  # wrk: bench/http.py's load generator
                   "faketime": "faketime"}  # `dev.py test --at`: the suite on another day
LIBFAKETIME = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
               "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1", "/usr/lib/faketime/libfaketimeMT.so.1")


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m", flush=True)


def run(*args: str | Path, check: bool = True, env: dict[str, str] | None = None) -> int:
    proc = subprocess.run([str(a) for a in args], cwd=ROOT, env=env)  # noqa: S603
    if check and proc.returncode != 0:
        sys.exit(proc.returncode)
    return proc.returncode


def install(extra: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 the user has
        sys.exit(f"callvault needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
        run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    say(f"installing callvault{extra} into .venv")
    run(PY, "-m", "pip", "install", "--quiet", "-e", f".{extra}")


def install_system_packages() -> None:
    """Best effort: apt-get what is missing when we may (root on Debian); say so when we cannot."""
    missing = [pkg for exe, pkg in SYSTEM_PACKAGES.items() if shutil.which(exe) is None]
    if not missing:
        return
    if shutil.which("apt-get") and os.geteuid() == 0:
        say(f"installing system packages: {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if run("apt-get", "install", "-y", "-q", *missing, check=False, env=env) != 0:
            run("apt-get", "update", "-q", check=False, env=env)
            run("apt-get", "install", "-y", "-q", *missing, check=False, env=env)
    else:
        say(f"optional system packages missing ({' '.join(missing)}); demo audio falls back to synthetic tones")


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


def ensure_postgres() -> None:
    if postgres_reachable():
        return
    clusters = Path("/etc/postgresql")
    if shutil.which("pg_ctlcluster") and clusters.exists():
        for version in sorted(p.name for p in clusters.iterdir()):
            say(f"starting PostgreSQL {version}")
            run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start", check=False)
    if not postgres_reachable():
        sys.exit("PostgreSQL is not reachable on 127.0.0.1:5432 (trust auth expected); the suite runs against it. "
                 "Start it, or point CALLVAULT_TEST_PG at one.")


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2):
            return True
    except OSError:
        return False


def ensure_redis() -> None:
    """The rate-limit tests run against a real Redis too (CALLVAULT_REDIS_URL); they fail, not skip, without one."""
    if redis_reachable():
        return
    if shutil.which("redis-server"):
        say("starting redis-server on 127.0.0.1:6379")
        run("redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "",
            "--appendonly", "no", check=False)
        for _ in range(50):
            if redis_reachable():
                return
            time.sleep(0.1)
    sys.exit("Redis is not reachable on 127.0.0.1:6379; the rate-limit tests need it. Install and start it "
             "(apt-get install redis-server; redis-server --daemonize yes), or point CALLVAULT_TEST_REDIS at one.")


def demo(args: list[str]) -> None:
    install("")
    install_system_packages()
    say("starting the callvault demo")
    os.execv(str(BIN / "callvault"), [str(BIN / "callvault"), "demo", *args])  # noqa: S606


def faketime_env(at: str) -> dict[str, str]:
    """The environment that moves every process of the run (pytest, the servers and CLIs it starts,
    chromium, sipp) to local time ``at``. An offset from the real clock rather than a start time, so
    that children started later agree with their parent and time still flows (timeouts, TOTP steps).
    The PostgreSQL server keeps the real time: the product must never take "now" from the database."""
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        sys.exit(f"--at {at!r} is not a date and time; write it as 2027-12-31T23:59 (local time)")
    library = next((p for p in LIBFAKETIME if Path(p).exists()), None)
    if library is None:
        sys.exit("--at needs libfaketime: apt-get install faketime")
    offset = int((moment.astimezone() - datetime.now().astimezone()).total_seconds())
    # The monotonic clock stays: moved, libfaketime 0.9.10 makes every timed wait of Python 3.11 last the
    # offset; tests/faketime/sitecustomize.py routes time.sleep() around its other flaw (see there).
    # FAKETIME_CACHE_DURATION: read FAKETIME once, not every 10 s; a re-read is a getenv() on whichever
    # thread asks the time, which races a setenv() on another (os.environ writes) and crashed the run.
    python_path = os.pathsep.join(p for p in (str(ROOT / "tests" / "faketime"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "LD_PRELOAD": library, "FAKETIME": f"{offset:+d}", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_CACHE_DURATION": str(10**9), "PYTHONPATH": python_path}


def _options(args: list[str]) -> tuple[str | None, list[str], bool, list[str]]:
    """dev.py's own ``--at`` and ``--db`` (``--at X`` or ``--at=X``) and ``--parallel``, and the rest for
    pytest."""
    own: dict[str, str] = {}
    rest: list[str] = []
    parallel = "--parallel" in args
    words = iter(a for a in args if a != "--parallel")
    for word in words:
        name, equals, value = word.partition("=")
        if name not in ("--at", "--db"):
            rest.append(word)
            continue
        if not equals:
            value = next(words, "")
        if not value:
            sys.exit(f"{name} needs a value")
        own[name] = value
    databases = ["sqlite", "postgres"]
    if "--db" in own:
        if own["--db"] not in databases:
            sys.exit(f"--db {own['--db']!r}: choose sqlite or postgres")
        databases = [own["--db"]]
    return own.get("--at"), databases, parallel, rest


LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def _suites_at_once(databases: list[str], args: list[str], env: dict[str, str] | None) -> list[str]:
    """Each database's suite in its own pytest process at the same time (own --basetemp, so neither
    cleans up the other's folders); their output goes to build/test-<db>.log and is printed when done."""
    logs = ROOT / "build"
    logs.mkdir(exist_ok=True)
    started = time.monotonic()
    running = []
    for database in databases:
        log = logs / f"test-{database}.log"
        out = log.open("wb")
        proc = subprocess.Popen(  # noqa: S603
            [str(PY), "-m", "pytest", f"--db={database}", f"--basetemp={logs / f'tmp-{database}'}", *args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        running.append((database, proc, out, log))
        say(f"tests on {LABELS[database]} started (log: {log.relative_to(ROOT)})")
    failures = []
    for database, proc, out, log in running:
        code = proc.wait()
        out.close()
        say(f"tests on {LABELS[database]} ({'passed' if code == 0 else 'FAILED'}, "
            f"{(time.monotonic() - started) / 60:.1f} min after the start):")
        sys.stdout.write(log.read_text(errors="replace"))
        sys.stdout.flush()
        if code != 0:
            failures.append(f"tests on {LABELS[database]}")
    return failures


def test(argv: list[str]) -> None:
    at, databases, parallel, args = _options(argv)
    install("[test]")
    install_system_packages()
    env = faketime_env(at) if at else None
    if at:
        say(f"the suite runs with the clock at {at} local time (libfaketime)")
    failures = []
    for name, cmd in (
        ("ruff", [BIN / "ruff", "check", "."]),
        ("mypy", [BIN / "mypy", "callvault", "tests", "bench"]),
        ("import contracts", [BIN / "lint-imports"]),
    ):
        say(name)
        if run(*cmd, check=False) != 0:
            failures.append(name)
    ensure_redis()
    if "postgres" in databases:
        ensure_postgres()
    if parallel and len(databases) > 1:
        failures += _suites_at_once(databases, args, env)
    else:
        for database in databases:
            say(f"tests on {LABELS[database]}")
            started = time.monotonic()
            if run(PY, "-m", "pytest", f"--db={database}", *args, check=False, env=env) != 0:
                failures.append(f"tests on {LABELS[database]}")
            say(f"tests on {LABELS[database]} took {(time.monotonic() - started) / 60:.1f} min")
    if failures:
        say(f"FAILED: {', '.join(failures)}")
        sys.exit(1)
    say("all checks passed")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test"):
        sys.exit(__doc__)
    {"demo": demo, "test": test}[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
