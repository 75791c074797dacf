"""The CI entry point, ``.ci/run``, on machines made of stub commands: it installs what
``make test`` needs as root, or with sudo that needs no password, never waits for a
password, and otherwise stops and says what to install. It runs ``make test`` with
``CI=true`` unless the caller set ``CI``.

Nothing is installed and nothing runs as another user: ``id``, ``sudo``, ``apt-get``,
``make``, ``python3``, ``chromium``, ``redis-server`` and ``promtool`` are stubs on a PATH
of the test's own, and each stub writes what it was asked to a log.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "run"
BASICS = ("bash", "env", "dirname", "cat", "true", "cp")
"""Real commands that the script and the stubs use."""
RUN_BOUND = 30.0
"""Real seconds one run of the script may take; it waits for nothing."""
EVERYTHING = ("apt-get", "make", "python3", "chromium", "redis-server", "promtool")

_bash = shutil.which("bash")
if _bash is None:  # pragma: no cover - every Debian has bash
    pytest.skip(".ci/run is a bash script and bash is not installed", allow_module_level=True)
BASH: str = _bash

STUBS: dict[str, tuple[str, str]] = {
    # name: (the command it stands for, what it does)
    "apt-get": (
        "apt-get",
        'log "apt-get $* (uid $(id -u), DEBIAN_FRONTEND=${DEBIAN_FRONTEND-unset})"\n'
        # Installing make puts the make stub on PATH, as the package would.
        'if [ "$1" = install ] && [[ " $* " = *" make "* ]]; then\n'
        '    cp "$(dirname "$0")/../packages/make" "$(dirname "$0")/make"\n'
        "fi",
    ),
    "make": ("make", 'log "make $* (CI=${CI-unset})"'),
    "python3": ("python3", "exit 0"),
    # Debian's python3 without python3-venv: no ensurepip, so `python3 -m venv` fails.
    "python3-without-venv": ("python3", '[ "$*" = "-c import ensurepip" ] && exit 1; exit 0'),
    "chromium": ("chromium", "exit 0"),
    "redis-server": ("redis-server", "exit 0"),
    "promtool": ("promtool", "exit 0"),
    "sudo": (
        "sudo",
        '[ "$1" = -n ] || { log "sudo without -n: it would wait for a password"; exit 99; }\n'
        'log "sudo $*"; shift; exec "$@"',
    ),
    "sudo-asking-for-a-password": (
        "sudo",
        '[ "$1" = -n ] || { log "sudo without -n: it would wait for a password"; exit 99; }\n'
        'log "sudo $*"; echo "sudo: a password is required" >&2; exit 1',
    ),
}


def run(
    tmp_path: Path, *, uid: int, stubs: tuple[str, ...], ci: str | None = None
) -> tuple[int, list[str], str]:
    """Run .ci/run as user ``uid`` on a machine with only ``stubs`` (names in
    :data:`STUBS`) and the basics; return its exit status, the stubs' log, and what it
    wrote to stderr."""
    log = tmp_path / "calls.log"
    log.touch()
    prelude = f'#!{BASH}\nlog() {{ echo "$*" >> {log}; }}\n'
    user = "root" if uid == 0 else "ci"
    bodies = {"id": f'case "$1" in -u) echo {uid};; -un) echo {user};; *) exit 1;; esac'}
    bodies.update(STUBS[name] for name in stubs)
    bin_dir, packages = tmp_path / "bin", tmp_path / "packages"
    for directory, commands in [(bin_dir, bodies), (packages, dict([STUBS["make"]]))]:
        directory.mkdir()
        for command, body in commands.items():
            path = directory / command
            path.write_text(prelude + body + "\n")
            path.chmod(0o755)
    for basic in BASICS:
        found = shutil.which(basic)
        assert found is not None, f"{basic} is needed to run .ci/run"
        (bin_dir / basic).symlink_to(found)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run(
        [BASH, str(SCRIPT)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_BOUND,
        check=False,
    )
    return done.returncode, log.read_text().splitlines(), done.stderr


INSTALL = "install -y -qq --no-install-recommends"


def test_as_root_a_missing_chromium_is_installed_with_apt_get(tmp_path: Path) -> None:
    """Root installs chromium itself, without sudo, then runs make test with CI=true."""
    status, calls, _ = run(
        tmp_path, uid=0, stubs=("apt-get", "make", "python3", "redis-server", "promtool")
    )
    assert status == 0
    assert calls == [
        "apt-get update -qq (uid 0, DEBIAN_FRONTEND=noninteractive)",
        f"apt-get {INSTALL} chromium (uid 0, DEBIAN_FRONTEND=noninteractive)",
        "make test (CI=true)",
    ]


def test_a_user_with_passwordless_sudo_installs_through_sudo_n(tmp_path: Path) -> None:
    """Another user installs through ``sudo -n``, which fails rather than ask for a
    password; with sudo that needs none, chromium is installed and make test runs."""
    stubs = ("apt-get", "make", "python3", "sudo", "redis-server", "promtool")
    status, calls, _ = run(tmp_path, uid=1000, stubs=stubs)
    assert status == 0
    assert calls == [
        "sudo -n true",
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -qq",
        "apt-get update -qq (uid 1000, DEBIAN_FRONTEND=noninteractive)",
        f"sudo -n env DEBIAN_FRONTEND=noninteractive apt-get {INSTALL} chromium",
        f"apt-get {INSTALL} chromium (uid 1000, DEBIAN_FRONTEND=noninteractive)",
        "make test (CI=true)",
    ]


def test_a_user_without_sudo_is_told_what_to_install(tmp_path: Path) -> None:
    """Without root and without sudo (a fresh Debian), the script stops before apt-get and
    make, and names the packages and the command that installs them."""
    status, calls, stderr = run(
        tmp_path, uid=1000, stubs=("apt-get", "make", "python3", "redis-server", "promtool")
    )
    assert status == 1
    assert calls == []
    assert "these Debian packages are missing: chromium" in stderr
    assert "sudo is not installed" in stderr
    assert "apt-get install -y --no-install-recommends chromium" in stderr


def test_sudo_that_asks_for_a_password_is_not_waited_for(tmp_path: Path) -> None:
    """sudo that wants a password is asked only with -n, once: the script stops at once,
    saying why and what to install, and never runs apt-get or make."""
    stubs = ("apt-get", "make", "python3", "sudo-asking-for-a-password", "redis-server", "promtool")
    status, calls, stderr = run(tmp_path, uid=1000, stubs=stubs)
    assert status == 1
    assert calls == ["sudo -n true"]
    assert "sudo will not run it for ci without a password" in stderr
    assert "apt-get install -y --no-install-recommends chromium" in stderr


def test_with_chromium_present_nothing_is_installed(tmp_path: Path) -> None:
    """When everything is there, neither apt-get nor sudo runs, even for a user without
    sudo: make test runs with CI=true."""
    status, calls, _ = run(tmp_path, uid=1000, stubs=EVERYTHING)
    assert status == 0
    assert calls == ["make test (CI=true)"]


def test_only_what_is_missing_is_installed(tmp_path: Path) -> None:
    """make and python3's venv module, which make test needs, are installed when missing,
    in one apt-get with nothing else: chromium is there."""
    status, calls, _ = run(
        tmp_path,
        uid=0,
        stubs=("apt-get", "python3-without-venv", "chromium", "redis-server", "promtool"),
    )
    assert status == 0
    assert calls == [
        "apt-get update -qq (uid 0, DEBIAN_FRONTEND=noninteractive)",
        f"apt-get {INSTALL} make python3-venv (uid 0, DEBIAN_FRONTEND=noninteractive)",
        "make test (CI=true)",
    ]


@pytest.mark.parametrize(
    ("ci", "seen"),
    [
        pytest.param(None, "true", id="unset-becomes-true"),
        pytest.param("", "true", id="empty-becomes-true"),
        pytest.param("false", "false", id="false-is-kept"),
        pytest.param("true", "true", id="true-is-kept"),
    ],
)
def test_ci_is_true_unless_the_caller_set_it(tmp_path: Path, ci: str | None, seen: str) -> None:
    """make test runs with CI=true, under which missing browsers and servers fail the
    tests; a CI the caller set is kept."""
    status, calls, _ = run(tmp_path, uid=0, stubs=EVERYTHING, ci=ci)
    assert status == 0
    assert calls == [f"make test (CI={seen})"]


def test_without_apt_get_the_script_says_what_to_install(tmp_path: Path) -> None:
    """On a machine without apt-get (not Debian), the script names the packages to install
    with that system's package manager, and stops."""
    status, calls, stderr = run(
        tmp_path, uid=0, stubs=("make", "python3", "redis-server", "promtool")
    )
    assert status == 1
    assert calls == []
    assert "these Debian packages are missing: chromium" in stderr
    assert "There is no apt-get" in stderr


