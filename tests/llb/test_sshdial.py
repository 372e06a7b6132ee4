"""`llb.sshdial` without a server: what an ssh:// address may be, the command lines it becomes, and
what a failed first stream is reported as."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llb.sshdial import SSHDestination, explain_failure


@pytest.mark.parametrize(
    ("url", "expected", "args"),
    [
        ("ssh://gpu-box", SSHDestination("gpu-box"), ["--", "gpu-box"]),
        ("ssh://me@gpu-box", SSHDestination("gpu-box", "me"), ["-l", "me", "--", "gpu-box"]),
        (
            "ssh://me@10.0.0.7:2222/",
            SSHDestination("10.0.0.7", "me", 2222),
            ["-l", "me", "-p", "2222", "--", "10.0.0.7"],
        ),
        ("ssh://[fd00::7]:22", SSHDestination("fd00::7", None, 22), ["-p", "22", "--", "fd00::7"]),
        (
            "ssh://me@box/run/user/1000/docker.sock",
            SSHDestination("box", "me", None, "/run/user/1000/docker.sock"),
            ["-l", "me", "--", "box"],
        ),
    ],
)
def test_parse(url: str, expected: SSHDestination, args: list[str]) -> None:
    dest = SSHDestination.parse(url)
    assert dest == expected
    assert dest.args() == args
    assert SSHDestination.parse(dest.url) == dest


def test_the_remote_command_names_a_socket_path_quoted() -> None:
    assert SSHDestination("box").remote_command() == "docker system dial-stdio"
    with_path = SSHDestination("box", socket_path="/run/user/1000/docker.sock")
    assert with_path.remote_command() == "docker --host=unix:///run/user/1000/docker.sock system dial-stdio"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("tcp://box:22", "not an ssh:// address"),
        ("ssh://", "no host name"),
        ("ssh://-oProxyCommand=touch%20x", "not a host name"),
        ("ssh://-oProxyCommand=x@box", "not a user name"),
        ("ssh://box,evil", "not a host name"),
        ("ssh://me:pw@box", "password"),
        ("ssh://box?ProxyCommand=x", "query parameters"),
        ("ssh://box#x", "fragments"),
        ("ssh://box:0", "port"),
        ("ssh://box:ssh", "port"),
        ("ssh://box/run/docker.sock;reboot", "not a socket path"),
        ("ssh://box/$(id)", "not a socket path"),
        ("ssh://[::1x]:22", "not a host name"),
        ("ssh://bo%0ax", "not a host name"),
    ],
)
def test_parse_refuses_what_could_become_an_option_or_a_command(url: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        SSHDestination.parse(url)
    assert fragment in str(info.value)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40))
def test_no_parsed_part_starts_like_an_option_or_holds_a_blank(tail: str) -> None:
    try:
        dest = SSHDestination.parse("ssh://" + tail)
    except ValueError:
        return
    for part in (dest.host, dest.user or "x", dest.socket_path or "/x"):
        assert not part.startswith("-") and not any(c.isspace() or c in ",;'\"`$\\" for c in part)
    assert dest.args()[-2] == "--"


@pytest.mark.parametrize(
    ("code", "stderr", "fragment"),
    [
        (255, "root@127.0.0.1: Permission denied (publickey).\n", "refused the login"),
        (255, "Host key verification failed.\n", "host key of box is unknown"),
        (255, "ssh: connect to host box port 22: Connection refused\n", "ssh could not connect to me@box"),
        (255, "ssh: Could not resolve hostname box: Name or service not known\n", "ssh could not connect"),
        (127, "bash: line 1: docker: command not found\n", "has no `docker` command"),
        (127, "sh: 1: docker: not found\n", "has no `docker` command"),
        (1, 'unknown command "dial-stdio" for "docker system"\n', "has no `docker system dial-stdio`"),
        (
            1,
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n",
            "is not running",
        ),
        (
            1,
            "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock\n",
            "may not use its Docker engine",
        ),
        (3, "something else\n", "ended (exit status 3): something else"),
    ],
)
def test_explain_failure(code: int, stderr: str, fragment: str) -> None:
    reason, hint = explain_failure(SSHDestination("box", "me"), code, stderr)
    assert fragment in reason
    assert hint
