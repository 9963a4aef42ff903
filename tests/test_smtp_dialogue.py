"""The SMTP dialogue as a server sees it: extensions used only when offered, DSN parameters, PIPELINING, HELO
fallback. The scripted server records every command line exactly as it arrived."""

from __future__ import annotations

from support import Runner, ScriptedServer, StartScripted

MESSAGE = b"From: a@example.org\nSubject: dsn\n\nbody\n"


def pipelined(server: ScriptedServer) -> list[bool]:
    """For each message: whether its DATA had arrived before the server answered the RCPT before it."""
    return [command.early for command in server.connections[0].commands if command.verb == "DATA"]


FULL = ("PIPELINING", "SIZE 10000000", "8BITMIME", "DSN", "SMTPUTF8", "ENHANCEDSTATUSCODES")


def test_dsn_size_body_and_pipelining(run: Runner, scripted_server: StartScripted) -> None:
    scripted = scripted_server(extensions=FULL)
    run.write_config(f"hostname {scripted.hostport}\n")
    result = run("-N", "success,failure", "-R", "hdrs", "-V", "id+1=2 x", "-B", "8BITMIME", "-f", "a@example.org",
                 "b@example.net", "c@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    mail = next(line for line in scripted.commands if line.startswith("MAIL"))
    assert mail.startswith("MAIL FROM:<a@example.org> SIZE=")
    assert "BODY=8BITMIME" in mail and "RET=HDRS" in mail and "ENVID=id+2B1+3D2+20x" in mail
    rcpts = [line for line in scripted.commands if line.startswith("RCPT")]
    assert rcpts == ["RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE", "RCPT TO:<c@example.net> NOTIFY=SUCCESS,FAILURE"]
    assert pipelined(scripted) == [True]


def test_parameters_are_left_out_when_not_offered(run: Runner, scripted_server: StartScripted) -> None:
    scripted = scripted_server(extensions=("SIZE 1000",))
    run.write_config(f"hostname {scripted.hostport}\n")
    result = run("-v", "-N", "never", "-R", "full", "-B", "7BIT", "b@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    mail = next(line for line in scripted.commands if line.startswith("MAIL"))
    assert "NOTIFY" not in " ".join(scripted.commands) and "RET=" not in mail and "BODY=" not in mail
    assert "does not offer DSN" in result.stderr
    assert pipelined(scripted) == [False]  # no PIPELINING: one command at a time


def test_helo_fallback_when_ehlo_is_refused(run: Runner, scripted_server: StartScripted) -> None:
    scripted = scripted_server({"EHLO": "502 5.5.2 EHLO not implemented"}, extensions=("PIPELINING",))
    run.write_config(f"hostname {scripted.hostport}\nhelo client.example\n")
    result = run("b@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert scripted.commands[:2] == ["EHLO client.example", "HELO client.example"]
    assert any(line == "RCPT TO:<b@example.net>" for line in scripted.commands)


def test_internationalised_domain_goes_in_idna_form_without_smtputf8(run: Runner,
                                                                     scripted_server: StartScripted) -> None:
    scripted = scripted_server(extensions=("PIPELINING", "8BITMIME"))
    run.write_config(f"hostname {scripted.hostport}\n")
    result = run("-f", "me@bücher.example", "ann@bücher.example", "bob@example.net", input=MESSAGE)
    assert result.returncode == 0, result.stderr
    assert "MAIL FROM:<me@xn--bcher-kva.example>" in scripted.commands  # and no SMTPUTF8 parameter
    assert [line for line in scripted.commands if line.startswith("RCPT")] == [
        "RCPT TO:<ann@xn--bcher-kva.example>", "RCPT TO:<bob@example.net>"]


def test_non_ascii_local_part_needs_smtputf8(run: Runner, scripted_server: StartScripted) -> None:
    scripted = scripted_server(extensions=("PIPELINING", "8BITMIME"))
    run.write_config(f"hostname {scripted.hostport}\n")
    result = run("jörg@bücher.example", input=MESSAGE)
    assert result.returncode == 69
    assert f"{scripted.hostport} does not offer SMTPUTF8, needed for the address jörg@bücher.example" in result.stderr
    assert not any(line.startswith(("MAIL", "RCPT")) for line in scripted.commands)
