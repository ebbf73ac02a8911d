"""The TLS terminator in front of the local stack's Tansu, which cannot serve TLS itself (README,
"Kafka security"): clients connect here with TLS and a client certificate of the stack's CA (mTLS);
each connection is relayed, as plain bytes, to Tansu's own port on loopback. Tansu advertises this
port, so a client sent on by the metadata comes back through here.

Its own process: `python -m gongji.local.terminator --listen-fd N --upstream PORT --pki DIR`. The
listening socket is made and bound by the stack (so its port is known before Tansu starts, and no
other process can take it meanwhile) and handed over as an inherited file descriptor.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import ssl
from pathlib import Path

from gongji.local.tls import BROKER, Pki

log = logging.getLogger("gongji.terminator")
CHUNK = 256 * 1024
HANDSHAKE_SECONDS = 10


def server_context(pki: Pki) -> ssl.SSLContext:
    """TLS 1.2 or later, the broker's certificate, and a client certificate from the CA required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki.cert(BROKER), pki.key(BROKER))
    context.load_verify_locations(pki.cafile)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def peer_name(writer: asyncio.StreamWriter) -> str:
    """The client certificate's CN: the principal that connected."""
    certificate = writer.get_extra_info("peercert") or {}
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return "?"


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _relay(upstream_port: int, context: ssl.SSLContext, client_reader: asyncio.StreamReader,
                 client_writer: asyncio.StreamWriter) -> None:
    # The handshake here rather than in the server: asyncio would drop a refusal without a word.
    peer = "%s:%d" % client_writer.get_extra_info("peername")[:2]
    try:
        await client_writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_SECONDS)
    except (OSError, asyncio.TimeoutError) as error:  # ssl.SSLError is an OSError
        log.warning("refused %s: %s", peer, getattr(error, "reason", None) or error or type(error).__name__)
        client_writer.close()
        return
    log.info("connection from %s", peer_name(client_writer))
    try:
        broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    except OSError as error:
        log.warning("broker at 127.0.0.1:%d does not answer: %s", upstream_port, error)
        client_writer.close()
        return
    for sock in (client_writer.get_extra_info("socket"), broker_writer.get_extra_info("socket")):
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Either side closing ends both: Kafka's protocol has no use for a half-closed connection.
    done, pending = await asyncio.wait([asyncio.ensure_future(_pump(client_reader, broker_writer)),
                                        asyncio.ensure_future(_pump(broker_reader, client_writer))],
                                       return_when=asyncio.FIRST_COMPLETED)
    broker_writer.close()
    client_writer.close()
    await asyncio.gather(*pending, return_exceptions=True)


async def serve(listening: socket.socket, upstream_port: int, pki: Pki) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    context = server_context(pki)
    server = await asyncio.start_server(lambda r, w: _relay(upstream_port, context, r, w), sock=listening)
    async with server:
        log.info("TLS on 127.0.0.1:%d (client certificates of %s) to 127.0.0.1:%d",
                 listening.getsockname()[1], pki.cafile, upstream_port)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gongji.local.terminator")
    parser.add_argument("--listen-fd", type=int, required=True, help="a bound, listening TCP socket")
    parser.add_argument("--upstream", type=int, required=True, help="Tansu's own port on 127.0.0.1")
    parser.add_argument("--pki", type=Path, required=True, help="the folder gongji.local.tls.make_pki wrote")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    listening = socket.socket(fileno=args.listen_fd)
    asyncio.run(serve(listening, args.upstream, Pki(args.pki)))


if __name__ == "__main__":
    main()
