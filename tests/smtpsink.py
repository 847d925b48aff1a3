"""A small SMTP receiver for tests (stdlib socketserver): stores every command and message.

In-process: ``with SmtpSink() as sink: ... sink.wait(n)``; or as a program
(``python tests/smtpsink.py HOST PORT OUT.jsonl``) inside a lab namespace,
appending one JSON object per received mail to OUT: ``{"helo", "mail_from",
"rcpt_to", "data", "commands"}``.  It speaks just enough SMTP: 220 greeting,
HELO/EHLO, MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP, QUIT.
"""

from __future__ import annotations

import json
import socketserver
import sys
import threading
import time


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        server = self.server
        mail = {"helo": None, "mail_from": None, "rcpt_to": [], "data": None, "commands": []}
        self.reply("220 sink.lab ESMTP test sink")
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            mail["commands"].append(line)
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip()
            if verb in ("HELO", "EHLO"):
                mail["helo"] = arg
                self.reply("250 sink.lab")
            elif verb == "MAIL":
                mail["mail_from"] = arg.split(":", 1)[1].strip() if ":" in arg else arg
                self.reply("250 OK")
            elif verb == "RCPT":
                mail["rcpt_to"].append(arg.split(":", 1)[1].strip() if ":" in arg else arg)
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with .")
                lines = []
                while True:
                    d = self.rfile.readline()
                    if not d or d == b".\r\n":
                        break
                    lines.append(d[1:] if d.startswith(b"..") else d)
                mail["data"] = b"".join(lines).decode("utf-8", "replace")
                server.store(dict(mail, commands=list(mail["commands"])))
                mail["rcpt_to"] = []
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            else:
                self.reply("502 not implemented")


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, addr, out: str | None = None):
        super().__init__(addr, _Handler)
        self.out = out
        self.mails: list[dict] = []
        self.lock = threading.Lock()

    def store(self, mail: dict) -> None:
        with self.lock:
            self.mails.append(mail)
            if self.out:
                with open(self.out, "a") as fh:
                    fh.write(json.dumps(mail) + "\n")


class SmtpSink:
    """An in-process receiver on ``host`` (a free port unless given)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.server = _Server((host, port))
        self.host, self.port = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "SmtpSink":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def mails(self) -> list[dict]:
        with self.server.lock:
            return list(self.server.mails)

    def wait(self, n: int, timeout: float = 10.0) -> list[dict]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.mails) >= n:
                return self.mails
            time.sleep(0.02)
        raise AssertionError(f"expected {n} mails, got {len(self.mails)}: {[headers(m)['Subject'] for m in self.mails]}")


def headers(mail: dict) -> dict[str, str]:
    """The header fields of a stored mail's DATA."""
    head = mail["data"].split("\r\n\r\n", 1)[0]
    return dict(line.split(": ", 1) for line in head.split("\r\n") if ": " in line)


def body(mail: dict) -> str:
    return mail["data"].split("\r\n\r\n", 1)[1]


def read_jsonl(path) -> list[dict]:
    try:
        with open(path) as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    srv = _Server((host, port), out)
    srv.serve_forever()
