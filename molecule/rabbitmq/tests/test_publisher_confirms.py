"""Publisher confirms (README: "publisher confirms on"): set for every process that publishes,
and really used on the wire, where RabbitMQ marks a channel in confirm mode."""

import json
import shlex
import uuid

from conftest import MANAGE, manage, running_conf

# Run by `djangoapp-manage shell -c`: publish one task the way the app does (its producer pool),
# print the connection's local port and the channel number, then keep the connection open until
# the test has looked at it (a marker file appears) or 30 seconds have passed.
PUBLISH_AND_HOLD = """
import os, time
from proj.celery import app
with app.producer_or_acquire() as producer:
    app.send_task("demo.tasks.add", args=(1, 2), producer=producer)
    channel = producer.channel
    port = channel.connection.sock.getsockname()[1]
    print(f"publisher={port} {channel.channel_id}", flush=True)
    deadline = time.monotonic() + 30
    while not os.path.exists("{marker}") and time.monotonic() < deadline:
        time.sleep(0.1)
"""

# While the publisher holds its connection, list RabbitMQ's channels (name, confirm mode).
LIST_WHILE_PUBLISHING = """
out=$(mktemp)
{manage} shell -c {code} >"$out" 2>&1 &
publisher=$!
for _ in $(seq 300); do grep -q '^publisher=' "$out" && break; sleep 0.1; done
grep '^publisher=' "$out" || cat "$out" >&2
rabbitmqctl --quiet --no-table-headers list_channels name confirm
touch {marker}
wait "$publisher"
rm -f "$out" {marker}
"""


def test_workers_publish_with_confirms(host, pool):
    options = running_conf(host, pool)["broker_transport_options"]
    assert options.get("confirm_publish") is True, options


def test_manage_commands_publish_with_confirms(host):
    code = "import json; from proj.celery import app; print(json.dumps(app.conf.{}))"
    code = code.format("broker_transport_options")
    out = manage(host, "shell", "--no-imports", "-c", code)
    options = json.loads(out.strip().splitlines()[-1])
    assert options.get("confirm_publish") is True, options


def test_rabbitmq_puts_the_app_s_publishing_channel_in_confirm_mode(host):
    marker = f"/tmp/confirm-probe-{uuid.uuid4().hex}"
    code = PUBLISH_AND_HOLD.replace("{marker}", marker)
    script = LIST_WHILE_PUBLISHING.format(manage=MANAGE, code=shlex.quote(code), marker=marker)
    result = host.run(f"bash -c {shlex.quote(script)}")
    assert result.rc == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and lines[0].startswith("publisher="), result.stdout + result.stderr
    port, channel_id = lines[0].removeprefix("publisher=").split()
    # A channel is named "127.0.0.1:PORT -> 127.0.0.1:5672 (NUMBER)".
    ours = [line.split("\t") for line in lines[1:] if f":{port} -> " in line]
    confirm = [fields[1] for fields in ours if fields[0].endswith(f" ({channel_id})")]
    assert confirm == ["true"], result.stdout
