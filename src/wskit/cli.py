"""The command line: ``python -m wskit serve | connect | bench``."""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import importlib.util
import logging
import os
import runpy
import shutil
import signal
import ssl as ssl_module
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TextIO

from . import __version__
from .client import connect, parse_uri
from .core import limits
from .core.close import CloseCode
from .core.errors import InvalidHandshake, WSKitError
from .core.proxy import parse_proxy_url
from .demo import chat_hub, create_app
from .lineedit import LineEditor, terminal_mode
from .loop import run
from .server import App, raise_fd_limit
from .websocket import WebSocket
from .workers import Listener, supervise

__all__ = ["build_parser", "connect_interactive", "main", "serve"]

LOG_LEVELS = ("debug", "info", "warning", "error")
#: How many bytes of a binary message ``connect`` shows in hex.
HEX_PREVIEW = 32


# -- serve -------------------------------------------------------------------------------------


def _http_url(address: Any, tls: bool) -> str:
    host, port = address[0], address[1]
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


@contextlib.contextmanager
def _signals_set(event: asyncio.Event) -> Iterator[None]:
    """Set ``event`` on SIGINT and SIGTERM while inside the block."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, event.set)
        except (NotImplementedError, RuntimeError):
            # Windows loops and non-main threads: Ctrl-C still ends the loop, less gently.
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve(
    app: App,
    host: str | None,
    port: int,
    *,
    ssl: ssl_module.SSLContext | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    out: TextIO | None = None,
    listener: Listener | None = None,
    unix: str | None = None,
) -> None:
    """Serve ``app`` until ``stop`` is set (or SIGINT/SIGTERM), then shut down gracefully.

    The first line written to ``out`` names the bound address, so ``--port 0`` is usable.
    A worker of ``--workers`` serves its ``listener`` and leaves the banner to the supervisor.
    """
    out = sys.stdout if out is None else out
    stop = asyncio.Event() if stop is None else stop
    with _signals_set(stop) if handle_signals else contextlib.nullcontext():
        if listener is not None:
            await app.start(listener.host, listener.port, ssl=ssl, sock=listener.sock,
                            reuse_port=listener.reuse_port)
            listener.ready()
        elif unix is not None:
            with _logs_held():  # the banner is the first line printed, then the log
                await app.start(ssl=ssl, unix=unix)
                out.write(f"wskit serving on unix:{unix}\nPress Ctrl-C to stop.\n")
                out.flush()
        else:
            with _logs_held():
                server = await app.start(host, port, ssl=ssl)
                # asyncio's and uvloop's servers both have ``sockets``; AbstractServer does not
                # say so.
                sockets: Any = getattr(server, "sockets", ())
                _banner(out, sockets[0].getsockname(), ssl is not None)
        try:
            await stop.wait()
        finally:
            await app.shutdown()


@contextlib.contextmanager
def _logs_held(name: str = "wskit") -> Iterator[None]:
    """Hold back what logger ``name`` logs inside the block and let it out after the block,
    in order, so that what the block prints comes first."""
    logger = logging.getLogger(name)
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    logger.addFilter(hold)
    try:
        yield
    finally:
        logger.removeFilter(hold)
        for record in held:
            logger.handle(record)


def _banner(out: TextIO, address: Any, tls: bool, workers: str = "") -> None:
    base = _http_url(address, tls)
    ws_base = "ws" + base[4:]
    out.write(
        f"wskit serving on {base}{workers}\n"
        f"  chat page  {base}/\n"
        f"  echo       {ws_base}/echo\n"
        f"  chat       {ws_base}/chat/{{room}}?name=you\n"
        f"  health     {base}/health\n"
        "Press Ctrl-C to stop.\n"
    )
    out.flush()


def _server_ssl(certfile: str | None, keyfile: str | None) -> ssl_module.SSLContext | None:
    """The server's TLS context; OSError with a one-line message naming the file at fault."""
    if certfile is None:
        return None
    for what, path in (("certificate", certfile), ("key", keyfile)):
        if path is not None and not os.path.isfile(path):
            raise OSError(f"{what} file not found: {path}")
    context = ssl_module.create_default_context(ssl_module.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl_module.SSLError as exc:
        files = certfile if keyfile is None else f"{certfile} and {keyfile}"
        raise OSError(f"cannot load the certificate from {files}: {exc.reason or exc} "
                      "(PEM files: the chain, and the key unless it is in --certfile)") from None
    return context


def _serve_command(args: argparse.Namespace) -> int:
    workers = args.workers
    # With several workers, each log line names its process: who served which connection.
    pid = " [%(process)d]" if workers > 1 else ""
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)-7s{pid} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        context = _server_ssl(args.certfile, args.keyfile)
    except (OSError, ssl_module.SSLError) as exc:
        print(f"wskit serve: {exc}", file=sys.stderr)
        return 1
    if workers > 1 and args.redis is None:
        logging.getLogger("wskit").warning(
            "%d workers without --redis: chat rooms will not span workers (members on "
            "different workers will not see each other's messages)", workers)
    try:
        hub = chat_hub(args.redis, presence_ttl=args.presence_ttl)
    except ValueError as exc:
        print(f"wskit serve: bad --redis URL: {exc}", file=sys.stderr)
        return 2
    # Each connection is a file descriptor: take all the system allows (a WARNING says
    # when the connections near it).
    raise_fd_limit()
    app = create_app(
        hub=hub,
        max_message_size=args.max_message_size,
        compression=None if args.no_compression else "deflate",
        idle_timeout=args.idle_timeout,
        max_connections_per_ip=args.max_connections_per_ip,
    )

    async def serve_with_hub(listener: Listener | None = None) -> None:
        try:
            await serve(app, args.host, args.port, ssl=context, listener=listener,
                        unix=args.unix)
        finally:
            await hub.close()

    if workers > 1 and args.unix is not None:
        print("wskit serve: --workers serves a TCP port; it does not combine with --unix",
              file=sys.stderr)
        return 2
    if workers > 1:
        return _serve_workers(args, serve_with_hub, context is not None)
    try:
        run(serve_with_hub())
    except OSError as exc:
        # Most often the port is taken; say so without a traceback.
        where = f"unix:{args.unix}" if args.unix else f"{args.host}:{args.port}"
        print(f"wskit serve: cannot listen on {where}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover - only where signal handlers are unsupported
        return 130
    return 0


def _serve_workers(args: argparse.Namespace,
                   serve_one: Callable[[Listener], Coroutine[Any, Any, None]],
                   tls: bool) -> int:
    def worker(listener: Listener) -> int:
        run(serve_one(listener))
        return 0

    def banner(host: str | None, port: int) -> None:
        _banner(sys.stdout, (host or "0.0.0.0", port), tls, f" ({args.workers} workers)")

    try:
        return supervise(worker, workers=args.workers, host=args.host, port=args.port,
                         on_ready=banner)
    except OSError as exc:
        print(f"wskit serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1


# -- connect -----------------------------------------------------------------------------------


class _StdinReader:
    """Reads a file descriptor in a daemon thread and hands chunks to the loop (b"" at EOF).

    A thread works for terminals, pipes and files alike, and unlike ``connect_read_pipe`` it
    never makes the terminal non-blocking, which would break writes to stdout sharing it.
    The thread is a daemon, so a read still blocked at exit does not hold the process.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.loop = asyncio.get_running_loop()
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        threading.Thread(target=self._read, name="wskit-stdin", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                chunk = b""
            try:
                self.loop.call_soon_threadsafe(self.chunks.put_nowait, chunk)
            except RuntimeError:
                return  # The loop is closed: nobody is listening any more.
            if not chunk:
                return


def _describe_binary(data: bytes) -> str:
    preview = data[:HEX_PREVIEW].hex(" ")
    more = " …" if len(data) > HEX_PREVIEW else ""
    return f"< [binary {len(data)} bytes] {preview}{more}".rstrip()


def _client_ssl(url: str, insecure: bool) -> ssl_module.SSLContext | None:
    if not url.lower().startswith("wss:"):
        return None
    context = ssl_module.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
    return context


async def connect_interactive(
    url: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] = (),
    insecure: bool = False,
    compression: bool = True,
    stdin_fd: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    handle_signals: bool = True,
    open_timeout: float | None = 10.0,
    unix: str | None = None,
    proxy: str | bool | None = True,
) -> int:
    """Send each line read from ``stdin_fd`` as text and print what arrives; the exit status.

    EOF closes with 1000 (Ctrl-D on a terminal); so does Ctrl-C.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    stdin_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    try:
        ws = await connect(
            url,
            ssl=_client_ssl(url, insecure),
            headers=list(headers),
            subprotocols=list(subprotocols),
            compression="deflate" if compression else None,
            open_timeout=open_timeout,
            unix=unix,
            proxy=proxy,
        )
    except InvalidHandshake as exc:
        status = "" if str(exc.status) in exc.reason else f" (HTTP {exc.status})"
        print(f"error: WebSocket handshake with {url} failed: {exc.reason}{status}", file=err)
        return 1
    except ssl_module.SSLCertVerificationError as exc:
        print(f"error: TLS certificate of {url} not trusted: {exc.verify_message} "
              "(--insecure skips the check)", file=err)
        return 1
    except TimeoutError as exc:
        print(f"error: {str(exc).replace('open_timeout=', '--open-timeout')}", file=err)
        return 1
    except OSError as exc:
        # wskit's messages say what happened and what to try; others get the URL in front.
        message = str(exc) if isinstance(exc, WSKitError) else f"cannot connect to {url}: {exc}"
        print(f"error: {message}", file=err)
        return 1

    details = [f"subprotocol {ws.subprotocol}"] if ws.subprotocol else []
    details += ws.extensions
    suffix = f" ({', '.join(details)})" if details else ""
    print(f"connected to {url}{suffix}; type lines to send, Ctrl-D or Ctrl-C to close",
          file=err)
    err.flush()
    # At a terminal, the line being typed is echoed here, so that a message that arrives
    # meanwhile is printed above it and the line is drawn again, whole (pipes: unchanged).
    with terminal_mode(stdin_fd) if out.isatty() else contextlib.nullcontext(False) as tty:
        editor = LineEditor(columns=lambda: shutil.get_terminal_size().columns) if tty else None

        def show(line: str) -> None:
            out.write(line + "\n" if editor is None else editor.above(line))
            out.flush()

        ws.on_text(lambda ws, text: show(f"< {text}"))
        ws.on_binary(lambda ws, data: show(_describe_binary(data)))
        if editor is not None:
            out.write(editor.redraw())
            out.flush()

        quit_requested = asyncio.Event()
        with _signals_set(quit_requested) if handle_signals else contextlib.nullcontext():
            we_closed = await _pump_stdin(ws, _StdinReader(stdin_fd), quit_requested,
                                          editor, out)
        if editor is not None:
            out.write(editor.clear())
            out.flush()
    await ws.wait_closed()

    code, reason = ws.close_code, ws.close_reason
    who = "closed" if we_closed else "closed by the server"
    print(f"{who}: {code}{' ' + reason if reason else ''}", file=err)
    err.flush()
    return 0 if code in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY) or (
        we_closed and ws.error is None) else 1


async def _pump_stdin(ws: WebSocket, reader: _StdinReader, quit_requested: asyncio.Event,
                      editor: LineEditor | None = None, out: TextIO | None = None) -> bool:
    """Send stdin's lines until EOF or Ctrl-C (then close with 1000: True) or the peer closes.

    With an ``editor`` (stdin is a terminal), keys go through it and its echo goes to ``out``;
    Ctrl-C then drops the line being typed, as a terminal does.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    closed = asyncio.ensure_future(ws.wait_closed())
    quitting = asyncio.ensure_future(quit_requested.wait())
    try:
        while True:
            chunk_future = asyncio.ensure_future(reader.chunks.get())
            await asyncio.wait({chunk_future, closed, quitting},
                               return_when=asyncio.FIRST_COMPLETED)
            if not chunk_future.done():
                chunk_future.cancel()
                if closed.done():
                    return False
                chunk = b""  # Ctrl-C: close as on EOF.
            else:
                chunk = chunk_future.result()
            if editor is not None:
                lines, echo, ended = editor.feed(chunk) if chunk else ([], "", True)
                if echo and out is not None:
                    out.write(echo)
                    out.flush()
                if ended:
                    chunk = b""
            else:
                text = pending + decoder.decode(chunk, final=not chunk)
                *lines, pending = text.split("\n")
                if not chunk and pending:
                    lines.append(pending)  # A last line without its newline is still sent.
            try:
                for line in lines:
                    ws.send(line.removesuffix("\r"))
                await ws.drain()
            except WSKitError:
                return False  # The server closed meanwhile.
            if not chunk:
                await ws.close(CloseCode.NORMAL_CLOSURE)
                return True
    finally:
        closed.cancel()
        quitting.cancel()


def _header(value: str) -> tuple[str, str]:
    name, colon, rest = value.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {value!r}")
    return name.strip(), rest.strip()


def _connect_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        parse_uri(args.url)
        if args.proxy not in (None, "none"):
            parse_proxy_url(args.proxy)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        return run(connect_interactive(
            args.url,
            headers=args.header,
            subprotocols=args.subprotocol,
            insecure=args.insecure,
            compression=not args.no_compression,
            open_timeout=args.open_timeout,
            unix=args.unix,
            proxy=None if args.proxy == "none" else (args.proxy or True),
        ))
    except KeyboardInterrupt:  # pragma: no cover - only where signal handlers are unsupported
        return 130


# -- bench -------------------------------------------------------------------------------------


def _bench_command(argv: Sequence[str], module: str = "bench.run") -> int:
    """Hand over to ``python -m bench.run`` when the benchmark package is importable."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:
        found = False
    if not found:
        print(
            "wskit bench: the benchmark lives in the repository's bench/ folder.\n"
            "From a checkout, run `make bench` (or `make bench-quick`), or\n"
            "`python -m bench.run --help` from the repository root.",
            file=sys.stderr,
        )
        return 2
    saved = sys.argv
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved
    return 0


# -- the parser --------------------------------------------------------------------------------


def _integer(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}, not {value!r}") from None


def _positive(value: str) -> int:
    number = _integer(value, "expected a positive whole number")
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return number


def _port(value: str) -> int:
    number = _integer(value, "expected a port number (0-65535)")
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value} (ports go from 0 to 65535)")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wskit", description="wskit: WebSockets for asyncio, from the command line."
    )
    parser.add_argument("--version", action="version", version=f"wskit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve_parser = commands.add_parser(
        "serve", help="run the demo server: echo, chat rooms and the chat page",
        description="Serve /echo (text and binary), /chat/{room}, /health and the chat page at /.",
    )
    serve_parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    serve_parser.add_argument("--port", type=_port, default=8080,
                              help="default: %(default)s; 0 picks a free port (printed)")
    serve_parser.add_argument("--unix", metavar="PATH",
                              help="listen on a unix domain socket instead of --host/--port")
    serve_parser.add_argument("--max-message-size", type=_positive,
                              default=limits.MAX_MESSAGE_SIZE, metavar="BYTES",
                              help="largest message accepted (default: %(default)s)")
    serve_parser.add_argument("--idle-timeout", type=_seconds, default=None, metavar="SECONDS",
                              help="close connections without a message for this long (1001)")
    serve_parser.add_argument("--max-connections-per-ip", type=_positive, default=None,
                              metavar="N", help="refuse more connections from one address (429)")
    serve_parser.add_argument("--certfile", help="PEM certificate chain: serve https/wss")
    serve_parser.add_argument("--keyfile", help="PEM private key (if not in --certfile)")
    serve_parser.add_argument("--no-compression", action="store_true",
                              help="refuse permessage-deflate")
    serve_parser.add_argument("--workers", type=_positive, default=1, metavar="N",
                              help="processes serving the port (SO_REUSEPORT); default: 1")
    serve_parser.add_argument("--redis", metavar="URL",
                              help="join chat rooms across workers and hosts through Redis, "
                                   "e.g. redis://127.0.0.1:6379/0")
    serve_parser.add_argument("--presence-ttl", type=_seconds, default=30.0, metavar="SECONDS",
                              help="members of a worker that died leave the chat rooms' "
                                   "presence within this time (default: %(default)s)")
    serve_parser.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                              help="default: %(default)s")

    connect_parser = commands.add_parser(
        "connect", help="an interactive client: send stdin's lines, print what arrives",
        description="Lines read from stdin are sent as text messages; received messages are "
                    "printed as '< text', above the line being typed at a terminal. Ctrl-D "
                    "(end of input) or Ctrl-C closes with 1000 and exits with 0.",
    )
    connect_parser.add_argument("url", help="ws:// or wss:// URL")
    connect_parser.add_argument("-H", "--header", type=_header, action="append", default=[],
                                metavar="'NAME: VALUE'", help="extra request header (repeatable)")
    connect_parser.add_argument("-s", "--subprotocol", action="append", default=[],
                                metavar="NAME", help="subprotocol to offer (repeatable)")
    connect_parser.add_argument("-k", "--insecure", action="store_true",
                                help="do not verify the server's TLS certificate")
    connect_parser.add_argument("--no-compression", action="store_true",
                                help="do not offer permessage-deflate")
    connect_parser.add_argument("--open-timeout", type=_seconds, default=10.0, metavar="SECONDS",
                                help="give up opening after this long (default: %(default)s)")
    connect_parser.add_argument("--unix", metavar="PATH",
                                help="connect to a unix domain socket instead of the URL's host")
    connect_parser.add_argument("--proxy", metavar="URL",
                                help="http://[user:pw@]host:port, socks5://, socks5h://, or "
                                     "'none' (default: from the environment, as curl reads it)")

    fuzz_parser = commands.add_parser(
        "fuzzingclient", help="run the Autobahn|Testsuite cases as a client (echo)",
        description="Connect to a running Autobahn fuzzing server, echo every case, then ask it "
                    "to write its report.",
    )
    fuzz_parser.add_argument("--url", default="ws://127.0.0.1:9001", help="default: %(default)s")
    fuzz_parser.add_argument("--agent", default="wskit", help="default: %(default)s")
    fuzz_parser.add_argument("--no-compression", action="store_true",
                             help="do not offer permessage-deflate")

    commands.add_parser("bench", add_help=False,
                        help="run the benchmark (arguments go to `python -m bench.run`)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bench"]:
        # Everything after "bench" belongs to the benchmark, options included.
        return _bench_command(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command == "serve":
        if args.keyfile and not args.certfile:
            parser.error("--keyfile needs --certfile")
        return _serve_command(args)
    if args.command == "connect":
        return _connect_command(args, parser)
    if args.command == "fuzzingclient":
        from .autobahn import run_fuzzing_client

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)
        run(run_fuzzing_client(args.url, args.agent, compression=not args.no_compression))
        return 0
    parser.print_help(sys.stderr)
    return 2

