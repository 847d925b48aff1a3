"""DNS_CHECK: one query over UDP (dnspython builds and parses the messages).

Up when a reply to *our* query arrives in time (same ID and question, QR set:
``Message.is_response``), with RCODE NOERROR (RFC 1035 4.1.1) and at least one
answer record of the queried type. Anything else is down, with what was wrong.
"""

from __future__ import annotations

import asyncio
import socket

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from chimeha.check._net import describe_oserror, endpoint, family_of, fmt, new_socket
from chimeha.check.spec import CheckResult, Target
from chimeha.config.model import DnsCheck


async def probe_dns(checker: DnsCheck, target: Target, timeout: float) -> CheckResult:
    """Query ``name``/``type`` (defaults ``.``/SOA) at the target, port 53 unless set."""
    host, port = endpoint(checker, target, need_port=False)
    port = port or 53
    where = fmt(host, port)
    qname = checker.name or "."
    qtype_text = (checker.type or "SOA").upper()
    try:
        qtype = dns.rdatatype.from_text(qtype_text)
        query = dns.message.make_query(qname, qtype)
    except (dns.exception.DNSException, ValueError) as exc:
        return CheckResult(False, f"DNS_CHECK cannot build query {qname} {qtype_text}: {exc}")
    loop = asyncio.get_running_loop()
    sock = new_socket(checker, family_of(host), socket.SOCK_DGRAM)
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            await loop.sock_sendall(sock, query.to_wire())
            while True:
                wire = await loop.sock_recv(sock, 65535)
                try:
                    reply = dns.message.from_wire(wire)
                except dns.exception.DNSException:
                    continue  # garbage on our port is not an answer; keep waiting
                if query.is_response(reply):
                    break
    except TimeoutError:
        return CheckResult(False, f"DNS {where} no answer to {qname} {qtype_text} within {timeout:g} s")
    except OSError as exc:
        return CheckResult(False, f"DNS {where}: {describe_oserror(exc)}")
    finally:
        sock.close()
    rcode = reply.rcode()
    if rcode != dns.rcode.NOERROR:
        return CheckResult(False, f"DNS {where} {qname} {qtype_text}: {dns.rcode.to_text(rcode)}")
    if not any(rrset.rdtype == qtype for rrset in reply.answer):
        return CheckResult(False, f"DNS {where} {qname} {qtype_text}: no {qtype_text} record in the answer")
    return CheckResult(True, f"DNS {where} answered {qname} {qtype_text}")
