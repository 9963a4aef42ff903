"""The SMTP dialogue as a server sees it: extensions used only when offered, DSN parameters, PIPELINING, HELO
fallback. A small scripted server records every command line exactly as it arrived."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from support import Runner

MESSAGE = b"From: a@example.org\nSubject: dsn\n\nbody\n"


@dataclass
class Scripted:
    extensions: list[str]
    reject_ehlo: bool = False
    lines: list[str] = field(default_factory=list)
    #: For each MAIL command: whether RCPT and DATA had already arrived with it (the client did not wait).
    pipelined: list[bool] = field(default_factory=list)
    port: int = 0


def _serve(listener: socket.socket, script: Scripted) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.sendall(b"220 scripted ESMTP\r\n")
        buffer = b""
        in_data = False
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buffer += chunk
            while b"\r\n" in buffer:
                line, buffer = buffer.split(b"\r\n", 1)
                if in_data:
                    if line == b".":
                        in_data = False
                        conn.sendall(b"250 2.0.0 queued\r\n")
                    continue
                text = line.decode()
                script.lines.append(text)
                verb = text.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    if script.reject_ehlo:
                        conn.sendall(b"502 5.5.2 EHLO not implemented\r\n")
                    else:
                        reply = ["250-scripted", *[f"250-{ext}" for ext in script.extensions[:-1]],
                                 f"250 {script.extensions[-1]}"]
                        conn.sendall(("\r\n".join(reply) + "\r\n").encode())
                elif verb == "HELO":
                    conn.sendall(b"250 scripted\r\n")
                elif verb == "MAIL":
                    script.pipelined.append(b"DATA" in buffer)
                    conn.sendall(b"250 2.1.0 ok\r\n")
                elif verb == "RCPT":
                    conn.sendall(b"250 2.1.5 ok\r\n")
                elif verb == "DATA":
                    in_data = True
                    conn.sendall(b"354 go ahead\r\n")
                elif verb == "QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")


@pytest.fixture
def scripted(request: pytest.FixtureRequest) -> Iterator[Scripted]:
    script: Scripted = request.param
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    script.port = listener.getsockname()[1]
    thread = threading.Thread(target=_serve, args=(listener, script), daemon=True)
    thread.start()
    yield script
    listener.close()
    thread.join(timeout=5)


FULL = Scripted(["PIPELINING", "SIZE 10000000", "8BITMIME", "DSN", "SMTPUTF8", "ENHANCEDSTATUSCODES"])


@pytest.mark.parametrize("scripted", [FULL], indirect=True)
def test_dsn_size_body_and_pipelining(run: Runner, scripted: Scripted) -> None:
    run.write_config(f"hostname 127.0.0.1:{scripted.port}\n")
    result = run("-N", "success,failure", "-R", "hdrs", "-V", "id+1=2 x", "-B", "8BITMIME", "-f", "a@example.org",
                 "b@example.net", "c@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    mail = next(line for line in scripted.lines if line.startswith("MAIL"))
    assert mail.startswith("MAIL FROM:<a@example.org> SIZE=")
    assert "BODY=8BITMIME" in mail and "RET=HDRS" in mail and "ENVID=id+2B1+3D2+20x" in mail
    rcpts = [line for line in scripted.lines if line.startswith("RCPT")]
    assert rcpts == ["RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE", "RCPT TO:<c@example.net> NOTIFY=SUCCESS,FAILURE"]
    assert scripted.pipelined == [True]


@pytest.mark.parametrize("scripted", [Scripted(["SIZE 1000"])], indirect=True)
def test_parameters_are_left_out_when_not_offered(run: Runner, scripted: Scripted) -> None:
    run.write_config(f"hostname 127.0.0.1:{scripted.port}\n")
    result = run("-v", "-N", "never", "-R", "full", "-B", "7BIT", "b@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    mail = next(line for line in scripted.lines if line.startswith("MAIL"))
    assert "NOTIFY" not in " ".join(scripted.lines) and "RET=" not in mail and "BODY=" not in mail
    assert "does not offer DSN" in result.stderr
    assert scripted.pipelined == [False]  # no PIPELINING: one command at a time


@pytest.mark.parametrize("scripted", [Scripted(["PIPELINING"], reject_ehlo=True)], indirect=True)
def test_helo_fallback_when_ehlo_is_refused(run: Runner, scripted: Scripted) -> None:
    run.write_config(f"hostname 127.0.0.1:{scripted.port}\nhelo client.example\n")
    result = run("b@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert scripted.lines[:2] == ["EHLO client.example", "HELO client.example"]
    assert any(line == "RCPT TO:<b@example.net>" for line in scripted.lines)


@pytest.mark.parametrize("scripted", [Scripted(["PIPELINING", "8BITMIME"])], indirect=True)
def test_internationalised_domain_goes_in_idna_form_without_smtputf8(run: Runner, scripted: Scripted) -> None:
    run.write_config(f"hostname 127.0.0.1:{scripted.port}\n")
    result = run("-f", "me@bücher.example", "ann@bücher.example", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert "MAIL FROM:<me@xn--bcher-kva.example>" in scripted.lines  # and no SMTPUTF8 parameter
    assert [line for line in scripted.lines if line.startswith("RCPT")] == [
        "RCPT TO:<ann@xn--bcher-kva.example>", "RCPT TO:<bob@example.net>"]


@pytest.mark.parametrize("scripted", [Scripted(["PIPELINING", "8BITMIME"])], indirect=True)
def test_non_ascii_local_part_needs_smtputf8(run: Runner, scripted: Scripted) -> None:
    run.write_config(f"hostname 127.0.0.1:{scripted.port}\n")
    result = run("jörg@bücher.example", input=MESSAGE)
    assert result.returncode == 69
    assert f"127.0.0.1:{scripted.port} does not offer SMTPUTF8, needed for the address jörg@bücher.example" in (
        result.stderr)
    assert not any(line.startswith(("MAIL", "RCPT")) for line in scripted.lines)
