"""A DNS proxy on loopback that delays every answer: a resolver's round trip, made local.

``python benchmarks/delay_proxy.py --listen 127.0.114.53:53 --upstream 127.0.114.1:5301 --delay 0.02``

Queries arriving over UDP are forwarded to the upstream server over one UDP socket
(the message id rewritten so answers find their way back), queries over TCP over a
TCP connection per client connection; each answer is held ``--delay`` seconds before
it goes back to the client, so every round trip through the proxy costs at least that
much, however many are in flight (a network's latency, not a bandwidth limit). On
SIGTERM or SIGINT it prints how many queries it forwarded and exits. Standard library
only: what it measures is the clients, not itself.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import struct
import sys


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class Counters:
    udp = 0
    tcp = 0


class Upstream(asyncio.DatagramProtocol):
    """The one UDP socket to the upstream server; maps rewritten ids back to clients."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[asyncio.DatagramTransport, tuple[str, int], bytes]] = {}
        self.ids = itertools.cycle(range(65536))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def forward(self, client: asyncio.DatagramTransport, address: tuple[str, int], data: bytes) -> None:
        if len(data) < 12 or self.transport is None:
            return
        for _ in range(65536):
            new_id = next(self.ids)
            if new_id not in self.pending:
                break
        else:
            return  # 65,536 queries in flight: drop, as a congested network would
        self.pending[new_id] = (client, address, data[:2])
        self.transport.sendto(struct.pack("!H", new_id) + data[2:])

    def datagram_received(self, data: bytes, _address: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        entry = self.pending.pop(struct.unpack("!H", data[:2])[0], None)
        if entry is None:
            return
        client, address, original_id = entry
        answer = original_id + data[2:]
        asyncio.get_running_loop().call_later(self.delay, client.sendto, answer, address)


class Listener(asyncio.DatagramProtocol):
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, address: tuple[str, int]) -> None:
        Counters.udp += 1
        assert self.transport is not None
        self.upstream.forward(self.transport, address, data)


async def _tcp_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: tuple[str, int], delay: float) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(*upstream)
    except OSError:
        writer.close()
        return
    try:
        while True:
            try:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                query = await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            Counters.tcp += 1
            up_writer.write(struct.pack("!H", len(query)) + query)
            await up_writer.drain()
            answer_length = struct.unpack("!H", await up_reader.readexactly(2))[0]
            answer = await up_reader.readexactly(answer_length)
            await asyncio.sleep(delay)
            writer.write(struct.pack("!H", len(answer)) + answer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        up_writer.close()
        writer.close()


async def serve(listen: tuple[str, int], upstream: tuple[str, int], delay: float) -> None:
    loop = asyncio.get_running_loop()
    _, up = await loop.create_datagram_endpoint(lambda: Upstream(delay), remote_addr=upstream)
    udp, _ = await loop.create_datagram_endpoint(lambda: Listener(up), local_addr=listen)
    tcp = await asyncio.start_server(lambda r, w: _tcp_client(r, w, upstream, delay), *listen)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"delay proxy {listen[0]}:{listen[1]} -> {upstream[0]}:{upstream[1]}, +{delay * 1000:g} ms", flush=True)
    await stop.wait()
    tcp.close()
    udp.close()
    print(f"forwarded {Counters.udp} udp, {Counters.tcp} tcp queries", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="ADDR:PORT on loopback")
    parser.add_argument("--upstream", required=True, help="ADDR:PORT of the DNS server")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds each answer is held (default 0.02)")
    args = parser.parse_args(argv)
    listen = _endpoint(args.listen)
    if not listen[0].startswith("127."):
        parser.error("--listen must be a loopback address")
    asyncio.run(serve(listen, _endpoint(args.upstream), args.delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
