"""Run inside a lab namespace: send adverts encoded by chime-ha's codec over a raw socket.

Usage: ``python send_helper.py JSON`` with keys ``family``, ``ifname``,
``source``, ``version``, ``vrid``, ``priority``, ``vips``, ``interval``,
``auth_pass`` (or null), ``seconds`` (how long to advertise), ``then_zero``
(send one priority-0 advert at the end). Prints ``sent N`` lines.
"""

import json
import socket
import sys
import time

from chimeha.vrrp import packet


def main() -> None:
    cfg = json.loads(sys.argv[1])
    fam = cfg["family"]
    dest = packet.MCAST_V4 if fam == 4 else packet.MCAST_V6
    if fam == 4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, packet.VRRP_PROTO)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, cfg["ifname"].encode())
        sock.bind((cfg["source"], 0))
        target = (dest, 0)
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, packet.VRRP_PROTO)
        idx = socket.if_nametoindex(cfg["ifname"])
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
        sock.bind((cfg["source"], 0, 0, idx))
        target = (dest, 0, 0, idx)

    def send(prio: int) -> None:
        data = packet.encode(cfg["version"], cfg["vrid"], prio, cfg["vips"], cfg["interval"], family=fam,
                             auth_type="PASS" if cfg.get("auth_pass") else None, auth_pass=cfg.get("auth_pass"),
                             source=cfg["source"], destination=dest)
        sock.sendto(data, target)

    end = time.monotonic() + cfg["seconds"]
    n = 0
    while time.monotonic() < end:
        send(cfg["priority"])
        n += 1
        print(f"sent {n}", flush=True)
        time.sleep(cfg["interval"])
    if cfg.get("then_zero"):
        send(0)
        print("sent zero", flush=True)


if __name__ == "__main__":
    main()
