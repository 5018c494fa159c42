"""A run waiting on a build lock a killed run left behind (torch's FileBaton, as DeepSpeed's and SAT's op builds
take it) says so in one line naming the file, once, after NOTICE_AFTER_S; a run that does not wait prints nothing.
Both entry points run under the watch."""

import threading
import time

import pytest
from torch.utils.file_baton import FileBaton

import op_build_watch
import sample_video
import train_video
from op_build_watch import notice


@pytest.fixture
def quick_watch(monkeypatch):
    monkeypatch.setattr(op_build_watch, "NOTICE_AFTER_S", 0.3)
    monkeypatch.setattr(op_build_watch, "POLL_S", 0.02)


def wait_on_stale_lock(lock, capsys) -> list[str]:
    """Wait on `lock` in this thread, as a process does while another builds; the lock is removed once the notice
    is out (or after 10 s), as a user deleting it. Returns the lines printed on stderr meanwhile."""
    lock.write_text("")
    printed = []

    def delete_after_notice() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not printed:
            printed.extend(capsys.readouterr().err.splitlines())
            time.sleep(0.05)
        lock.unlink()

    remover = threading.Thread(target=delete_after_notice)
    remover.start()
    FileBaton(str(lock)).wait()
    remover.join()
    return printed


def test_a_stale_lock_is_named_once(tmp_path, capsys, quick_watch):
    lock = tmp_path / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir()
    with op_build_watch.op_build_watch():
        FileBaton(str(lock)).wait()  # no lock: no wait
        time.sleep(0.5)
        assert capsys.readouterr().err == ""
        lock.write_text("")
        stop = threading.Timer(1.0, lock.unlink)
        stop.start()
        FileBaton(str(lock)).wait()
        stop.join()
        time.sleep(0.1)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("waiting ") and line.endswith(notice(str(lock), 0).split(" s ", 1)[1])


@pytest.mark.parametrize("entry, run", [(train_video, "train"), (sample_video, "sample")])
def test_entry_points_name_the_lock_they_wait_on(entry, run, tmp_path, capsys, monkeypatch, quick_watch):
    printed = []

    def waiting_run(*args):
        printed.extend(wait_on_stale_lock(tmp_path / "lock", capsys))
        raise KeyboardInterrupt  # then stop: what the run does next is not this test's

    monkeypatch.setattr(entry, run, waiting_run)
    with pytest.raises(SystemExit):
        entry.main([])
    (line,) = printed
    assert line.startswith("waiting ") and f"s for {tmp_path / 'lock'}: another process is building" in line
