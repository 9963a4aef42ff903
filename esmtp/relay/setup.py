"""``esmtp --system-setup``: prepare a machine for the system service (:mod:`esmtp.relay.system`), as root.

Idempotent, and says what it did: creates the system user and group ``esmtp`` when missing (``useradd --system``),
creates the directories with their owners and modes (or corrects them), checks the system configuration's owner and
mode (giving it to ``root:esmtp`` with mode 0640 when root owns it) and whether the service can use it, then prints
the next step. It works before ``/etc/esmtprc`` exists, and then says to write it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

from esmtp.errors import EX_CONFIG, EX_NOPERM, EX_OK, ConfigError, EsmtpError
from esmtp.relay.system import Paths, check_config_file, prepare_directories, system_account


def _create_user(name: str) -> str:
    useradd = shutil.which("useradd", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if useradd is None:
        raise ConfigError(f"there is no system user '{name}' and no useradd to create it: create the user and its "
                          "group by hand (no home, no login shell)")
    command = [useradd, "--system", "--user-group", "--home-dir", "/nonexistent", "--no-create-home",
               "--shell", "/usr/sbin/nologin", "--comment", "esmtp system relay", name]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"useradd could not create the system user '{name}': {result.stderr.strip()}")
    return f"created the system user and group '{name}'"


def _config_step(paths: Paths, gid: int) -> tuple[list[str], list[str]]:
    """What was done to the configuration's owner and mode, and what is left to do."""
    path = paths.config
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return [], [f"write the relay's settings to {path} (see docs/system.md, 'Set-up'), then run "
                    "esmtp --system-setup again"]
    done: list[str] = []
    if stat.S_ISREG(info.st_mode) and info.st_uid == 0:
        if info.st_gid != gid:
            os.chown(path, 0, gid)
            done.append(f"gave {path} to root:{paths.user}")
        if stat.S_IMODE(info.st_mode) != 0o640:
            os.chmod(path, 0o640)
            done.append(f"set the mode of {path} to 0640 (it was {stat.S_IMODE(info.st_mode):04o})")
    todo: list[str] = []
    try:
        from esmtp.config.files import load_config
        from esmtp.plugins import load_hooks, resolve_config

        config = load_config(path)
        resolve_config(config, load_hooks(config))
        check_config_file(path, config)
    except EsmtpError as error:
        todo.append(f"fix {path}: {error}")
    return done, todo


def setup() -> int:
    """Run the set-up; return 0, or 78 when the configuration exists but cannot be used, 77 when not root."""
    if os.geteuid() != 0:
        sys.stderr.write("esmtp: --system-setup must be run as root\n")
        return EX_NOPERM
    paths = Paths.from_environment()
    try:
        import pwd

        try:
            pwd.getpwnam(paths.user)
            done = []
        except KeyError:
            done = [_create_user(paths.user)]
        account = system_account(paths)
        done += prepare_directories(paths, account)
        config_done, todo = _config_step(paths, account.pw_gid)
    except (ConfigError, OSError) as error:
        sys.stderr.write(f"esmtp: --system-setup: {error}\n")
        return EX_CONFIG
    done += config_done
    for line in done or ["nothing to do: the user, the directories and the configuration's mode were in place"]:
        print(line)
    print(f"system user {paths.user} (uid {account.pw_uid}); socket {paths.socket}; queue {paths.queue}; "
          f"maildrop {paths.maildrop}; configuration {paths.config}")
    if todo:
        for line in todo:
            print(f"next: {line}")
        return EX_CONFIG if os.path.exists(paths.config) else EX_OK
    print("next: start the service: with systemd, install contrib/systemd/esmtp.socket and esmtp.service into "
          "/etc/systemd/system and run: systemctl enable --now esmtp.socket esmtp.service; without systemd, "
          "run esmtp --system-daemon (as root, in the foreground)")
    return EX_OK
