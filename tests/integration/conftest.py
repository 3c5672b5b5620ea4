"""Fixtures for integration tests: the real proxyd on loopback, driven by real clients.

Every daemon started here is stopped at teardown; its exit status and stderr are
checked so that a sanitizer report (ASan, UBSan, LeakSanitizer) fails the test that
caused it.
"""
import json
import os
import signal
import socket
import subprocess
import tempfile
import textwrap
import time

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROXYD = os.environ.get("PROXYD_BIN", os.path.join(TOP, "build", "proxyd"))
PROXYCTL = os.environ.get("PROXYCTL_BIN", os.path.join(TOP, "build", "proxyctl"))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "AddressSanitizer:", "BUG at")


def wait_for(cond, timeout=10.0, interval=0.02, what="condition"):
    """Poll cond() until it returns a true value; fail after timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port(host="127.0.0.1", kind=socket.SOCK_STREAM):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_both(host="127.0.0.1"):
    """A port free for both TCP and UDP (DNS servers bind both)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(fam, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            with socket.socket(fam, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
                return port
    raise AssertionError("no port free for TCP and UDP")


class Proxyd:
    """One proxyd process with its own config directory and control directory."""

    def __init__(self, tmp, name="p"):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.ctl_dir = os.path.join(self.dir, "ctl")
        self.proc = None
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.expect_exit = 0

    def write(self, rel, text):
        path = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text).lstrip("\n"))
        return path

    def check_config(self, main="main.yaml"):
        return subprocess.run([PROXYD, "-t", "-c", os.path.join(self.dir, main)],
                              capture_output=True, text=True, timeout=30)

    def start(self, main="main.yaml", args=(), wait=True, env=None):
        self.stderr = open(self.stderr_path, "ab")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(
            [PROXYD, "-c", os.path.join(self.dir, main), "-C", self.ctl_dir, *args],
            stdout=subprocess.DEVNULL, stderr=self.stderr, env=e)
        if wait:
            wait_for(lambda: self._ready(), 20, what="proxyd control socket")
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"proxyd exited with {self.proc.returncode}:\n{self.log()}")
        r = self.ctl("version", check=False)
        return r.returncode == 0

    def ctl(self, *args, check=True, timeout=60):
        r = subprocess.run([PROXYCTL, "-C", self.ctl_dir, *args], capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"proxyctl {' '.join(args)} -> {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}\nlog:\n{self.log()}")
        return r

    def ctl_json(self, *args):
        return json.loads(self.ctl("--json", *args).stdout)

    def stats(self):
        return self.ctl_json("stats")

    def listen_port(self, server):
        """Port a server actually listens on (the config may say port 0)."""
        for s in self.stats()["servers"]:
            if s["name"] == server:
                return int(s["listen"].rsplit(":", 1)[1])
        raise KeyError(server)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=30):
        return self.proc.wait(timeout=timeout)

    def log(self):
        try:
            with open(self.stderr_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        """Quit now (SIGINT) and return the exit status."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("proxyd did not quit within 30s of SIGINT")
        return self.proc.returncode if self.proc else 0

    def assert_clean(self):
        log = self.log()
        for mark in SANITIZER_MARKS:
            assert mark not in log, f"sanitizer or BUG report in proxyd's stderr:\n{log}"


@pytest.fixture
def tmpdir_path():
    with tempfile.TemporaryDirectory(prefix="proxyd-test-") as d:
        os.chmod(d, 0o755)
        yield d


@pytest.fixture
def proxyd_factory(tmpdir_path):
    started = []

    def make(name="p"):
        p = Proxyd(tmpdir_path, name)
        started.append(p)
        return p

    yield make
    errors = []
    for p in started:
        if p.proc is None:
            continue
        rc = p.stop()
        try:
            p.assert_clean()
            if rc != p.expect_exit:
                errors.append(f"proxyd exited with {rc} (expected {p.expect_exit}):\n{p.log()}")
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture
def proxyd(proxyd_factory):
    return proxyd_factory()
