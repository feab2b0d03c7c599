"""gunicorn's hooks keep Prometheus' multiprocess folder right (usage_portal.gunicorn_hooks).

Before, the folder was never emptied: a restarted server added the last run's counts again, and
every worker replaced by --max-requests left its live gauges counting.
"""

from __future__ import annotations

from types import SimpleNamespace

from usage_portal import gunicorn_hooks


def server_with(folder) -> SimpleNamespace:
    return SimpleNamespace(cfg=SimpleNamespace(env={"PROMETHEUS_MULTIPROC_DIR": str(folder)}))


def test_a_server_starts_with_an_empty_folder(tmp_path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"old run")
    (folder / "README").write_text("not prometheus'")
    gunicorn_hooks.on_starting(server_with(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["README"]


def test_a_missing_folder_is_created(tmp_path):
    folder = tmp_path / "var" / "prometheus"
    gunicorn_hooks.on_starting(server_with(folder))
    assert folder.is_dir()


def test_an_exited_worker_stops_counting_in_live_gauges_but_keeps_its_counters(tmp_path):
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"x")
    (tmp_path / "counter_4242.db").write_bytes(b"x")
    gunicorn_hooks.child_exit(server_with(tmp_path), SimpleNamespace(pid=4242))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db"]


def test_without_the_folder_setting_the_hooks_do_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    server = SimpleNamespace(cfg=SimpleNamespace(env={}))
    gunicorn_hooks.on_starting(server)
    gunicorn_hooks.child_exit(server, SimpleNamespace(pid=1))
    assert list(tmp_path.iterdir()) == []
