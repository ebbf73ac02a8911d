"""Operations: every log line is one JSON object, and server passwords never reach a log."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gongji.common.observe import redacted

pytestmark = pytest.mark.unit


def test_log_lines_are_json_objects_with_tracebacks_inside():
    program = (
        "import logging\n"
        "from gongji.common.observe import configure_logging\n"
        "configure_logging()\n"
        "log = logging.getLogger('gongji.test')\n"
        "log.info('settled %d claims in \"%s\"', 3, '二连浩特')\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    log.exception('batch failed')\n"
        "logging.getLogger('aiokafka').warning('a library line')\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["level"], line["logger"], line["msg"]) for line in lines] == [
        ("INFO", "gongji.test", 'settled 3 claims in "二连浩特"'),
        ("ERROR", "gongji.test", "batch failed"),
        ("WARNING", "aiokafka", "a library line"),
    ]
    assert "ZeroDivisionError" in lines[1]["exc_info"] and all("time" in line for line in lines)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://gongji:s3cret@postgres:5432/gongji", "postgresql://gongji:***@postgres:5432/gongji"),
    ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:p@ss@redis:6379/0", "redis://:***@redis:6379/0"),
    ("postgresql://postgres/gongji?user=gongji&password=s3cret&sslmode=require",
     "postgresql://postgres/gongji?user=gongji&password=***&sslmode=require"),
    ("host=postgres user=gongji password='s 3cret' dbname=gongji", "host=postgres user=gongji password=*** dbname=gongji"),
    (None, ""),
])
def test_passwords_are_redacted(url, shown):
    assert redacted(url) == shown
