"""The project-local PostgreSQL cluster under ``TWIN_DATA_DIR``.

It listens on a Unix socket in its own directory and never on TCP, so a PostgreSQL already
serving port 5432 neither disturbs it nor is disturbed by it. PostgreSQL refuses to run as
root; when Twin runs as root, the cluster runs as the ``postgres`` system user.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from twin.errors import DatabaseUnavailable
from twin.settings import Settings

# A Unix socket path is limited to 107 bytes; leave room for "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR = 80


@dataclass(frozen=True)
class Cluster:
    """Where the local cluster lives and how to reach it."""

    bindir: Path
    pgdata: Path
    socket_dir: Path
    port: int
    dbname: str
    app_role: str
    run_as: str | None  # system user running the server, when we are root

    @property
    def logfile(self) -> Path:
        return self.pgdata.parent / "postgresql.log"

    def url(self, user: str) -> str:
        """SQLAlchemy URL for ``user`` over the cluster's socket."""
        return (f"postgresql+psycopg://{user}@/{self.dbname}"
                f"?host={self.socket_dir}&port={self.port}")

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    @property
    def app_url(self) -> str:
        return self.url(self.app_role)

    def is_initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        done = self._run([str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "status"],
                         check=False)
        return done.returncode == 0

    def start(self, options: str = "") -> bool:
        """Initialise when new, start when stopped; True when this call started it.

        ``options`` are more server options, after Twin's own (a later one wins). A cluster
        restored from a backup first replays its WAL: this returns once that is over (or
        paused at the restore's target), so what follows reads the restored twin.
        """
        if not self.is_initialised():
            self._initdb()
        started = not self.is_running()
        if started:
            self.prepare_dirs()
            self._archive_from_the_start()
            self._pg_ctl_start(options)
            self._await_recovery()
        self._ensure_database()
        return started

    def start_standby(self, name: str) -> bool:
        """Start this copy of another cluster as its streaming standby (``pg_basebackup -R``
        wrote how to reach it), named ``name`` there; it stays in recovery, answering reads.
        True when this call started it."""
        if self.is_running():
            return False
        self.prepare_dirs()
        self._pg_ctl_start(f"-c cluster_name={name} -c hot_standby=on")
        return True

    def _pg_ctl_start(self, options: str) -> None:
        server = (f"-k {self.socket_dir} -p {self.port} -c listen_addresses='' "
                  f"-c log_min_duration_statement={SLOW_STATEMENT} "
                  f"{sized_to_memory(memory_bytes())} {options}")
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-l",
                   str(self.logfile), "-o", server, "-w", "-t", "60", "start"])

    def stop(self) -> bool:
        """Stop the server if it runs; True when this call stopped it."""
        if not self.is_running():
            return False
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w",
                   "stop"])
        return True

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run one statement as the cluster's superuser (set-up only)."""
        done = self._run([str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v",
                          "ON_ERROR_STOP=1", "-h", str(self.socket_dir), "-p", str(self.port),
                          "-U", "postgres", "-d", dbname, "-c", sql])
        return done.stdout.strip()

    def _initdb(self) -> None:
        self.prepare_dirs()
        self._run([str(self.bindir / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                   "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"])
        with (self.pgdata / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# Twin: a small, local, socket-only cluster\n"
                       "listen_addresses = ''\nwork_mem = 32MB\n"
                       "maintenance_work_mem = 256MB\nmax_connections = 200\n"
                       "max_wal_size = 2GB\ntimezone = 'UTC'\n")

    def _archive_from_the_start(self) -> None:
        """WAL archiving on from the first start (PostgreSQL turns archive_mode on only at a
        start), so that the first `twin db backup` needs no restart; until a backup sets
        pgBackRest's archive_command (postgresql.auto.conf, which wins), a finished segment is
        let go, as with no base backup to replay it onto it restores nothing."""
        conf = self.pgdata / "postgresql.conf"
        if _ARCHIVING_MARK not in conf.read_text(encoding="utf-8"):
            with conf.open("a", encoding="utf-8") as out:
                out.write(_ARCHIVING)

    def _await_recovery(self) -> None:
        """Wait while the server replays WAL (after a restore), until it is open for writes
        or paused at its recovery target; a server that stops instead says why in its log."""
        still = ("SELECT pg_is_in_recovery() AND pg_get_wal_replay_pause_state() <> 'paused'")
        while True:
            try:
                if self.psql(still) == "f":
                    return
            except DatabaseUnavailable:
                if not self.is_running():
                    raise DatabaseUnavailable(
                        f"the server stopped while replaying its WAL: {self.log_errors()}"
                        f"\nlog: {self.logfile}") from None
            time.sleep(0.5)

    def log_errors(self) -> str:
        """The FATAL and PANIC lines of the server's last start, for a message."""
        with self.logfile.open("rb") as log:
            log.seek(max(log.seek(0, os.SEEK_END) - 2**16, 0))
            text = log.read().decode("utf-8", errors="replace")
        last_start = text.rfind("starting PostgreSQL")
        lines = [line.split("FATAL:", 1)[-1].split("PANIC:", 1)[-1].strip()
                 for line in text[max(last_start, 0):].splitlines()
                 if "FATAL:" in line or "PANIC:" in line]
        return "; ".join(dict.fromkeys(lines)) or "nothing logged"

    def scratch(self, base: Path) -> Cluster:
        """A cluster of the same server programs, owner, port number and database in ``base``,
        on its own socket: a copy to restore a backup into and compare."""
        return replace(self, pgdata=base / "pg", socket_dir=_socket_dir(base))

    def _ensure_database(self) -> None:
        # names come from the settings, not from a request
        exists = f"SELECT 1 FROM pg_database WHERE datname = '{self.dbname}'"  # noqa: S608
        if self.psql(exists) != "1":
            self.psql(f'CREATE DATABASE "{self.dbname}"')
        self.psql(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                  f"'{self.app_role}') THEN CREATE ROLE \"{self.app_role}\" LOGIN; END IF; END $$")

    def prepare_dirs(self) -> None:
        """The cluster's folders, owned by the user who runs the server."""
        for path in (self.pgdata.parent, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            if self.run_as:
                shutil.chown(path, self.run_as, self.run_as)
        if self.run_as and self.pgdata.exists():
            shutil.chown(self.pgdata, self.run_as, self.run_as)

    def as_owner(self, argv: list[str]) -> list[str]:
        """``argv`` run as the user who runs the server (pgBackRest must be that user too)."""
        return ["runuser", "-u", self.run_as, "--", *argv] if self.run_as else argv

    def stream(self, argv: list[str]) -> Iterator[str]:
        """The output lines of ``argv`` run as the server's user, as it writes them (text
        mode reads a progress line rewritten after a carriage return as a line each time); a
        failure raises DatabaseUnavailable with its last words."""
        lines: list[str] = []
        with subprocess.Popen(self.as_owner(argv), stdout=subprocess.PIPE,  # noqa: S603
                              stderr=subprocess.STDOUT, text=True, cwd="/") as proc:
            assert proc.stdout is not None
            for line in map(str.strip, proc.stdout):
                if line:
                    lines.append(line)
                    yield line
        if proc.returncode != 0:
            raise DatabaseUnavailable(f"{argv[0]} failed ({proc.returncode}): "
                                      f"{' '.join(lines[-5:])[-800:]}")

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = self.as_owner(argv)
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if check and done.returncode != 0:
            raise DatabaseUnavailable(
                f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-800:]}"
                f"\nlog: {self.logfile}")
        return done


