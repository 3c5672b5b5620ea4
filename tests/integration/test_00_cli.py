"""proxyd and proxyctl command lines: flags, help, version, exit statuses."""
import subprocess

from conftest import PROXYCTL, PROXYD


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, **kw)


def test_version_and_help():
    r = run(PROXYD, "-V")
    assert r.returncode == 0 and r.stdout.startswith("proxyd ")
    r = run(PROXYD, "-V")
    assert "OpenSSL 3" in r.stdout and "c-ares" in r.stdout and "servers: http_proxy" in r.stdout
    r = run(PROXYD, "--help")
    assert r.returncode == 0 and "--config-file" in r.stdout and "--test-config" in r.stdout
    r = run(PROXYCTL, "--help")
    assert r.returncode == 0 and "reload-server" in r.stdout


def test_bad_usage_exits_64_and_2():
    # proxyd follows sysexits.h (EX_USAGE); proxyctl keeps 2
    assert run(PROXYD, "--no-such-flag").returncode == 64
    assert run(PROXYD, "-d").returncode == 64  # --daemon needs --pid-file
    assert run(PROXYD, "extra-arg").returncode == 64
    assert run(PROXYD, "-G", "bad/name", "-t").returncode == 64
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


def test_start_with_invalid_object_exits_78(tmp_path):
    """Not only -t: an error inside an object at start is EX_CONFIG too."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  - {name: s, type: http_proxy, escaper: nope, listen: '127.0.0.1:0'}\n")
    r = run(PROXYD, "-c", str(bad), "-C", str(tmp_path / "ctl"))
    assert r.returncode == 78, r.stderr
    assert "escaper 'nope' is not defined" in r.stderr
    # a log file that cannot be opened is a configuration error as well, also under -t
    logbad = tmp_path / "log.yaml"
    logbad.write_text("log: {task: {file: {path: /nonexistent/dir/task.log}}}\n")
    r = run(PROXYD, "-t", "-c", str(logbad))
    assert r.returncode == 78 and "/nonexistent/dir/task.log" in r.stderr


def test_bind_failure_exits_71_even_when_detaching(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    cfg = tmp_path / "main.yaml"
    cfg.write_text(f"server:\n  - {{name: s, type: dummy_close, listen: '127.0.0.1:{port}'}}\n")
    r = run(PROXYD, "-c", str(cfg), "-C", str(tmp_path / "ctl"))
    assert r.returncode == 71, r.stderr
    assert "cannot listen on 127.0.0.1:%d" % port in r.stderr
    # with -d the command that started it still gets the status
    r = run(PROXYD, "-d", "-p", str(tmp_path / "pid"), "-c", str(cfg), "-C", str(tmp_path / "ctl"))
    assert r.returncode == 71
    s.close()
