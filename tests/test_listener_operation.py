"""How the listener is run: systemd socket activation (``--listen systemd``, LISTEN_FDS) and PID 1 in a container
(a new PID namespace: it reaps orphaned children and passes SIGTERM on)."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from listener_support import Listener
from support import Runner, SmtpServer, entry_point
from test_listener import MESSAGE, configure

ROOT = Path(__file__).resolve().parent.parent


def _watch(proc: subprocess.Popen[bytes], port: int) -> Listener:
    listener = Listener(proc, port)
    threading.Thread(target=listener._drain, daemon=True).start()
    deadline = time.monotonic() + 30
    while "listening on" not in listener.text:
        assert proc.poll() is None and time.monotonic() < deadline, listener.text
        time.sleep(0.02)
    return listener


def test_systemd_socket_activation(run: Runner, auth_server: SmtpServer) -> None:
    configure(run, auth_server)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]

    # As systemd passes it: the socket as descriptor 3, LISTEN_PID the service's own pid (the shell's, which then
    # becomes esmtp).
    fd = sock.fileno()
    command = (f"exec 3<&{fd} {fd}<&-; LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=esmtp-listener.socket "
               f"exec {entry_point('esmtp')} --listen systemd")
    proc = subprocess.Popen(["/bin/bash", "-c", command], env=run.env(), stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, pass_fds=(fd,))
    sock.close()
    listener = _watch(proc, port)
    try:
        assert f"127.0.0.1:{port}" in listener.text
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.sendmail("app@example.org", ["bob@example.net"], MESSAGE)
        assert len(auth_server.sink.messages) == 1
        assert listener.stop() == 0
    finally:
        proc.kill()


def test_systemd_without_sockets_is_a_clear_error(run: Runner, auth_server: SmtpServer) -> None:
    configure(run, auth_server)
    result = run("--listen", "systemd", program="esmtp")
    assert result.returncode == 78 and "LISTEN_FDS" in result.stderr
    command = f"LISTEN_PID=$$ LISTEN_FDS=1 exec {entry_point('esmtp')} --listen systemd 3</dev/null"
    proc = subprocess.run(["/bin/sh", "-c", command], env=run.env(), capture_output=True, timeout=30)
    assert proc.returncode == 78 and b"descriptor 3 is not a" in proc.stderr, proc.stderr


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def _state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    return "?"


def test_pid_1_reaps_orphans_and_stops_on_sigterm(run: Runner, auth_server: SmtpServer) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        reason = "needs root and unshare(1) for a PID namespace"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{reason}; CI=true: a skip is a failure", pytrace=False)
        pytest.skip(reason)
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:  # a container without CAP_SYS_ADMIN: the machine cannot do it, nothing is missing
        pytest.skip(f"no PID namespace here: {probe.stderr.decode(errors='replace').strip()}")
    # preconnect leaves an orphan behind (a background job of the shell): it is re-parented to PID 1 and must be reaped.
    configure(run, auth_server, 'preconnect "sleep 0.2 & exit 0"\n')
    from support import port_for_a_program

    port = port_for_a_program()
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", entry_point("esmtp"), "--listen",
                             f"127.0.0.1:{port}"], env=run.env(), stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    listener = _watch(proc, port)
    try:
        (init,) = _children(proc.pid)  # esmtp as PID 1 of the namespace
        assert Path(f"/proc/{init}/status").read_text().count("NSpid:\t") == 1
        assert "\t1\n" in next(line for line in Path(f"/proc/{init}/status").read_text().splitlines(True)
                               if line.startswith("NSpid:"))
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            for _ in range(2):
                smtp.sendmail("app@example.org", ["bob@example.net"], MESSAGE)
        assert len(auth_server.sink.messages) == 2
        time.sleep(1)  # the orphaned sleeps have exited
        zombies = [pid for pid in _children(init) if _state(pid) == "Z"]
        assert zombies == [], "PID 1 left zombies behind"
        os.kill(init, signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "stopping" in listener.text
    finally:
        proc.kill()


def test_contrib_units_and_container_files() -> None:
    socket_unit = (ROOT / "contrib/systemd/esmtp-listener.socket").read_text()
    service = (ROOT / "contrib/systemd/esmtp-listener.service").read_text()
    assert "Accept=no" in socket_unit and "ListenStream=127.0.0.1:25" in socket_unit
    assert "--listen systemd" in service and "User=esmtp" in service
    dockerfile = (ROOT / "contrib/docker/Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3" in dockerfile and '"--listen", "25"' in dockerfile
    compose = (ROOT / "contrib/docker/compose.yaml").read_text()
    assert "ESMTP_PASSWORD_FILE: /run/secrets/" in compose and "ESMTP_LISTEN_ALLOW" in compose
