"""``python -m engine serve DIR``: a WebXR package over HTTPS, for a headset.

Browsers enable WebXR only in a secure context: ``https://`` or ``http://localhost``.
A headset opening ``http://<PC>:<port>`` on the LAN therefore gets no "Enter VR"; this
serves the package over HTTPS with a self-signed certificate made on the spot (or the
user's ``--cert``/``--key``), prints the URL to open, and stops on Ctrl-C.

- Binds ``127.0.0.1`` unless ``--host`` says otherwise: reaching it from the LAN is the
  user's explicit choice (``--host 0.0.0.0``). With a Quest on USB, ``adb reverse
  tcp:PORT tcp:PORT`` makes the headset's ``https://localhost:PORT`` reach this server
  with nothing exposed on the network.
- ``DIR`` is a WebXR package (``index.html``), an ``export`` folder (``webxr/``) or a VR
  package (``panorama/webxr/``).
- The certificate (RSA 2048, SHA-256, valid 30 days, subjectAltName = localhost, the
  loopback addresses and the served host) is written to a private temporary folder and
  removed on exit; the headset shows a warning once, which the user accepts.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from pathlib import Path

from ..contract import WEBXR_DIR, BadInput, JobCancelled
from ..progress import JobContext

HELP = "serve a WebXR package over HTTPS (self-signed) so a headset can enter VR"
DEFAULT_PORT = 8443
INDEX = "index.html"
#: Days a certificate made on the spot stays valid.
CERT_DAYS = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, metavar="DIR", help="a WebXR package or export")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 = LAN)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0 = any free)",
    )
    parser.add_argument("--cert", type=Path, default=None, help="PEM certificate (with --key)")
    parser.add_argument("--key", type=Path, default=None, help="PEM private key (with --cert)")


def webxr_folder(folder: Path) -> Path:
    """The folder holding the viewer's ``index.html`` inside ``folder`` (see the module)."""
    for candidate in (folder, folder / WEBXR_DIR, folder / "panorama" / WEBXR_DIR):
        if (candidate / INDEX).is_file():
            return candidate
    raise BadInput(f"{folder} holds no WebXR package (no {INDEX}, {WEBXR_DIR}/{INDEX})")


def run(args: argparse.Namespace, ctx: JobContext) -> None:
    """Check inputs, make or load the certificate, serve until Ctrl-C (or a cancel)."""
    import shutil
    import tempfile

    # 1. Check inputs.
    root = webxr_folder(args.folder)
    if not 0 <= args.port <= 65535:
        raise BadInput(f"--port {args.port} must be between 0 (any free port) and 65535")
    if (args.cert is None) != (args.key is None):
        raise BadInput("--cert and --key go together (a PEM certificate and its key)")
    for path in (args.cert, args.key):
        if path is not None and not path.is_file():
            raise BadInput(f"certificate file not found: {path}")
    # 2. Certificate, server, URL.
    secrets_dir = Path(tempfile.mkdtemp(prefix="panoloop-serve-"))  # 0700: the key is private
    try:
        if args.cert is None:
            cert, key = make_self_signed(secrets_dir, args.host)
        else:
            cert, key = args.cert, args.key
        server = https_server(root, args.host, args.port, cert, key)
        with server:
            port = server.server_address[1]
            for url in urls(args.host, port):
                print(url, flush=True)
            # The add-on runs this in its worker: the stage is what its panel shows.
            ctx.progress(f"serving {urls(args.host, port)[0]}", 1, 1)
            print(
                "open the URL on the headset (accept the self-signed certificate once); "
                "Ctrl-C stops",
                flush=True,
            )
            _serve_until_cancelled(server, ctx)
    finally:
        shutil.rmtree(secrets_dir, ignore_errors=True)
    return None


def _serve_until_cancelled(server: object, ctx: JobContext) -> None:
    import threading

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.start()
    try:
        while thread.is_alive() and not ctx.cancel.cancelled:
            thread.join(timeout=0.2)
    except KeyboardInterrupt:
        print("stopped", flush=True)  # Ctrl-C is how a server is meant to stop
    finally:
        server.shutdown()
        thread.join()
    if ctx.cancel.cancelled:  # the add-on's Cancel: the worker reports it as cancelled
        raise JobCancelled("stopped serving; nothing was written")


def https_server(root: Path, host: str, port: int, cert: Path, key: Path) -> object:
    """A threading HTTP server for ``root`` wrapped in TLS (refuses a port in use)."""
    import functools
    import http.server
    import ssl

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {
            **http.server.SimpleHTTPRequestHandler.extensions_map,
            ".js": "text/javascript",
            ".mjs": "text/javascript",
            ".glb": "model/gltf-binary",
            ".mp4": "video/mp4",
        }

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # one line per request would drown the URL the user needs

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise BadInput(f"cannot use certificate {cert} with key {key}: {exc}") from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(http.server.ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    handler = functools.partial(Handler, directory=str(root))
    try:
        server = Server((host, port), handler)
    except OSError as exc:
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def urls(host: str, port: int) -> list[str]:
    """The URLs to open: localhost for a loopback bind; this machine's LAN address for
    a wildcard bind; else the given host."""
    if host in ("127.0.0.1", "::1", "localhost"):
        return [f"https://localhost:{port}/"]
    if host in ("0.0.0.0", "::", ""):
        return [f"https://{lan_address()}:{port}/"]
    shown = f"[{host}]" if ":" in host else host
    return [f"https://{shown}:{port}/"]


def lan_address() -> str:
    """This machine's address on the LAN (the route to a public address; nothing is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: connect() on UDP only picks a route
        return probe.getsockname()[0]
    except OSError:
        return socket.gethostbyname(socket.gethostname())
    finally:
        probe.close()


def make_self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate and key (PEM) in ``folder``: ``cryptography`` when it is
    installed (it is an engine requirement), else the ``openssl`` command."""
    names = {"localhost", socket.gethostname()}
    addresses = {"127.0.0.1", "::1"}
    for value in (host, lan_address() if host in ("0.0.0.0", "::", "") else host):
        try:
            ipaddress.ip_address(value)
            addresses.add(value)
        except ValueError:
            if value:
                names.add(value)
    addresses.discard("0.0.0.0")
    addresses.discard("::")
    try:
        return _with_cryptography(folder, sorted(names), sorted(addresses))
    except ImportError:
        return _with_openssl(folder, sorted(names), sorted(addresses))


def _with_cryptography(folder: Path, names: list[str], addresses: list[str]) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PanoLoop local server")])
    now = datetime.datetime.now(datetime.UTC)
    alt = [x509.DNSName(n) for n in names]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _with_openssl(folder: Path, names: list[str], addresses: list[str]) -> tuple[Path, Path]:
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        raise BadInput(
            "cannot make a certificate: neither the cryptography package nor openssl is here",
            "install the engine's requirements (pip install -e .), or pass --cert and --key",
        )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    alt = ",".join([f"DNS:{n}" for n in names] + [f"IP:{a}" for a in addresses])
    command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256"]
    command += ["-days", str(CERT_DAYS), "-subj", "/CN=PanoLoop local server"]
    command += ["-addext", f"subjectAltName={alt}", "-keyout", str(key_path)]
    command += ["-out", str(cert_path)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BadInput(f"openssl could not make a certificate: {done.stderr.strip()[-200:]}")
    return cert_path, key_path