# Appended to postgresql.conf at a start that finds it missing (see _archive_from_the_start);
# archive_timeout: a quiet twin's last changes are archived within a minute all the same.
_ARCHIVING_MARK = "# Twin: WAL archiving, for backups with point-in-time recovery"
_ARCHIVING = f"""
{_ARCHIVING_MARK} (`twin db backup`)
archive_mode = on
archive_command = 'true'  # nothing kept until `twin db backup` sets pgBackRest's
archive_timeout = 60
"""

# A statement slower than this is written to the cluster's log (.twin/postgresql.log), with its
# text and time, for the IT staff (a PostgreSQL of one's own: set log_min_duration_statement
# there).
SLOW_STATEMENT = "500ms"


def memory_bytes() -> int:
    """This machine's memory, or the container's limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def sized_to_memory(memory: int) -> str:
    """Server options for a machine of ``memory`` bytes, set at every start so a cluster
    follows the machine it is on: a quarter of memory (128 MB to 8 GB) for PostgreSQL's own
    page cache, where a scale-20 history is read without copying each page from the kernel's;
    the planner told the rest is the kernel's cache and that random reads are nearly as cheap
    as sequential ones (memory or SSD)."""
    mb = memory // 2**20
    shared = min(max(mb // 4, 128), 8192)
    return (f"-c shared_buffers={shared}MB -c effective_cache_size={max(mb // 2, shared)}MB "
            f"-c random_page_cost=1.1")


def find_bindir(settings: Settings) -> Path:
    """PostgreSQL's server programs: the setting, or the newest installed with PostGIS."""
    if settings.pg_bindir:
        return settings.pg_bindir
    versions = sorted((int(p.parent.parent.name), p.parent)
                      for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")
                      if p.parent.parent.name.isdigit())
    with_postgis = [bindir for version, bindir in versions
                    if Path(f"/usr/share/postgresql/{version}/extension/postgis.control").exists()]
    if not with_postgis:
        raise DatabaseUnavailable(
            "no PostgreSQL with PostGIS under /usr/lib/postgresql; run `make run` (it installs "
            "them with apt-get) or set TWIN_DATABASE_URL")
    return with_postgis[-1]


def _reachable_by(user: str, path: Path) -> bool:
    """Whether ``user`` can walk into ``path``'s nearest existing ancestor."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    done = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(existing)],  # noqa: S603, S607
                          capture_output=True, check=False)
    return done.returncode == 0


def local_cluster(settings: Settings) -> Cluster:
    """The cluster described by the settings (nothing is started here)."""
    run_as: str | None = None
    base = settings.data_dir
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise DatabaseUnavailable(
                "running as root needs the 'postgres' system user (the postgresql package "
                "creates it)") from None
        run_as = "postgres"
        if not _reachable_by(run_as, base):
            # e.g. a checkout under /root (mode 700): keep the cluster where postgres can reach it
            digest = hashlib.sha1(str(base).encode()).hexdigest()[:12]  # noqa: S324 (a name, not security)
            base = Path("/var/lib/twin") / digest
    return Cluster(bindir=find_bindir(settings), pgdata=base / "pg",
                   socket_dir=_socket_dir(base), port=settings.db_port, dbname=settings.db_name,
                   app_role=settings.app_role, run_as=run_as)


def _socket_dir(base: Path) -> Path:
    """``base``/run, or a short one in /tmp where that path is too long for a socket."""
    socket_dir = base / "run"
    if len(str(socket_dir)) > _MAX_SOCKET_DIR:
        digest = hashlib.sha1(str(base).encode()).hexdigest()[:12]  # noqa: S324 (a name, not security)
        socket_dir = Path("/tmp") / f"twin-{digest}"  # noqa: S108 (a private, owned socket dir)
    return socket_dir
