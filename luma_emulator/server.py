"""serve(): the emulator on a real socket, one thread per connection."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from luma_emulator.app import SERVER_ENVIRON_KEY, ConnectionDropped, Emulator


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(ServerHandler):
    dropped = False

    def handle_error(self) -> None:
        if isinstance(sys.exc_info()[1], ConnectionDropped):
            self.dropped = True  # say nothing: the request handler closes the socket
            return
        super().handle_error()


class _RequestHandler(WSGIRequestHandler):
    quiet = False

    def get_environ(self) -> dict:
        environ = super().get_environ()
        environ[SERVER_ENVIRON_KEY] = True
        return environ

    def handle(self) -> None:
        # WSGIRequestHandler.handle, with a handler that can hang up without answering.
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _Handler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True
        )
        handler.request_handler = self
        handler.run(self.server.get_app())
        if handler.dropped:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def make_server(
    emulator: Emulator, host: str = "127.0.0.1", port: int = 9100, *, quiet: bool = False
) -> ThreadingWSGIServer:
    """A bound server (port 0 picks a free one); call serve_forever() and later shutdown()."""
    handler = type("RequestHandler", (_RequestHandler,), {"quiet": quiet})
    server = ThreadingWSGIServer((host, port), handler)
    server.set_app(emulator)
    return server


def serve(emulator: Emulator, host: str = "127.0.0.1", port: int = 9100) -> None:
    """Serve until KeyboardInterrupt, rendering ahead and sending callbacks in the background."""
    server = make_server(emulator, host, port)
    base = server.base_url
    print(f"Luma emulator serving {emulator.data_dir}", flush=True)
    print(f"  router dialect:   {base}  (POST {base}/luma/generations)", flush=True)
    print(f"  official dialect: {base}/dream-machine/v1", flush=True)
    print(f"  admin:            {base}/_emulator/stats", flush=True)
    emulator.start_background()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Luma emulator stopped", flush=True)
    finally:
        emulator.stop_background()
        server.server_close()
