"""``make clean-cache`` (``python -m igds.store.clean``): delete the workspace's store and what hangs off it, and
nothing outside the workspace.

The workspace is ``IGDS_HOME`` (default ``cache/``, :func:`igds.settings.home`). Removed, where they lie under it:
the store file (``IGDS_STORE`` or ``<home>/igds.duckdb``) with its WAL and any unfinished compaction copy, its
activation shards (the folder the store recorded, ``shards/`` next to it by default) and ``runs/``. Kept: the
converted model (``models/``), trained SAEs (``saes/``), exports, job folders and migration backups
(``*.bak``): they are not rebuilt by a rerun, or are the user's. A store or a shard folder outside the
workspace, or in object storage, is never touched and is named as kept.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb

from igds import settings
from igds.constants import RUNS_DIR, STORE_FILENAME
from igds.store import shards as sh
from igds.store.errors import StoreError


@dataclass(frozen=True)
class Removed:
    """One top-level thing removed (or, in a dry run, to remove): a file or a folder with its files."""

    path: Path
    folder: bool
    files: tuple[Path, ...]
    n_bytes: int


@dataclass(frozen=True)
class CacheCleanup:
    """What :func:`clean_cache` removed (would remove, with ``dry_run``) under ``home``, and what it left."""

    home: Path
    removed: tuple[Removed, ...]
    kept: tuple[str, ...]  # things the store uses outside the workspace, with the reason they stay
    dry_run: bool

    def lines(self, every_file: bool = False) -> list[str]:
        """The report in words: one line per removed path (``every_file``: then each of its files)."""
        verb = "would remove" if self.dry_run else "removed"
        out = [f"{verb} under {self.home}:" if self.removed else f"nothing to remove under {self.home}"]
        for r in self.removed:
            what = f"{len(r.files):,} files, " if r.folder else ""
            out.append(f"  {r.path}{'/' if r.folder else ''} ({what}{r.n_bytes:,} bytes)")
            if every_file and r.folder:
                out.extend(f"    {f}" for f in r.files)
        out.extend(f"kept: {k}" for k in self.kept)
        return out


def _under(path: Path, home: Path) -> bool:
    """Whether ``path`` (itself not followed if it is a link) lies strictly inside ``home``."""
    where = path.parent.resolve() / path.name
    return where != home and where.is_relative_to(home)


def _shard_root(store: Path) -> str | None:
    """The shard folder the store at ``store`` recorded (None for a file that is no store of ours).

    Raises:
        StoreError: while another process holds the store (the dashboard or a job).
    """
    try:
        con = duckdb.connect(str(store), read_only=True)
    except duckdb.Error as e:
        if "lock" not in str(e).lower():
            return None  # not a database file: removed like any other
        raise StoreError(f"{store} is in use by another process (the dashboard or a job): stop it first; "
                         f"nothing removed ({e})") from e
    try:
        meta = dict(con.execute("SELECT key, value FROM meta WHERE key IN ('shard_location', 'store_id')").fetchall())
    except duckdb.Error:
        return None
    finally:
        con.close()
    if "store_id" not in meta:
        return None
    try:
        return sh.ShardLocation.resolve(meta.get("shard_location") or sh.DEFAULT_LOCATION, store,
                                        meta["store_id"]).root
    except sh.ShardError:
        return None


def _entry(path: Path) -> Removed:
    folder = path.is_dir() and not path.is_symlink()
    files = tuple(sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink())) if folder else (path,)
    return Removed(path, folder, files, sum(p.lstat().st_size for p in files))


def clean_cache(home: Path | None = None, store: Path | None = None, dry_run: bool = False) -> CacheCleanup:
    """Remove the workspace's store, its shards and run folders, only under ``home``.

    Args:
        home: the workspace (default ``IGDS_HOME``).
        store: the store file (default ``IGDS_STORE``, else ``<home>/igds.duckdb``); removed only under ``home``.
        dry_run: list, remove nothing.

    Raises:
        StoreError: while another process holds a store file (nothing is removed).
    """
    home = (home or settings.home()).resolve()
    stores = list(dict.fromkeys([home / STORE_FILENAME, Path(store) if store else settings.store_path()]))
    targets: list[Path] = []
    kept: list[str] = []
    for db in stores:
        if not _under(db, home):
            if db.exists():
                kept.append(f"{db} (the store named by IGDS_STORE lies outside {home})")
            continue
        root = _shard_root(db) if db.is_file() else None
        targets += [db, db.with_name(db.name + ".wal"), db.with_name(".compact-" + db.name),
                    db.parent / sh.DEFAULT_LOCATION]
        if root is not None:
            if "://" in root:
                kept.append(f"{root} (the store's shards in object storage)")
            elif _under(Path(root), home):
                targets.append(Path(root))
            else:
                kept.append(f"{root} (the store's shards lie outside {home})")
    targets.append(home / RUNS_DIR)
    # a folder listed inside another listed one goes with it
    present = [t for t in dict.fromkeys(targets) if (t.exists() or t.is_symlink()) and _under(t, home)]
    present = [t for t in present if not any(o != t and t.is_relative_to(o) for o in present)]
    removed = tuple(_entry(t) for t in present)
    if not dry_run:
        for t in present:
            if t.is_dir() and not t.is_symlink():  # rmtree never follows a link inside
                shutil.rmtree(t)
            else:
                t.unlink()
    return CacheCleanup(home, removed, tuple(kept), dry_run)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m igds.store.clean`` (``make clean-cache``)."""
    ap = argparse.ArgumentParser(prog="python -m igds.store.clean", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    ap.add_argument("--files", action="store_true", help="list every removed file, not only the top-level paths")
    args = ap.parse_args(argv)
    try:
        report = clean_cache(dry_run=args.dry_run)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(report.lines(every_file=args.files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
