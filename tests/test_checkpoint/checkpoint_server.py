"""A checkpoint server on 127.0.0.1 for the download tests: the files of a folder under
the release path of the LSNet weights (``/jameslahm/lsnet/resolve/main/NAME``), every
request recorded, and chosen files cut off halfway (Content-Length announced in full)."""
import functools
import http.server
import os.path as osp
import socket
import threading

RELEASE_PATH = '/jameslahm/lsnet/resolve/main/'


class _Handler(http.server.BaseHTTPRequestHandler):
    def __init__(self, server_state, *args, **kwargs):
        self.state = server_state
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.state.requests.append(self.path)
        name = self.path[len(RELEASE_PATH):] if self.path.startswith(RELEASE_PATH) else ''
        path = osp.join(self.state.folder, name)
        if not name or not osp.isfile(path):
            self.send_error(404, 'File not found')
            return
        with open(path, 'rb') as f:
            data = f.read()
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data[:len(data) // 2] if name in self.state.cut else data)
        self.close_connection = True

    def log_message(self, *args):
        pass


class CheckpointServer:
    """Serve ``folder`` at :meth:`url` while used as a context manager.

    Args:
        folder (str): The files to serve.

    Attributes:
        requests (list[str]): The paths requested, in order.
        cut (set[str]): Names whose transfer stops after half of the bytes.
    """

    def __init__(self, folder):
        self.folder = str(folder)
        self.requests = []
        self.cut = set()
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                     functools.partial(_Handler, self))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name):
        """The URL of file ``name``."""
        return f'http://127.0.0.1:{self.httpd.server_address[1]}{RELEASE_PATH}{name}'

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def offline_url(name):
    """A URL of the release path on a local port where nothing listens."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return f'http://127.0.0.1:{port}{RELEASE_PATH}{name}'


def use_local_network(monkeypatch, torch_home):
    """TORCH_HOME in a temporary folder, no proxy for 127.0.0.1."""
    monkeypatch.setenv('TORCH_HOME', str(torch_home))
    for var in ('NO_PROXY', 'no_proxy'):
        monkeypatch.setenv(var, '127.0.0.1,localhost')
    return osp.join(str(torch_home), 'hub', 'checkpoints')
