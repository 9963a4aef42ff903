"""Reading an msmtp configuration file (``~/.msmtprc``) into resolved accounts, as msmtp 1.8 reads it.

The grammar, checked against msmtp 1.8.23 (``msmtp --pretend``):

* one command per line: the command, blanks, then the argument up to the end of the line (trailing blanks removed);
  lines whose first non-blank character is ``#`` are comments, but a ``#`` after a command is part of its argument;
* an argument that starts and ends with ``"`` loses those two quotes; there are no escapes;
* ``defaults`` starts the defaults section: its settings are copied into every account defined after it;
* ``account NAME [: PARENT[, PARENT...]]`` starts an account: first the current defaults, then every setting that
  each parent (already defined) set itself, in order, then the account's own settings (msmtp 1.8.23 copies every
  setting except ``allow_from_override``);
* ``account default`` is the account msmtp uses when none is chosen; ``account default : x`` copies ``x``;
* an account defined twice, or an unknown parent, is an error; commands before the first ``account`` or
  ``defaults`` are ignored by msmtp (they are reported here as such).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from esmtp.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Setting:
    """One command as written: its argument (quotes removed) and its line."""

    command: str
    argument: str
    lineno: int


@dataclass(slots=True)
class Account:
    """An account with defaults and inheritance resolved; ``own`` holds what it (or its parents) set itself."""

    name: str
    lineno: int
    parents: tuple[str, ...] = ()
    settings: dict[str, Setting] = field(default_factory=dict)
    own: dict[str, Setting] = field(default_factory=dict)

    def get(self, command: str) -> str | None:
        setting = self.settings.get(command)
        return None if setting is None else setting.argument


@dataclass(slots=True)
class Msmtprc:
    """A parsed file: accounts in file order, and what msmtp ignored or could not place."""

    path: str
    accounts: list[Account]
    #: Commands before the first ``account``/``defaults`` (msmtp ignores them), and ``eval`` lines.
    stray: list[Setting] = field(default_factory=list)

    @property
    def default(self) -> Account | None:
        """The account named ``default``: the one msmtp uses when no account is chosen."""
        return next((account for account in self.accounts if account.name == "default"), None)


#: What msmtp does not copy from the accounts named after ``account NAME :``.
_NOT_INHERITED = frozenset({"allow_from_override"})


def _split(line: str) -> tuple[str, str]:
    """``command argument`` → both parts, the argument without its enclosing double quotes."""
    parts = line.strip().split(None, 1)
    command = parts[0]
    argument = parts[1].strip() if len(parts) > 1 else ""
    if len(argument) >= 2 and argument.startswith('"') and argument.endswith('"'):
        argument = argument[1:-1]
    return command, argument


def _account_header(argument: str, where: str) -> tuple[str, tuple[str, ...]]:
    name, colon, parents = argument.partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"{where}: 'account' needs a name")
    if not colon:
        return name, ()
    names = tuple(parent.strip() for parent in parents.split(","))
    if not all(names):
        raise ConfigError(f"{where}: 'account {argument}' has an empty name in its list of accounts to copy")
    return name, names


def parse_msmtprc(text: str, path: str) -> Msmtprc:
    """Parse msmtprc ``text`` (``path`` names it in errors). Raises ConfigError ``"<path>:<line>: ..."``."""
    result = Msmtprc(path=path, accounts=[])
    defaults: dict[str, Setting] = {}
    by_name: dict[str, Account] = {}
    current: dict[str, Setting] | None = None  # where the next setting goes
    account: Account | None = None
    for lineno, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        command, argument = _split(stripped)
        where = f"{path}:{lineno}"
        if command == "defaults":
            current, account = defaults, None
        elif command == "account":
            name, parents = _account_header(argument, where)
            if name in by_name:
                raise ConfigError(f"{where}: account {name} was already defined (line {by_name[name].lineno})")
            account = Account(name=name, lineno=lineno, parents=parents, settings=dict(defaults))
            for parent in parents:
                if parent not in by_name:
                    raise ConfigError(f"{where}: account {parent} is not defined before account {name}")
                inherited = {k: v for k, v in by_name[parent].own.items() if k not in _NOT_INHERITED}
                account.settings.update(inherited)
                account.own.update(inherited)
            by_name[name] = account
            result.accounts.append(account)
            current = None
        elif (current is None and account is None) or command == "eval":
            result.stray.append(Setting(command, argument, lineno))
        else:
            setting = Setting(command, argument, lineno)
            if account is not None:
                account.settings[command] = setting
                account.own[command] = setting
            elif current is not None:
                current[command] = setting
    return result
