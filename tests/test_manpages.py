"""The manual pages and the reference pages stay true: every keyword and every option that the code knows is
documented in the manual pages, in docs/configuration.md and docs/cli.md, nothing is documented there that the code
does not know, and groff reads the pages without a warning.

The pages are hand-written roff (docs/manual-pages.md says why); these tests are what keeps them complete. A keyword
or option counts as documented when it appears in the tag line of a ``.TP`` paragraph (the line after ``.TP``).
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from esmtp import options

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "man"
ESMTP_1 = MAN / "man1" / "esmtp.1"
ESMTPRC_5 = MAN / "man5" / "esmtprc.5"
CONFIGURATION_MD = ROOT / "docs" / "configuration.md"
CLI_MD = ROOT / "docs" / "cli.md"


def tags(page: Path) -> str:
    """The tag lines of every ``.TP`` paragraph of ``page``, with roff's ``\\-`` and font escapes undone."""
    lines = page.read_text().splitlines()
    found = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.startswith(".TP")]
    return re.sub(r"\\f[BIRP]", " ", "\n".join(found)).replace("\\-", "-")


def documented_words(page: Path) -> set[str]:
    return set(re.findall(r"[A-Za-z][A-Za-z0-9_]*", tags(page)))


def from_config_modules(name: str) -> Any:
    """``name`` from the module that holds it: the parser moves from esmtp/config/model.py to esmtp/config/parser.py."""
    for module in ("esmtp.config.parser", "esmtp.config.model"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ModuleNotFoundError, AttributeError):
            continue
    pytest.fail(f"neither esmtp.config.parser nor esmtp.config.model has {name}: update tests/test_manpages.py")


def grammar_keywords() -> dict[str, str]:
    """esmtp 1.2's own keywords (the parser's vocabulary), with where they come from."""
    words = set(from_config_modules("_STRING_FIELDS")) | set(from_config_modules("_ESMTP_WORDS"))
    words -= {"enabled", "disabled", "required"}  # values, not keywords
    return {word: "the esmtprc grammar (esmtp 1.2 keywords)" for word in words}


def declared_keywords() -> dict[str, str]:
    """Every keyword of the core and of esmtp's own plugins, with who declares it."""
    found = grammar_keywords()
    for spec in from_config_modules("CORE_KEYWORDS"):
        found[spec.name] = "the core (CORE_KEYWORDS in esmtp/config/model.py)"
    for entry_point in entry_points(group="esmtp.plugins"):
        if entry_point.dist is None or entry_point.dist.name != "esmtp":
            continue  # a third-party plugin documents itself
        declare = getattr(entry_point.load(), "esmtp_config_keywords", None)
        for spec in declare() if declare is not None else []:
            found[spec.name] = f"the built-in plugin '{entry_point.name}' ({entry_point.value})"
    return found


def parser_options() -> set[str]:
    """Every option the command-line parser knows: short letters, -q, and every long option in esmtp/options.py."""
    letters = options._WITH_ARGUMENT | options._WITHOUT_ARGUMENT | {"q"}
    source = Path(options.__file__).read_text()
    long_names = set(options._LONG_OPTIONS) | set(re.findall(r"\"(--[a-z][a-z0-9-]*)\"", source))
    return {f"-{letter}" for letter in letters} | long_names


def test_every_keyword_is_in_esmtprc_5() -> None:
    documented = documented_words(ESMTPRC_5)
    missing = {name: who for name, who in sorted(declared_keywords().items()) if name not in documented}
    advice = "\n".join(
        f"  {name!r}, declared by {who}: add to {ESMTPRC_5.relative_to(ROOT)} under"
        f" {'PLUGIN KEYWORDS (in the .SS section of that plugin)' if 'plugin' in who else 'EXTENSION KEYWORDS'}:\n"
        f'    .TP\n    .BI "{name} " value\n    What it does; its values, default and scope (global or per identity).'
        for name, who in missing.items()
    )
    assert not missing, f"esmtprc(5) does not document these keywords:\n{advice}"


def test_every_option_is_in_esmtp_1() -> None:
    text = tags(ESMTP_1)
    documented = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[A-Za-z])", text))
    missing = sorted(parser_options() - documented)
    advice = "\n".join(
        f"  {flag}: add to {ESMTP_1.relative_to(ROOT)}, section OPTIONS (or 'Accepted and ignored'):\n"
        f"    .TP\n    .BI {flag.replace('-', chr(92) + '-')} \" argument\"\n    What it does."
        for flag in missing
    )
    assert not missing, f"esmtp(1) does not document these options known to esmtp/options.py:\n{advice}"


