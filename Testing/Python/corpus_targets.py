"""Run-level cases: never write into a source, the write rule for --out, sort writes, full disks."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any, Callable

import corpus
from corpus_run import (DISK, SORT, SOURCE, TARGET, RunCase, _enospc, _is_kind, classify, db_of_good, good,
                        make_db, outdir, store_with_good)


# ----------------------------------------------------------------------------
# 1. never write into a source (whatever named it)
# ----------------------------------------------------------------------------

def src_out_db_listed_file(root: Path) -> RunCase:
    g, db = db_of_good(root)
    target = sorted(g.iterdir())[0]
    return RunCase("--out is a DICOM file the database lists", SOURCE,
                   classify("--slicer-db", db, out=target), [g, db.parent], (1,),
                   rf"--out {target}.*is a file listed by the Slicer DICOM database", good=False)


def src_out_db_relative_file(root: Path) -> RunCase:
    dbdir = root / "db"
    inside = dbdir / "dicom" / "1.2" / "series"
    corpus.copy_good(inside)
    names = [f"dicom/1.2/series/{p.name}" for p in sorted(inside.iterdir())]
    db = make_db(dbdir, names)
    target = sorted(inside.iterdir())[1]
    return RunCase("--out is a file the database holds (relative name)", SOURCE,
                   classify("--slicer-db", db, out=target), [dbdir], (1,),
                   r"--out .*(file listed by|inside) the Slicer DICOM database", good=False)


def src_out_db_file(root: Path) -> RunCase:
    g, db = db_of_good(root)
    return RunCase("--out is the database file", SOURCE, classify("--slicer-db", db, out=db), [g, db.parent], (1,),
                   r"--out .*ctkDICOM\.sql is the Slicer DICOM database", good=False)


def src_out_db_folder(root: Path) -> RunCase:
    g, db = db_of_good(root)
    return RunCase("--out new file in the database folder", SOURCE,
                   classify("--slicer-db", db, out=db.parent / "r.json"), [g, db.parent], (1,),
                   r"inside the Slicer DICOM database folder", good=False)


def src_out_db_listed_folder(root: Path) -> RunCase:
    g, db = db_of_good(root)
    return RunCase("--out new file in a folder the database lists", SOURCE,
                   classify("--slicer-db", db, out=g / "r.json"), [g, db.parent], (1,),
                   r"inside the folder .* of files listed by the Slicer DICOM database", good=False)


def src_out_link_to_db_listed(root: Path) -> RunCase:
    g, db = db_of_good(root)
    link = outdir(root) / "latest.json"
    os.symlink(sorted(g.iterdir())[0], link)
    return RunCase("--out is a symlink to a file the database lists", SOURCE,
                   classify("--slicer-db", db, out=link), [g, db.parent], (1,),
                   r"resolves to .* is a file listed by", good=False)


def src_out_through_linked_folder(root: Path) -> RunCase:
    g = good(root)
    link = outdir(root) / "g"
    os.symlink(g, link)
    return RunCase("--out through a symlinked folder into the input", SOURCE,
                   classify(g, out=link / "r.json"), [g], (1,), r"inside the input folder", good=False)


def src_out_positional_file(root: Path) -> RunCase:
    g = good(root)
    f = sorted(g.iterdir())[0]
    return RunCase("--out is the input file itself", SOURCE, classify(f, out=f), [g], (1,),
                   r"is the input file", good=False)


def src_out_dotdot(root: Path) -> RunCase:
    g = good(root)
    (root / "o").mkdir()
    return RunCase("--out with .. into the input folder", SOURCE,
                   classify(g, out=root / "o" / ".." / "good" / "r.json"), [g], (1,),
                   r"inside the input folder", good=False)


def src_out_hardlink(root: Path) -> RunCase:
    """A hard link to a source file: the atomic rename replaces the link's name, never the source's bytes."""
    g = good(root)
    out = outdir(root) / "r.json"
    os.link(sorted(g.iterdir())[0], out)
    return RunCase("--out is a hard link of a source file", SOURCE, classify(g, out=out), [g], (0,), out=out)


def _cache_case(kind: str, root: Path, argv_fn: Callable[[Path, Path, Path], list[str]], err: str) -> RunCase:
    g, db = db_of_good(root)
    out = outdir(root) / "r.json"
    return RunCase(kind, SOURCE, argv_fn(g, db, out), [g, db.parent], (0,),
                   rf"warning: header cache not saved: --cache .*{err}", out=out)


def src_cache_db_listed(root: Path) -> RunCase:
    return _cache_case("--cache in a folder the database lists", root,
                       lambda g, db, out: classify("--slicer-db", db, "--cache", g / "h.json", out=out),
                       "inside the folder")


def src_cache_db_file(root: Path) -> RunCase:
    return _cache_case("--cache is the database file", root,
                       lambda g, db, out: classify("--slicer-db", db, "--cache", db, out=out),
                       "is the Slicer DICOM database")


def src_cache_positional(root: Path) -> RunCase:
    return _cache_case("--cache inside the input folder", root,
                       lambda g, db, out: classify(g, "--cache", g / "h.json", out=out), "inside the input folder")


def src_cache_link_to_source(root: Path) -> RunCase:
    def argv(g: Path, db: Path, out: Path) -> list[str]:
        link = root / "o" / "h.json"
        os.symlink(sorted(g.iterdir())[0], link)
        return classify(g, "--cache", link, out=out)
    return _cache_case("--cache is a symlink to a source file", root, argv, "resolves to")


def _sort_case(kind: str, root: Path, dest_fn: Callable[[Path, Path], Path], err: str,
               with_db: bool = True) -> RunCase:
    g, db = db_of_good(root)
    empty = root / "empty"
    empty.mkdir()
    store = store_with_good(root / "store" / "labels.json")
    dest = dest_fn(g, db)
    argv = ["sort", str(empty if with_db else g), str(dest), "--labels", "--store", str(store)]
    argv += ["--slicer-db", str(db)] if with_db else []
    return RunCase(kind, SOURCE, argv, [g, db.parent, empty], (1,), err, good=False)


def src_sort_dest_db_listed(root: Path) -> RunCase:
    return _sort_case("sort DEST in a folder the database lists", root, lambda g, db: g / "sorted",
                      r"destination .* is inside the")


def src_sort_dest_db_folder(root: Path) -> RunCase:
    return _sort_case("sort DEST in the database folder", root, lambda g, db: db.parent / "sorted",
                      r"destination .* is inside the")


def src_sort_dest_contains_db_listed(root: Path) -> RunCase:
    return _sort_case("sort DEST contains a folder the database lists", root, lambda g, db: root,
                      r"destination .* contains the")


def src_sort_link_inside_dest(root: Path) -> RunCase:
    def dest(g: Path, db: Path) -> Path:
        d = root / "sorted"
        d.mkdir()
        os.symlink(g, d / "ProstateX-0000")  # the patient folder sort would create, pointing into the source
        return d
    return _sort_case("sort DEST/<patient> is a symlink into the source", root, dest,
                      r"series folder .* is inside the", with_db=False)


def src_store_in_source(root: Path) -> RunCase:
    g = good(root)
    return RunCase("label store inside the input folder", SOURCE,
                   ["sort", str(g), str(root / "sorted"), "--labels", "--store", str(g / "labels.json")],
                   [g], (1,), r"label store .* inside the input folder", good=False)


def src_store_is_db(root: Path) -> RunCase:
    g, db = db_of_good(root)
    return RunCase("label store is the database file", SOURCE,
                   ["sort", str(g), str(root / "sorted"), "--labels", "--store", str(db), "--slicer-db", str(db)],
                   [g, db.parent], (1,), r"label store .*(is the Slicer DICOM database|inside)", good=False)


# ----------------------------------------------------------------------------
# 2. one write rule for what --out names
# ----------------------------------------------------------------------------

def tgt_dev_null(root: Path) -> RunCase:
    g = good(root)
    return RunCase("--out /dev/null", TARGET, classify(g, out=Path("/dev/null")), [g], (0,), good=False,
                   check=_is_kind(Path("/dev/null"), stat.S_ISCHR))


def tgt_dev_full(root: Path) -> RunCase:
    g = good(root)
    return RunCase("--out /dev/full (a device that is always full)", TARGET, classify(g, out=Path("/dev/full")),
                   [g], (1,), r"cannot write --out /dev/full: No space left on device", good=False,
                   check=_is_kind(Path("/dev/full"), stat.S_ISCHR))


def tgt_fifo_reader(root: Path) -> RunCase:
    import select
    import threading

    g = good(root)
    fifo = outdir(root) / "pipe"
    os.mkfifo(fifo)
    got: dict = {}

    def setup(_mp: Any) -> Callable[[], None]:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there before the writer comes

        def read() -> None:
            data = b""
            while True:
                ready, _, _ = select.select([fd], [], [], 30)
                if not ready:
                    break
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                data += chunk
            got["data"] = data
        t = threading.Thread(target=read, daemon=True)
        t.start()
        got["thread"] = t
        return lambda: os.close(fd)

    def check(result: dict) -> None:
        got["thread"].join(30)
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
        import json
        doc = json.loads(got.get("data", b"").decode("utf-8"))
        assert [r["n_files"] for r in doc["series"]] == [5], doc

    return RunCase("--out a FIFO with a reader", TARGET, classify(g, out=fifo), [g], (0,), check=check,
                   setup=setup, good=False)


def tgt_fifo_no_reader(root: Path) -> RunCase:
    g = good(root)
    fifo = outdir(root) / "pipe"
    os.mkfifo(fifo)
    return RunCase("--out a FIFO nobody reads", TARGET, classify(g, out=fifo), [g], (1,),
                   r"--out .*pipe: a named pipe \(FIFO\) that nobody reads", good=False,
                   check=_is_kind(fifo, stat.S_ISFIFO))


def tgt_link_to_regular(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)
    (o / "runs").mkdir()
    (o / "runs" / "7.json").write_text("old")
    os.symlink("runs/7.json", o / "latest.json")

    def check(result: dict) -> None:
        assert os.path.islink(o / "latest.json") and os.readlink(o / "latest.json") == "runs/7.json"
        assert (o / "runs" / "7.json").read_text().startswith("{")
    return RunCase("--out a symlink to a regular file", TARGET, classify(g, out=o / "latest.json"), [g], (0,),
                   out=o / "runs" / "7.json", check=check)


def tgt_dangling_link(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)
    os.symlink(root / "nowhere" / "x.json", o / "dangling.json")
    return RunCase("--out a dangling symlink", TARGET, classify(g, out=o / "dangling.json"), [g], (1,),
                   r"--out .*dangling\.json: a symbolic link to a missing file", good=False,
                   check=_is_kind(o / "dangling.json", stat.S_ISLNK))


def tgt_folder(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)
    return RunCase("--out an existing folder", TARGET, classify(g, out=o), [g], (1,),
                   r"--out .*/o: it is a folder, not a file", good=False, check=_is_kind(o, stat.S_ISDIR))


def tgt_socket(root: Path) -> RunCase:
    g = good(root)
    path = outdir(root) / "s.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    return RunCase("--out a socket", TARGET, classify(g, out=path), [g], (1,), r"it is a socket, not a file",
                   good=False, check=_is_kind(path, stat.S_ISSOCK))


def tgt_parent_missing(root: Path) -> RunCase:
    g = good(root)
    return RunCase("--out in a folder that does not exist", TARGET, classify(g, out=root / "nope" / "r.json"),
                   [g], (1,), r"--out folder does not exist", good=False)


def tgt_parent_is_file(root: Path) -> RunCase:
    g = good(root)
    f = outdir(root) / "file.txt"
    f.write_text("x")
    return RunCase("--out under a file (file.txt/r.json)", TARGET, classify(g, out=f / "r.json"), [g], (1,),
                   r"--out .*file\.txt/r\.json: Not a directory", good=False)


def tgt_link_to_dev_null(root: Path) -> RunCase:
    g = good(root)
    link = outdir(root) / "null.json"
    os.symlink("/dev/null", link)
    return RunCase("--out a symlink to /dev/null", TARGET, classify(g, out=link), [g], (0,), good=False,
                   check=_is_kind(link, stat.S_ISLNK))


def tgt_link_chain(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)
    (o / "c.json").write_text("old")
    os.symlink("c.json", o / "b.json")
    os.symlink("b.json", o / "a.json")

    def check(result: dict) -> None:
        assert os.path.islink(o / "a.json") and os.path.islink(o / "b.json")
    return RunCase("--out a chain of symlinks", TARGET, classify(g, out=o / "a.json"), [g], (0,),
                   out=o / "c.json", check=check)


def tgt_existing_regular(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)
    (o / "r.json").write_text("old")

    def check(result: dict) -> None:
        assert sorted(p.name for p in o.iterdir()) == ["r.json"], list(o.iterdir())  # no temp file left
    return RunCase("--out an existing regular file", TARGET, classify(g, out=o / "r.json"), [g], (0,),
                   out=o / "r.json", check=check)


# ----------------------------------------------------------------------------
# 7. sort writes, 8. full disk
# ----------------------------------------------------------------------------

def sort_onto_file(root: Path) -> RunCase:
    g = good(root)
    store = store_with_good(root / "store" / "labels.json")
    dest = root / "dest.txt"
    dest.write_text("a file")
    return RunCase("sort onto a file", SORT, ["sort", str(g), str(dest), "--labels", "--store", str(store)],
                   [g, dest], (1,), r"destination .*dest\.txt: .*dest\.txt is a file, not a folder", good=False)


def sort_under_file(root: Path) -> RunCase:
    g = good(root)
    store = store_with_good(root / "store" / "labels.json")
    f = root / "f.txt"
    f.write_text("a file")
    return RunCase("sort into a folder under a file", SORT,
                   ["sort", str(g), str(f / "sub"), "--labels", "--store", str(store)],
                   [g, f], (1,), r"f\.txt is a file, not a folder", good=False)


def sort_full_disk(root: Path) -> RunCase:
    g = good(root)
    store = store_with_good(root / "store" / "labels.json")
    dest = root / "sorted"

    def setup(mp: Any) -> None:
        mp.setattr("SeqClassifierLib.curation.sorting.os.fsync", _enospc)

    def check(result: dict) -> None:
        left = [p for p in dest.rglob("*") if p.is_file()]
        assert left == [], f"files left after a failed copy: {left}"
    return RunCase("sort on a full disk (fsync ENOSPC)", SORT,
                   ["sort", str(g), str(dest), "--labels", "--store", str(store)], [g], (1,),
                   r"error: cannot copy .* No space left on device \(0 files copied so far; no partial file left\)",
                   good=False, setup=setup, check=check)


def sort_rerun_after_kill(root: Path) -> RunCase:
    """A killed run left a stale temporary copy: the rerun removes it and copies every file."""
    import time

    g = good(root)
    store = store_with_good(root / "store" / "labels.json")
    dest = root / "sorted"
    from SeqClassifierLib.curation.sorting import TEMP_SUFFIX

    state: dict = {}

    def setup(mp: Any) -> None:
        # where the series will go: found by a dry run of the same command
        from SeqClassifierLib.app import cli
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
            cli.main(["sort", str(g), str(dest), "--labels", "--store", str(store), "--dry-run"])
        folder = dest / out.getvalue().split("-> ")[1].strip()
        folder.mkdir(parents=True)
        stale = folder / f".{sorted(g.iterdir())[0].name}.abc{TEMP_SUFFIX}"
        stale.write_bytes(b"half a file")
        old = time.time() - 3600
        os.utime(stale, (old, old))
        state["stale"] = stale

    def check(result: dict) -> None:
        assert not state["stale"].exists()
        copies = sorted(p for p in dest.rglob("*") if p.is_file())
        assert [p.read_bytes() for p in copies] == [f.read_bytes() for f in sorted(g.iterdir())]
    return RunCase("sort rerun after a killed run (stale temporary copy)", SORT,
                   ["sort", str(g), str(dest), "--labels", "--store", str(store)], [g], (0,),
                   good=False, setup=setup, check=check)


def disk_out_fsync(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)
    (o / "r.json").write_text("previous result")

    def setup(mp: Any) -> None:
        mp.setattr("SeqClassifierLib.atomic.os.fsync", _enospc)

    def check(result: dict) -> None:
        assert (o / "r.json").read_text() == "previous result"
        assert sorted(p.name for p in o.iterdir()) == ["r.json"]
    return RunCase("--out on a full disk (fsync ENOSPC): the previous file stays", DISK,
                   classify(g, out=o / "r.json"), [g], (1,),
                   r"error: cannot write --out .*r\.json: No space left on device", good=False, setup=setup,
                   check=check)


def disk_out_write(root: Path) -> RunCase:
    g = good(root)
    o = outdir(root)

    def setup(mp: Any) -> None:
        real_open = open

        class Full:
            def __init__(self, fh: Any) -> None:
                self.fh = fh

            def __enter__(self) -> "Full":
                return self

            def __exit__(self, *a: Any) -> None:
                self.fh.close()

            def write(self, data: bytes) -> None:
                _enospc()

            def flush(self) -> None:
                pass

        def fake_open(path: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
            fh = real_open(path, mode, *a, **k)
            return Full(fh) if mode == "wb" and os.path.basename(str(path)).startswith(".r.json.") else fh
        mp.setattr("builtins.open", fake_open)

    def check(result: dict) -> None:
        assert list(o.iterdir()) == []
    return RunCase("--out on a full disk (write ENOSPC): nothing left", DISK, classify(g, out=o / "r.json"), [g],
                   (1,), r"cannot write --out .*No space left on device", good=False, setup=setup, check=check)


def disk_out_tmpfs(root: Path) -> RunCase:
    """A really full file system: a 64 KB tmpfs filled up (needs root and mount; else the case is skipped)."""
    import subprocess

    g = good(root)
    tiny = root / "tiny"
    tiny.mkdir()
    state: dict = {}

    def setup(mp: Any) -> Callable[[], None]:
        import pytest

        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)], capture_output=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode(errors='replace').strip()}")
        fd = os.open(tiny / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"x" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        state["mounted"] = True
        return lambda: subprocess.run(["umount", str(tiny)], check=True)

    def check(result: dict) -> None:
        assert sorted(p.name for p in tiny.iterdir()) == ["filler"]
    return RunCase("--out on a full tmpfs", DISK, classify(g, out=tiny / "r.json"), [g], (1,),
                   r"cannot write --out .*r\.json: No space left on device", good=False, setup=setup, check=check)