def test_a_missing_redis_server_is_installed_for_the_shared_state_tests(tmp_path: Path) -> None:
    """The shared-state tests start a real redis-server: as root, a missing one is installed
    in the same apt-get as anything else missing."""
    status, calls, _ = run(tmp_path, uid=0, stubs=("apt-get", "make", "python3", "promtool"))
    assert status == 0
    assert calls == [
        "apt-get update -qq (uid 0, DEBIAN_FRONTEND=noninteractive)",
        f"apt-get {INSTALL} chromium redis-server (uid 0, DEBIAN_FRONTEND=noninteractive)",
        "make test (CI=true)",
    ]


def test_a_missing_promtool_is_installed_with_the_prometheus_package(tmp_path: Path) -> None:
    """The telemetry tests run promtool on the alert rules: as root, a missing promtool is
    installed through Debian's prometheus package, in the same apt-get as the rest."""
    status, calls, _ = run(tmp_path, uid=0, stubs=("apt-get", "make", "python3", "chromium"))
    assert status == 0
    assert calls == [
        "apt-get update -qq (uid 0, DEBIAN_FRONTEND=noninteractive)",
        f"apt-get {INSTALL} redis-server prometheus (uid 0, DEBIAN_FRONTEND=noninteractive)",
        "make test (CI=true)",
    ]
