"""Run inside a lab namespace: print the VRRP packets seen on an interface as JSON lines.

Usage: ``python capture_helper.py IFNAME SECONDS``. Prints ``ready`` once the
socket is bound. An AF_PACKET socket sees every frame on the lab interface,
so the IP header facts (source, destination, TTL / hop limit) come from the
wire itself, not from a socket API that might fill them in for us.
"""

import json
import socket
import struct
import sys
import time

ETH_P_ALL = 3


def main() -> None:
    ifname, seconds = sys.argv[1], float(sys.argv[2])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.settimeout(0.2)
    print("ready", flush=True)
    end = time.time() + seconds
    while time.time() < end:
        try:
            frame = sock.recv(65535)
        except socket.timeout:
            continue
        ethertype = struct.unpack("!H", frame[12:14])[0]
        ip = frame[14:]
        if ethertype == 0x0800 and len(ip) >= 20 and ip[9] == 112:
            ihl = (ip[0] & 15) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            rec = {"family": 4, "src": socket.inet_ntop(socket.AF_INET, ip[12:16]),
                   "dst": socket.inet_ntop(socket.AF_INET, ip[16:20]), "ttl": ip[8],
                   "payload": ip[ihl:total].hex()}
        elif ethertype == 0x86DD and len(ip) >= 40 and ip[6] == 112:
            plen = struct.unpack("!H", ip[4:6])[0]
            rec = {"family": 6, "src": socket.inet_ntop(socket.AF_INET6, ip[8:24]),
                   "dst": socket.inet_ntop(socket.AF_INET6, ip[24:40]), "ttl": ip[7],
                   "payload": ip[40:40 + plen].hex()}
        else:
            continue
        rec["t"] = time.time()
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