def test_the_checks_see_what_they_check() -> None:
    """Guards the guards: the parsing above finds known entries and would notice a missing one."""
    documented = documented_words(ESMTPRC_5)
    assert {"hostname", "host", "force", "reverse_path", "queue_dir", "auth_login_initial_response"} <= documented
    assert {"queue_dir", "masquerade_domain", "timeout", "hostname", "mda"} <= set(declared_keywords())
    assert {"-f", "-q", "-X", "-x", "--flush", "--import-msmtprc"} <= parser_options()
    assert "undocumented_keyword" not in documented_words(ESMTPRC_5)


def table_rows(page: Path, first_header: str) -> list[str]:
    """The first cell of every row of the Markdown tables in ``page`` whose header's first cell starts with
    ``first_header`` (case-insensitive)."""
    rows: list[str] = []
    in_table = taking = False
    for line in page.read_text().splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        cell = line.split("|")[1].strip()
        if not in_table:  # a header row
            in_table, taking = True, cell.lower().startswith(first_header)
        elif taking and not cell.startswith("---"):
            rows.append(cell)
    return rows


def markdown_keywords() -> set[str]:
    """Every word in code in the first cell of docs/configuration.md's keyword tables (``force reverse_path``,
    ``hostname`` (``host``)...)."""
    spans = re.findall(r"`([^`]*)`", "\n".join(table_rows(CONFIGURATION_MD, "keyword")))
    return {word for span in spans for word in re.findall(r"[A-Za-z][A-Za-z0-9_]*", span)}


def test_every_keyword_is_in_configuration_md_and_nothing_else() -> None:
    """docs/configuration.md lists every keyword (README.md says so), in the first cell of a keyword table."""
    documented = markdown_keywords()
    declared = declared_keywords()
    missing = {name: who for name, who in sorted(declared.items()) if name not in documented}
    advice = "\n".join(f"  {name!r}, declared by {who}: add a row to a keyword table of docs/configuration.md"
                       for name, who in missing.items())
    assert not missing, f"docs/configuration.md does not document these keywords:\n{advice}"
    unknown = sorted(documented - set(declared) - {"defaults"})  # (a section of the grammar, not a keyword)
    assert not unknown, f"docs/configuration.md's keyword tables name keywords nobody declares: {unknown}"


def markdown_options() -> tuple[set[str], set[str]]:
    """The options docs/cli.md documents: those at the start of code anywhere on the page (``-A x``, ``--check``),
    and those that head a row of its option tables (which must all exist)."""
    text = CLI_MD.read_text()
    anywhere = set(re.findall(r"`(--[a-z][a-z0-9-]*|-[A-Za-z])", text))
    rows = "\n".join(table_rows(CLI_MD, "option") + table_rows(CLI_MD, "flag"))
    return anywhere, set(re.findall(r"`(--[a-z][a-z0-9-]*|-[A-Za-z])", rows))


def test_every_option_is_in_cli_md_and_nothing_else() -> None:
    anywhere, rows = markdown_options()
    missing = sorted(parser_options() - anywhere)
    assert not missing, f"docs/cli.md does not document these options known to esmtp/options.py: {missing}"
    unknown = sorted(rows - parser_options())
    assert not unknown, f"docs/cli.md's option tables name options esmtp/options.py does not know: {unknown}"


def test_the_markdown_checks_see_what_they_check() -> None:
    assert {"hostname", "host", "reverse_path", "queue_retry", "relay_daemon_idle", "oauth2_scope"} <= (
        markdown_keywords())
    assert "wait" not in markdown_keywords() and "msmtp" not in markdown_keywords()  # other tables are not read
    anywhere, rows = markdown_options()
    assert {"-f", "-a", "--identity", "--check", "-bs"[:2]} <= rows
    assert {"-A", "-x", "-c"} <= anywhere - rows  # the accepted-and-ignored list


@pytest.mark.parametrize("page", sorted(MAN.glob("man*/*.[15]")), ids=lambda page: page.name)
def test_groff_reads_the_page_without_warnings(page: Path) -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed (Debian: groff-base; .ci/install-doc-deps.sh installs it)")
    proc = subprocess.run(
        [groff, "-man", "-ww", "-z", f"{page.parent.name}/{page.name}"], cwd=MAN, capture_output=True, text=True
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr


def test_the_wheel_installs_every_page_under_share_man() -> None:
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    installed = {f"{target}/{Path(source).name}" for target, sources in data_files.items() for source in sources}
    pages = {f"share/man/{page.parent.name}/{page.name}" for page in MAN.glob("man*/*")}
    assert installed == pages


def test_alias_pages_point_at_esmtp_1() -> None:
    for name in ("sendmail", "mailq", "newaliases"):
        assert (MAN / "man1" / f"{name}.1").read_text() == ".so man1/esmtp.1\n"
        assert name in tags(ESMTP_1) or name in ESMTP_1.read_text().split(".SH SYNOPSIS")[0]
