"""Files outside the spool (issue 14, class 1): only a regular file, or a link to one, is ever
read as the config or replaced by `config set`/`config init`. Anything else (a device, a FIFO,
a socket, a directory, a dangling link, a link loop, a file past the size cap) is exit 2 with
one `hamustro: error:` line naming it, nothing on disk changes, and nothing blocks or reads without end.

Real files of each kind, real processes (a process that would block or fill its memory is the
point: each runs with a timeout and an address-space limit), and two `config set` racing as
real processes."""

from __future__ import annotations

import os
import resource
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SETTINGS, write_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # as the package reads it (config.py)
    import tomli as tomllib

MEMORY_LIMIT = 1024 * 1024 * 1024  # a reader without bound dies here instead of taking the machine


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def hamustro(*args: str, config: Path | str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HAMUSTRO_CONFIG": str(config)}
    try:
        return subprocess.run(
            [sys.executable, "-m", "hamustro_cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            preexec_fn=limited,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"hamustro {' '.join(args)} blocked on {config}") from None


def one_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("hamustro: warning")]
    assert len(lines) == 1 and lines[0].startswith("hamustro: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def device(path: Path, major: int, minor: int) -> Path:
    """A character device node of our own (replacing the machine's /dev/null is what the test
    guards against, so the old code is never let loose on the real one)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD (root); the device cases cannot be made here")
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def unix_socket(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the socket file stays
    return path


def directory(path: Path) -> Path:
    path.mkdir()
    return path


def dangling_link(path: Path) -> Path:
    path.symlink_to(path.parent / "nowhere" / "deeper" / "config.toml")
    return path


def link_loop(path: Path) -> Path:
    other = path.parent / "other-link"
    other.symlink_to(path)
    path.symlink_to(other)
    return path


def huge_file(path: Path) -> Path:
    with open(path, "wb") as fh:
        fh.write(b"# padding\n" * (120 * 1024))  # 1.2 MiB of valid TOML comments
    return path


def link_to(make: Callable[[Path], Path]) -> Callable[[Path], Path]:
    def made(path: Path) -> Path:
        target = make(path.parent / ("target-" + path.name))
        path.symlink_to(target)
        return path

    return made


KINDS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "dev-null": (lambda p: device(p, 1, 3), "character device"),
    "dev-zero": (lambda p: device(p, 1, 5), "character device"),
    "fifo": (fifo, "FIFO"),
    "socket": (unix_socket, "socket"),
    "directory": (directory, "directory"),
    "dangling-link": (dangling_link, "symbolic link to"),
    "link-loop": (link_loop, "loop"),
    "huge-file": (huge_file, "larger than 1024 KiB"),
    "link-to-fifo": (link_to(fifo), "FIFO"),
    "link-to-device": (link_to(lambda p: device(p, 1, 3)), "character device"),
}


def disk(tmp_path: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every name under tmp_path with its kind, inode, size and device number (links not followed)."""
    found = {}
    for root, dirs, files in os.walk(tmp_path):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            found[os.path.join(root, name)] = (st.st_mode, st.st_ino, st.st_size, st.st_rdev)
    return found


INIT = [
    "config",
    "init",
    "--force",
    "--secret-stdin",
    "--collector-url",
    "http://127.0.0.1:9",
    "--device-id",
    "d",
    "--client-id",
    "c",
    "--system-version",
    "1",
    "--product-version",
    "1",
]


@pytest.mark.parametrize("kind", KINDS)
def test_a_config_path_that_is_not_a_regular_file_is_never_written(tmp_path: Path, kind: str) -> None:
    make, words = KINDS[kind]
    work = tmp_path / "work"
    work.mkdir()
    path = make(work / "config.toml")
    before = disk(tmp_path)
    one_error(
        hamustro("config", "set", "queue_size", "3", config=path), str(path), words, "nothing was written"
    )
    assert disk(tmp_path) == before
    if kind == "huge-file":  # a regular file: --force replaces it, as asked
        assert hamustro(*INIT, config=path, stdin="secret").returncode == 0
        assert tomllib.loads(path.read_text())["client_id"] == "c"
        return
    one_error(hamustro(*INIT, config=path, stdin="secret"), str(path), words, "nothing was written")
    assert disk(tmp_path) == before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", [["track", "x"], ["config", "show"], ["status"]])
def test_a_config_path_that_is_not_a_regular_file_is_refused_without_blocking(
    tmp_path: Path, kind: str, command: list[str]
) -> None:
    make, words = KINDS[kind]
    work = tmp_path / "work"
    work.mkdir()
    path = make(work / "config.toml")
    before = disk(tmp_path)
    one_error(hamustro(*command, config=path), str(path), words)
    assert disk(tmp_path) == before


@pytest.mark.parametrize("name", ["/dev/null", "/dev/zero"])
def test_the_machines_own_devices_are_read_as_nothing_and_refused(name: str) -> None:
    """Read only (writing is tested on device nodes of the test's own): /dev/zero was read until
    memory ran out; /dev/null read as an empty config."""
    for command in (["track", "x"], ["config", "show"]):
        one_error(hamustro(*command, config=name), name, "character device")


def test_a_config_at_the_size_cap_is_read_and_one_past_it_refused(tmp_path: Path) -> None:
    cap = 1024 * 1024
    path = write_config(tmp_path / "config.toml", collector_url="http://127.0.0.1:9", **SETTINGS)
    text = path.read_text()
    path.write_text(text + "#" * (cap - len(text) - 1) + "\n")
    assert path.stat().st_size == cap
    assert hamustro("track", "fits", config=path).returncode == 0
    with open(path, "ab") as fh:
        fh.write(b"\n")
    one_error(hamustro("track", "too-big", config=path), "larger than 1024 KiB")
    one_error(hamustro("config", "set", "queue_size", "3", config=path), "larger than 1024 KiB")


def test_a_link_to_a_regular_file_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    real = write_config(tmp_path / "real.toml", collector_url="http://127.0.0.1:9", **SETTINGS)
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    assert hamustro("config", "set", "queue_size", "3", config=link).returncode == 0
    assert link.is_symlink() and tomllib.loads(real.read_text())["queue_size"] == 3


ROUNDS = 10
KEYS = {  # one key per racing process, a value per round
    "queue_size": lambda n: str(100 + n),
    "queue_retention": lambda n: str(200 + n),
    "timeout": lambda n: f"{n + 1}.5",
    "retries": lambda n: str(n),
    "retry_delay": lambda n: f"0.{n}5",
    "max_batch_events": lambda n: str(300 + n),
    "system": lambda n: f"os-{n}",
    "product_git_hash": lambda n: f"hash-{n}",
}


@pytest.mark.heavy
def test_config_sets_at_once_lose_no_update(tmp_path: Path) -> None:
    """Processes each setting a key of their own at the same moment, round after round: every
    change is in the file after each round (unserialised, a read-modify-write lost some)."""
    path = write_config(tmp_path / "config.toml", collector_url="http://127.0.0.1:9", **SETTINGS)
    env = {**os.environ, "HAMUSTRO_CONFIG": str(path)}
    lost = []
    for n in range(ROUNDS):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "hamustro_cli", "config", "set", key, value(n)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for key, value in KEYS.items()
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        settings = tomllib.loads(path.read_text())
        lost += [(n, key) for key, value in KEYS.items() if str(settings.get(key)) != value(n)]
    assert lost == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["config.toml"]  # nothing left


@pytest.mark.parametrize(
    "command",
    [["config", "set", "shared_secret_key", "-"], INIT],
    ids=["config-set-stdin", "config-init-secret-stdin"],
)
def test_a_value_from_standard_input_is_read_no_further_than_a_cap(
    tmp_path: Path, command: list[str]
) -> None:
    """`< /dev/zero` was read until memory ran out (or the address-space limit killed it)."""
    path = write_config(tmp_path / "config.toml", collector_url="http://127.0.0.1:9", **SETTINGS)
    before = path.read_bytes()
    with open("/dev/zero", "rb") as zero:
        proc = subprocess.run(
            [sys.executable, "-m", "hamustro_cli", *command],
            stdin=zero,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "HAMUSTRO_CONFIG": str(path)},
            preexec_fn=limited,
        )
    one_error(proc, "standard input", "KiB")
    assert path.read_bytes() == before


@pytest.mark.parametrize("kind", ["link", "fifo", "directory"])
def test_what_sits_at_the_lock_files_name_is_never_followed_or_opened(tmp_path: Path, kind: str) -> None:
    path = write_config(tmp_path / "config.toml", collector_url="http://127.0.0.1:9", **SETTINGS)
    lock = tmp_path / ".config.toml.lock"
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    {"link": lambda: lock.symlink_to(victim), "fifo": lambda: os.mkfifo(lock), "directory": lock.mkdir}[
        kind
    ]()
    before = disk(tmp_path)
    one_error(hamustro("config", "set", "queue_size", "3", config=path), str(lock), "nothing was written")
    assert disk(tmp_path) == before and victim.read_text() == "keep\n"
