"""Event logs written by the daemon (task and escape records, SIGUSR1 reopen) and the
service integration: sd_notify with -s, daemonizing with -d -p."""
import json
import os
import signal
import socket
import subprocess
import time

from conftest import PROXYD, wait_for
from peers import ScriptOrigin, read_head


def http_origin():
    def handler(sock, origin):
        head, _ = read_head(sock)
        if head:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    return ScriptOrigin(handler).start()


def config(logdir):
    return f"""
runtime:
  server_offline_delay: 100ms
  task_wait_delay: 50ms
worker:
  thread_number: 1
log:
  default: discard
  task:
    file: {{path: {logdir}/task.log, format: json}}
  escape:
    file: {{path: {logdir}/escape.log, format: text}}
resolver:
  - {{name: r, type: deny_all}}
escaper:
  - name: e
    type: direct_fixed
    resolver: r
    egress_network_filter: {{default: allow, allow: 127.0.0.1}}
server:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: e
"""


def records(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_task_and_escape_records_and_reopen(proxyd):
    logdir = proxyd.dir
    proxyd.write("main.yaml", config(logdir))
    proxyd.start()
    port = proxyd.listen_port("http")
    origin = http_origin()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET http://127.0.0.1:%d/a?b=c HTTP/1.1\r\nHost: x\r\nUser-Agent: t/1\r\n"
              b"Connection: close\r\n\r\n" % origin.port)
    assert read_head(s)[0].startswith(b"HTTP/1.1 200")
    s.close()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_head(s)[0].startswith(b"HTTP/1.1 521")
    s.close()

    task_log = os.path.join(logdir, "task.log")
    recs = wait_for(lambda: len(records(task_log)) >= 2 and records(task_log), 5, what="task records")
    fwd = [r for r in recs if r.get("task_type") == "HttpForward"][0]
    assert fwd["log_type"] == "Task" and fwd["server_type"] == "HttpProxy"
    assert fwd["server_name"] == "http" and fwd["escaper"] == "e"
    assert fwd["reason"] == "Finished" and fwd["task_event"] == "Finished"
    assert fwd["method"] == "GET" and fwd["uri"] == "http://127.0.0.1:%d/a?b=c" % origin.port
    assert fwd["user_agent"] == "t/1" and fwd["rsp_status"] == 200
    assert fwd["upstream"] == "127.0.0.1:%d" % origin.port
    assert fwd["next_peer_addr"] == "127.0.0.1:%d" % origin.port
    assert len(fwd["task_id"]) == 32 and fwd["pid"] == proxyd.proc.pid
    assert fwd["c_wr_bytes"] > 0 and fwd["r_rd_bytes"] > 0 and fwd["c_rd_bytes"] > 0
    for k in ("start_at", "total_time", "server_addr", "client_addr", "tcp_connect_tries"):
        assert k in fwd, k
    tcp = [r for r in recs if r.get("task_type") == "TcpConnect"][0]
    assert tcp["reason"] == "UpstreamNotConnected" and tcp["upstream"] == "127.0.0.1:1"

    esc = wait_for(lambda: open(os.path.join(logdir, "escape.log")).read(), 5, what="escape log")
    assert "log_type=Escape" in esc and "escaper_type=DirectFixed" in esc
    assert "escape_type=TcpConnect" in esc and "upstream=127.0.0.1:1" in esc
    assert "reason=UpstreamNotConnected" in esc

    # logrotate: rename, SIGUSR1, the next record lands in a new file
    os.rename(task_log, task_log + ".1")
    proxyd.signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(task_log), 5, what="reopened task.log")
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET http://127.0.0.1:%d/again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % origin.port)
    read_head(s)
    s.close()
    recs = wait_for(lambda: records(task_log), 5, what="record after reopen")
    assert recs[0]["uri"].endswith("/again")
    assert len(records(task_log + ".1")) == 2
    origin.stop()


def test_sd_notify_protocol(proxyd):
    proxyd.write("main.yaml", config(proxyd.dir))
    sock_path = os.path.join(proxyd.dir, "notify.sock")
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.bind(sock_path)
    n.settimeout(20)
    proxyd.start(args=["-s"], env={"NOTIFY_SOCKET": sock_path})
    msgs = []

    def expect(word):
        while True:
            m = n.recv(4096).decode()
            msgs.append(m)
            if word in m:
                return m
    m = expect("READY=1")
    assert f"MAINPID={proxyd.proc.pid}" in m
    proxyd.ctl("reload")
    assert "RELOADING=1" in expect("RELOADING=1")
    assert "READY=1" in expect("READY=1")
    proxyd.signal(signal.SIGTERM)
    assert "STOPPING=1" in expect("STOPPING=1")
    assert proxyd.wait(10) == 0
    n.close()


def test_daemonize_with_pid_file(tmp_path):
    cfg = tmp_path / "main.yaml"
    cfg.write_text("runtime: {server_offline_delay: 100ms, task_wait_delay: 50ms}\n"
                   "server:\n  - {name: s, type: dummy_close, listen: '127.0.0.1:0'}\n")
    pidfile = tmp_path / "proxyd.pid"
    ctl = tmp_path / "ctl"
    r = subprocess.run([PROXYD, "-d", "-p", str(pidfile), "-c", str(cfg), "-C", str(ctl)],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10,
                       what="pid file"))
    assert os.path.exists(f"/proc/{pid}")
    wait_for(lambda: (ctl / "_.sock").exists(), 10, what="control socket")
    try:
        # a second instance with the same pid file fails after detaching: the command
        # that started it still gets the status through the readiness pipe
        r = subprocess.run([PROXYD, "-d", "-p", str(pidfile), "-c", str(cfg), "-C",
                            str(tmp_path / "c2")], capture_output=True, timeout=30)
        assert r.returncode == 71, r.stderr
        assert int(pidfile.read_text()) == pid
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 15, what="daemon exit")
    assert not pidfile.exists()
