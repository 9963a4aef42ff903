#!/usr/bin/env bash
# The SMTP tests against the lowest and the newest aiosmtplib that pyproject.toml allows (esmtp/smtp/pipelining.py uses
# aiosmtplib internals, so both ends of the range are tested). Usage: .ci/aiosmtplib-range.sh PYTHON
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
spec=$("$python" -c 'import tomllib; print(next(d for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"] if d.startswith("aiosmtplib")))')
lowest=$(sed -n 's/.*>=\([0-9.]*\).*/\1/p' <<<"$spec")
tests=(tests/test_pipelining.py tests/test_hostile_server.py tests/test_fault_matrix.py tests/test_smtp_dialogue.py
       tests/test_send.py tests/test_tls.py tests/queue/test_queue_pipelining.py)
for which in lowest newest; do
    venv=.venv-aiosmtplib-$which
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    if [ "$which" = lowest ]; then pin="aiosmtplib==$lowest"; else pin="$spec"; fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade -e '.[test]' "$pin"
    echo "aiosmtplib $which: $("$venv/bin/python" -c 'import aiosmtplib; print(aiosmtplib.__version__)') ($spec)"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"
done
