"""The PostgreSQL engine through the public API, against the session's real server.

What the contract suite (tests/contract) cannot say of every engine: URLs
and names, passwords kept out of every message, clear errors for a server
that cannot be reached or refuses the login, tables made on first use and
versioned, several processes writing one store, a server restart mid-run,
and a sync that fails keeping its changes pending.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

import tastypy
from tastypy import ConnectionFailedError, NotAStoreError, SettingsError
from tastypy.storage.postgres import PostgresStorage

from _postgres import PASSWORD, Server
from _subproc import Child, run


@pytest.fixture
def url(pg_server: Server) -> str:
    return pg_server.url()


# -- addressing a store ---------------------------------------------------------------


def test_a_pod_on_a_url_keeps_order_values_and_nested_key_order(url: str, pg_name: str) -> None:
    with tastypy.POD(url, name=pg_name) as pod:
        pod["b"] = {"z": 1, "a": [1, {"y": None, "x": 2.5}]}
        pod["a"] = "first"
        pod["c"] = 3
        del pod["a"]
        pod["a"] = "again"
        pod["b"]["z"] = 2  # nested mutation, caught at the next sync
        assert pod.shared and pod.path is None
    with tastypy.POD(url.replace("postgresql://", "postgres://"), name=pg_name) as again:
        items = list(again.items())
    assert items == [("b", {"z": 2, "a": [1, {"y": None, "x": 2.5}]}), ("c", 3), ("a", "again")]
    assert repr(items[0][1]) == "{'z': 2, 'a': [1, {'y': None, 'x': 2.5}]}"


def test_the_same_url_and_name_open_twice_in_a_process_is_one_object(
    url: str, pg_name: str
) -> None:
    first = tastypy.POD(url, name=pg_name)
    second = tastypy.POD(url, name=pg_name)
    other = tastypy.POD(url, name=pg_name + "-other")
    assert first is second and other is not first
    second.close()
    assert not first.closed
    first.close()
    other.close()


def test_a_read_only_open_sees_the_syncs_and_refuses_changes(url: str, pg_name: str) -> None:
    with pytest.raises(NotAStoreError, match="no such store"):
        tastypy.POD(url, name=pg_name, readonly=True)
    writer = tastypy.POD(url, name=pg_name)
    writer["a"] = 1
    writer.sync()
    reader = tastypy.POD(url, name=pg_name, readonly=True)
    assert dict(reader) == {"a": 1}
    with pytest.raises(tastypy.ReadOnlyError):
        reader["b"] = 2
    writer["b"] = 2
    writer.close()
    reader.refresh()
    assert dict(reader) == {"a": 1, "b": 2}
    reader.close()


@pytest.mark.parametrize(
    "key", ["nul\x00inside", "\ufffestarts with the mark", "\ufffe", "", "ключ", "a\\b"]
)
def test_any_key_a_dict_can_hold_round_trips(url: str, pg_name: str, key: str) -> None:
    with tastypy.POD(url, name=pg_name) as pod:
        pod[key] = key
        pod["plain"] = 1
    with tastypy.POD(url, name=pg_name, readonly=True) as again:
        assert list(again.items()) == [(key, key), ("plain", 1)]


@pytest.mark.parametrize(
    "name", ["", "Upper", "has space", "semi;colon", "quote'd", "-dash-first", "x" * 64, "é"]
)
def test_a_name_that_is_not_allowed_is_refused_before_connecting(name: str) -> None:
    # The server does not exist: the name is refused first.
    with pytest.raises(SettingsError, match="cannot name a store"):
        tastypy.POD("postgresql://nobody@127.0.0.1:1/db", name=name)


def test_a_url_needs_a_name_and_a_path_has_none(tmp_path: object) -> None:
    with pytest.raises(SettingsError, match=r"give the store's name"):
        tastypy.POD("postgresql://nobody@127.0.0.1:1/db")
    with pytest.raises(TypeError, match="must be a str"):
        tastypy.POD("postgresql://nobody@127.0.0.1:1/db", name=3)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="name= names a store within a database"):
        tastypy.POD(f"{tmp_path}/store", name="x")
    with pytest.raises(SettingsError, match="no setting file_size"):
        tastypy.POD("postgresql://nobody@127.0.0.1:1/db", name="x", file_size=3)


# -- passwords and errors -------------------------------------------------------------


def test_the_password_never_shows(
    url: str, pg_name: str, pg_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    assert PASSWORD in url
    with caplog.at_level(logging.DEBUG):
        pod = tastypy.POD(url, name=pg_name)
        pod["a"] = 1
        shown = [repr(pod), str(pod), repr(pod.storage), pod.storage.location]
        shown += [str(value) for value in pod.storage.describe().values()]
        pod.close()
        for bad in (
            url.replace(PASSWORD, "wrong-" + PASSWORD),
            f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/postgres",
        ):
            with pytest.raises(ConnectionFailedError) as raised:
                tastypy.POD(bad, name=pg_name)
            shown.append(str(raised.value))
        query = f"{pg_server.url(password=None)}?password={PASSWORD}x"
        with pytest.raises(ConnectionFailedError) as raised:
            tastypy.POD(query, name=pg_name)
        shown.append(str(raised.value))
    shown += [record.getMessage() for record in caplog.records]
    assert all(PASSWORD not in text for text in shown), [t for t in shown if PASSWORD in t]
    assert f"127.0.0.1:{pg_server.port}/postgres#{pg_name}" in shown[0]


def test_bad_credentials_say_so_naming_the_server_and_store(url: str, pg_name: str) -> None:
    bad = url.replace(PASSWORD, "not-the-password")
    with pytest.raises(ConnectionFailedError, match="refused the login") as raised:
        tastypy.POD(bad, name=pg_name)
    assert f"@127.0.0.1:{bad.rsplit(':', 1)[1].split('/')[0]}/postgres#{pg_name}" in str(
        raised.value
    )
    assert isinstance(raised.value, ConnectionError)


def test_an_unreachable_server_says_so_at_once() -> None:
    with pytest.raises(ConnectionFailedError, match="cannot connect") as raised:
        tastypy.POD("postgresql://me:pw@127.0.0.1:1/db", name="results")
    assert "127.0.0.1:1/db#results" in str(raised.value)
    assert ":pw@" not in str(raised.value)


def test_a_missing_driver_says_what_to_install() -> None:
    code = """
        import sys
        sys.modules["psycopg"] = None  # as if psycopg were not installed
        import tastypy
        try:
            tastypy.POD("postgresql://me:secret@127.0.0.1:1/db", name="results")
        except ImportError as exc:
            print(exc)
    """
    done = run(code)
    assert done.returncode == 0, done.stderr
    assert "pip install 'tastypy[postgres]'" in done.stdout
    assert "secret" not in done.stdout and "#results" in done.stdout


def test_a_store_of_the_wrong_kind_is_refused_naming_it(url: str, pg_name: str) -> None:
    with tastypy.POD(url, name=pg_name) as pod:
        pod["a"] = {"x": 1}
    with pytest.raises(SettingsError, match=f"#{pg_name} holds a plain POD, not a tracker"):
        tastypy.Tracker(url, name=pg_name, readonly=True)


def test_the_tables_carry_a_version_and_a_newer_one_is_refused(
    pg_server: Server, pg_name: str
) -> None:
    database = pg_name.replace("-", "_")
    pg_server.psql(f"CREATE DATABASE {database}")
    url = pg_server.url(database)
    tastypy.POD(url, name="first").close()  # makes the tables
    assert pg_server.psql("SELECT version FROM tastypy.format", database).strip() == "4"
    pg_server.psql("UPDATE tastypy.format SET version = 99", database)
    with pytest.raises(SettingsError, match=r"layout version 99.*upgrade tastypy"):
        tastypy.POD(url, name="first")
    pg_server.psql("DROP SCHEMA tastypy CASCADE; CREATE SCHEMA tastypy; "
                   "CREATE TABLE tastypy.other (x int)", database)  # fmt: skip
    with pytest.raises(NotAStoreError, match="not tastypy's"):
        tastypy.POD(url, name="first")


def test_many_processes_making_the_tables_at_once_all_succeed(
    pg_server: Server, pg_name: str
) -> None:
    database = pg_name.replace("-", "_")
    pg_server.psql(f"CREATE DATABASE {database}")
    code = """
        import sys, tastypy
        sys.stdin.readline()
        with tastypy.POD(sys.argv[1], name=sys.argv[2]) as pod:
            pod["k"] = sys.argv[2]
        print("done", flush=True)
    """
    children = [Child(code, pg_server.url(database), f"s{i}") for i in range(6)]
    for child in children:
        child.send()
    for child in children:
        assert child.finish() == 0, child.stderr
    names = pg_server.psql("SELECT name FROM tastypy.stores ORDER BY name", database)
    assert names.split() == [f"s{i}" for i in range(6)]


# -- many writers -----------------------------------------------------------------------


def test_writers_in_many_processes_lose_no_increment_under_locked(url: str, pg_name: str) -> None:
    code = """
        import sys, tastypy
        pod = tastypy.POD(sys.argv[1], name=sys.argv[2])
        for _ in range(40):
            with pod.locked():
                pod["n"] = pod.get("n", 0) + 1
                pod[f"w{sys.argv[3]}"] = pod.get(f"w{sys.argv[3]}", 0) + 1
        pod.close()
    """
    procs = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), url, pg_name, str(i)])
        for i in range(4)
    ]
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0, 0, 0]
    with tastypy.POD(url, name=pg_name, readonly=True) as pod:
        assert pod["n"] == 160
        assert sorted(pod) == ["n", "w0", "w1", "w2", "w3"]
        assert all(pod[f"w{i}"] == 40 for i in range(4))


def test_a_server_restart_mid_run_costs_nothing_committed(pg_server: Server, pg_name: str) -> None:
    url = pg_server.url()
    code = """
        import sys, tastypy
        pod = tastypy.POD(sys.argv[1], name=sys.argv[2], sync_at=1)
        for i in range(300):
            pod[f"k{i}"] = i
            if i == 100:
                print("halfway", flush=True)
                sys.stdin.readline()
        pod.close()
        print("done", flush=True)
    """
    with Child(code, url, pg_name) as child:
        child.expect("halfway")
        pg_server.restart()  # the child's connection drops; it makes a new one
        child.send()
        child.expect("done", timeout=90)
        assert child.finish() == 0, child.stderr
    with tastypy.POD(url, name=pg_name, readonly=True) as pod:
        assert list(pod.items()) == [(f"k{i}", i) for i in range(300)]


def test_a_sync_that_fails_changes_nothing_and_keeps_its_changes_pending(
    pg_server: Server, url: str, pg_name: str
) -> None:
    pod = tastypy.POD(url, name=pg_name)
    pod["a"] = 1
    pod.sync()
    pod["b"] = 2
    pod["a"] = 10
    pg_server.stop()
    try:
        storage = pod.storage
        assert isinstance(storage, PostgresStorage)
        storage._link.reconnect_for = 0.5
        with pytest.raises(ConnectionFailedError, match="could not make it again"):
            pod.sync()
        # Pending, in memory (listing the store would need the server: it serves it).
        assert pod.dirty() == {"a", "b"}
        assert (pod["a"], pod["b"]) == (10, 2)
    finally:
        pg_server.start()
    with tastypy.POD(url, name=pg_name, readonly=True) as reader:
        assert dict(reader) == {"a": 1}
    pod.sync()  # the server is back: the changes still pending go now
    with tastypy.POD(url, name=pg_name, readonly=True) as reader:
        assert list(reader.items()) == [("a", 10), ("b", 2)]
    pod.close()


def test_a_pod_copies_to_postgresql_and_back_with_order_and_values(
    tmp_path: object, url: str, pg_name: str
) -> None:
    values = [("z", {"b": 1, "a": [2, {"d": 3, "c": None}]}), ("a", 1.5), ("m", "x\x00y")]
    pod = tastypy.POD(f"{tmp_path}/source")
    pod.update(values)
    pod.copy(url, name=pg_name)
    assert pod.path is None and pod.shared
    pod["n"] = True
    pod.copy(f"{tmp_path}/back")
    pod.close()
    with tastypy.POD(url, name=pg_name, readonly=True) as there:
        assert list(there.items()) == values
    with tastypy.POD(f"{tmp_path}/back", readonly=True) as back:
        assert list(back.items()) == [*values, ("n", True)]
        assert repr(list(back.items())) == repr([*values, ("n", True)])
    with pytest.raises(FileExistsError, match="exists already"):
        tastypy.POD(f"{tmp_path}/back").copy(url, name=pg_name)


# -- from the adversarial review ------------------------------------------------------


@pytest.mark.parametrize("password", ["5432?Zq9secret", "5432#Zq9secret", "Zq9s?c:ret/x"])
def test_a_password_with_url_characters_never_shows(
    pg_server: Server, pg_name: str, password: str
) -> None:
    """libpq reads the credentials up to the first @ before any /: so must redaction."""
    role = "r" + pg_name.replace("-", "_")
    pg_server.psql(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
    quoted = password.replace("/", "%2F")  # a / must be encoded, or libpq ends the host there
    url = f"postgresql://{role}:{quoted}@127.0.0.1:{pg_server.port}/postgres"
    with tastypy.POD(url, name=pg_name) as pod:
        pod["a"] = 1
        shown = [repr(pod), repr(pod.storage), repr(pod.storage._target), pod.storage.location]
        shown += [str(value) for value in pod.storage.describe().values()]
    with tastypy.POD(f"{url}#{pg_name}", readonly=True) as again:
        assert dict(again) == {"a": 1}
    for bad in (url.replace(quoted, quoted + "x"), url + "#Not-Allowed"):
        with pytest.raises((ConnectionFailedError, SettingsError)) as raised:
            tastypy.POD(bad, name=None if "#" in bad.split("@")[1] else pg_name)
        shown.append(str(raised.value))
        context = raised.value.__context__
        shown.append(str(context) if context is not None else "")
    for secret in {password, quoted}:
        assert all(secret not in text for text in shown), [t for t in shown if secret in t]


def _drop_connections(server: Server) -> None:
    """End every tastypy connection to the server, as a restart or a network cut would."""
    server.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tastypy'"
    )


def test_locked_after_a_dropped_connection_connects_again(
    pg_server: Server, url: str, pg_name: str
) -> None:
    with tastypy.POD(url, name=pg_name) as pod:
        pod["n"] = 1
        pod.sync()
        _drop_connections(pg_server)
        with pod.locked():
            pod["n"] += 1
    with tastypy.POD(url, name=pg_name, readonly=True) as reader:
        assert reader["n"] == 2


def test_a_locked_block_whose_lock_was_lost_commits_nothing_then_or_later(
    pg_server: Server, url: str, pg_name: str
) -> None:
    with tastypy.POD(url, name=pg_name) as pod:
        pod["n"] = 0
        pod.sync()
        with pytest.raises(ConnectionFailedError, match="committed nothing"), pod.locked():
            seen = pod["n"]
            _drop_connections(pg_server)
            # Another writer (its own open: POD(url) here would be this very POD),
            # not held off, since the lock went with the connection.
            with tastypy.POD(storage=PostgresStorage(url, pg_name)) as other:
                other["n"] = other["n"] + 10
            pod["n"] = seen + 1
        pod.sync()  # the block's change must not come back here, nor at close
    with tastypy.POD(url, name=pg_name, readonly=True) as reader:
        assert reader["n"] == 10
