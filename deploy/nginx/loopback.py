"""deploy/nginx/gru-asr.conf run on loopback ports, for tests and benchmarks/ws_load.py --via nginx.

render() rewrites only what differs on one machine: the upstream's servers (127.0.0.1 ports), the per-replica
locations, plain HTTP on a loopback port instead of TLS on 443 (`tls=True` keeps TLS, with a given
certificate), no redirect server, an X-Upstream response header naming the replica that served a
connection (tests read it; the shipped file leaves it out, it names internal addresses), and no limit of
open connections per client address unless `per_address` sets one (every client on one machine has the same
address, 127.0.0.1). Everything else (least_conn, max_fails, the websocket headers, timeouts,
proxy_next_upstream) is the shipped file's.

    with Nginx([2701, 2702, 2703]) as lb:      # nginx -p TMP -c TMP/nginx.conf, master process in foreground
        connect(lb.url)
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONF = Path(__file__).with_name("gru-asr.conf")


class NginxError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(
    ports: list[int], listen: int, cert: tuple[str, str] | None = None, conf: str | None = None, per_address: int = 0
) -> str:
    """The shipped server config for replicas on 127.0.0.1:ports, nginx listening on 127.0.0.1:listen;
    `per_address`: the limit_conn per client address (0: none)."""
    text = conf if conf is not None else CONF.read_text()
    limit = f"limit_conn gru_asr_per_address {per_address};" if per_address else "# (no limit_conn on loopback)"
    text, n = re.subn(r"limit_conn gru_asr_per_address \d+;", limit, text)
    if n != 1:
        raise NginxError(f"{CONF}: no limit_conn gru_asr_per_address line")
    names = "abcdefghijklmnopqrstuvwxyz"
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=2 fail_timeout=10s;\n" for p in ports)
    text, n = re.subn(
        r"(upstream gru_asr \{\n(?:    #[^\n]*\n|    least_conn;[^\n]*\n)*)(?:    server [^\n]*\n)+",
        lambda m: m.group(1) + servers,
        text,
    )
    if n != 1:
        raise NginxError(f"{CONF}: no upstream gru_asr block with server lines")
    replicas = "".join(
        f"    location ~ ^/replicas/{names[i]}(/healthz|/readyz|/metrics)$ {{ proxy_pass http://127.0.0.1:{p}$1; }}\n"
        for i, p in enumerate(ports)
    )
    text, n = re.subn(r"(?:    location ~ \^/replicas/[^\n]*\n)+", lambda m: replicas, text)
    if n != 1:
        raise NginxError(f"{CONF}: no per-replica locations")
    if cert:
        text = re.sub(r"listen 443 ssl;", f"listen 127.0.0.1:{listen} ssl;", text)
        text = re.sub(r"ssl_certificate +[^;]+;", f"ssl_certificate {cert[0]};", text)
        text = re.sub(r"ssl_certificate_key +[^;]+;", f"ssl_certificate_key {cert[1]};", text)
    else:
        text = re.sub(r"listen 443 ssl;", f"listen 127.0.0.1:{listen};", text)
        text = re.sub(r"\n *ssl_[a-z_]+ [^;]+;", "", text)
    text = re.sub(r"\nserver \{  # plain HTTP: to TLS\n.*?\n\}\n", "\n", text, flags=re.S)  # no port 80
    text = text.replace(
        "        proxy_buffering off;\n",
        "        proxy_buffering off;\n        add_header X-Upstream $upstream_addr always;\n",
        1,
    )
    return text


def main_config(server_conf: Path, prefix: Path) -> str:
    """A whole nginx.conf around the server config: foreground, logs and temp files under prefix."""
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {server_conf};
}}
"""


class Nginx:
    """nginx in the foreground in front of replicas on loopback ports (stop(): SIGQUIT, a graceful stop)."""

    def __init__(self, ports: list[int], listen: int = 0, cert: tuple[str, str] | None = None, per_address: int = 0):
        self.binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if self.binary is None:
            raise NginxError("nginx is not installed (apt-get install nginx)")
        self.ports, self.listen, self.cert, self.per_address = ports, listen or free_port(), cert, per_address
        self.prefix = Path(tempfile.mkdtemp(prefix="gru-asr-nginx-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'wss' if self.cert else 'ws'}://127.0.0.1:{self.listen}"

    def start(self) -> Nginx:
        server_conf = self.prefix / "gru-asr.conf"
        server_conf.write_text(render(self.ports, self.listen, self.cert, per_address=self.per_address))
        (self.prefix / "nginx.conf").write_text(main_config(server_conf, self.prefix))
        cmd = [self.binary, "-e", str(self.prefix / "error.log"), "-p", str(self.prefix), "-c", "nginx.conf"]
        check = subprocess.run([*cmd, "-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise NginxError(f"nginx -t: {check.stderr.strip().splitlines()[-1:]}")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NginxError(f"nginx exited {self.proc.returncode}: {self.error_log()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.listen), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise NginxError("nginx did not start listening")

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(3)  # SIGQUIT: graceful
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
