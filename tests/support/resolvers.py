"""Name resolution without DNS: getaddrinfo answers from a table, for the fetcher's
address checks."""

from __future__ import annotations

import socket
from typing import Any

# A public address (example.com's, once): allowed wherever private ones are refused.
PUBLIC_IP = "93.184.216.34"


def addr(ip: str, port: int = 80) -> list[tuple[Any, ...]]:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sockaddr: tuple[Any, ...] = (ip, port, 0, 0) if ":" in ip else (ip, port)
    return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]


def stub_resolver(table: dict[str, str]) -> Any:
    """getaddrinfo that answers from `table` and refuses every other name."""

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return addr(table[host], port)

    return resolve
