"""The tests' Alertmanager receiver: records every webhook notification it gets.

Listens on 127.0.0.1:9095 (the monitoring host's django_celery_monitoring_webhook_url in the
scenarios) and appends each notification, with the time it arrived, as one JSON line to
/var/lib/alert-receiver/alerts.jsonl; the tests read that file.
"""

import json
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

LOG = "/var/lib/alert-receiver/alerts.jsonl"


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        record = {"received": time.time(), "notification": json.loads(body)}
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002 (http.server's name)
        pass


HTTPServer(("127.0.0.1", 9095), Receiver).serve_forever()
