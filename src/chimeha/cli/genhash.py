"""``chime-ha genhash -s ADDR -p PORT -u URL``: print the digest an HTTP_GET/SSL_GET ``url`` needs.

The same request and hashing as the checker (and keepalived's ``genhash``): the
MD5 of the raw response body. Exit status 0 with the digest on stdout, 1 when
the server could not be fetched, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("genhash", help="print the MD5 digest of a URL's body for HTTP_GET/SSL_GET",
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("-s", "--server", required=True, help="real server IP address")
    p.add_argument("-p", "--port", type=int, default=None, help="port (default 80, or 443 with --use-ssl)")
    p.add_argument("-u", "--url", required=True, help="path to fetch, e.g. /health")
    p.add_argument("-S", "--use-ssl", action="store_true", help="SSL_GET: connect with TLS")
    p.add_argument("-I", "--use-sni", action="store_true", help="send the virtualhost as TLS SNI")
    p.add_argument("-V", "--use-virtualhost", dest="virtualhost", default=None, help="Host: header to send")
    p.add_argument("-P", "--protocol", default="1.0", choices=["1.0", "1.0c", "1.0C", "1.1"],
                   help="HTTP protocol: 1.0, 1.0c (1.0 with Connection: close) or 1.1")
    p.add_argument("-t", "--timeout", type=float, default=5.0, help="seconds (default 5)")
    p.add_argument("-v", "--verbose", action="store_true", help="also print the status and body size")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import asyncio

    from chimeha.check._net import family_of
    from chimeha.check.http import HttpProbeError, body_digest, get_url
    from chimeha.check.spec import Target
    from chimeha.config.model import HttpCheck, HttpUrl

    try:
        family_of(args.server)
    except ValueError as exc:
        print(f"chime-ha genhash: --server: {exc}", file=sys.stderr)
        return 2
    port = args.port or (443 if args.use_ssl else 80)
    if not 0 < port < 65536:
        print(f"chime-ha genhash: --port {port}: not a port number", file=sys.stderr)
        return 2
    if args.timeout <= 0:
        print("chime-ha genhash: --timeout must be positive", file=sys.stderr)
        return 2
    checker = HttpCheck(kind="SSL_GET" if args.use_ssl else "HTTP_GET", ssl=args.use_ssl,
                        enable_sni=args.use_sni, virtualhost=args.virtualhost, http_protocol=args.protocol.upper())
    try:
        status, body = asyncio.run(get_url(checker, Target(args.server, port), HttpUrl(path=args.url),
                                           args.timeout))
    except HttpProbeError as exc:
        print(f"chime-ha genhash: {exc}", file=sys.stderr)
        return 1
    if args.verbose:
        print(f"status {status}, body {len(body)} bytes", file=sys.stderr)
    print(body_digest(body))
    return 0
