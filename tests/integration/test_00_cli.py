"""proxyd and proxyctl command lines: flags, help, version, exit statuses."""
import subprocess

from conftest import PROXYCTL, PROXYD


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, **kw)


def test_version_and_help():
    r = run(PROXYD, "-V")
    assert r.returncode == 0 and r.stdout.startswith("proxyd ")
    r = run(PROXYD, "-V", "-v")
    assert "OpenSSL 3" in r.stdout and "c-ares" in r.stdout and "servers: http_proxy" in r.stdout
    r = run(PROXYD, "--help")
    assert r.returncode == 0 and "--config-file" in r.stdout and "--test-config" in r.stdout
    r = run(PROXYCTL, "--help")
    assert r.returncode == 0 and "reload-server" in r.stdout


def test_bad_usage_exits_2():
    assert run(PROXYD, "--no-such-flag").returncode == 2
    assert run(PROXYD, "-d").returncode == 2  # --daemon needs --pid-file
    assert run(PROXYD, "extra-arg").returncode == 2
    assert run(PROXYCTL).returncode == 2
    assert run(PROXYCTL, "frobnicate").returncode == 2
    assert run(PROXYCTL, "list", "nothing").returncode == 2
    assert run(PROXYCTL, "server", "x").returncode == 2


def test_unreachable_daemon_exits_3(tmp_path):
    r = run(PROXYCTL, "-C", str(tmp_path), "version")
    assert r.returncode == 3
    assert "cannot reach proxyd" in r.stderr


def test_test_config(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("server:\n  - name: s\n    type: dummy_close\n")
    r = run(PROXYD, "-t", "-c", str(good))
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  - name: s\n    type: dummy_close\n    bogus: 1\n")
    r = run(PROXYD, "-t", "-c", str(bad))
    assert r.returncode == 78
    assert f"{bad}:4:5: server 's': unknown key 'bogus'" in r.stderr
    r = run(PROXYD, "-t", "-c", str(tmp_path / "missing.yaml"))
    assert r.returncode == 78
    assert "missing.yaml" in r.stderr


def test_config_directory_finds_main_yaml(tmp_path):
    (tmp_path / "main.yaml").write_text("server:\n  - {name: s, type: dummy_close}\n")
    r = run(PROXYD, "-t", "-c", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "main.yaml" in r.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run(PROXYD, "-t", "-c", str(empty))
    assert r.returncode == 78 and "no main.yaml" in r.stderr
