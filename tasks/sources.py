"""Where a task's rows come from, decided once, before anything is loaded, and said in one line.

Order: `task.data_dir` (your JSONL files, taken as the task's splits), then the hub (read from
`hub_mirror=DIR/<owner>/<name>` when set; else downloaded when online; else the local Hugging Face
cache when offline), then the real rows shipped in tasks/data. A hub repo is always read from a
local directory in the layout the hub serves (README.md `configs:` + parquet), so a mirror, the
cache and a fresh download go through the same loading code. A repo that the mirror lacks is an
error, never a fall-back to other data.

A Plan is cheap to make (paths, sizes, revisions; no rows read): its `identity` goes into the
cell's config hash, so other data makes another cell.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tasks import DATA_DIR
from tasks.protocol import check_spec, clean, sources_of
from tasks.schema import DataError

SPLITS = ("train", "validation", "test")
TRUE = ("1", "true", "yes", "on")


@dataclass
class Origin:
    """One dataset a task reads: a hub repo's config, or a folder of JSONL files."""
    name: str                  # as result.json lists it: "owner/name[config]" or a folder
    path: Path                 # the local directory that holds it
    config: str | None = None  # hub config; None for a JSONL folder
    revision: str | None = None  # hub commit, where known
    stamp: Any = None          # cheap identity: the revision, else file names, sizes (and mtimes)


@dataclass
class Plan:
    kind: str                              # "data_dir" | "hub" | "shipped" | "files"
    why: str                               # the line printed when the cell starts
    specs: dict[str, dict]                 # task split -> protocol spec, with its "origin" key
    origins: dict[str, Origin]
    comparable: bool
    why_not_comparable: str | None = None
    documents: frozenset = field(default_factory=frozenset)  # splits of training documents

    @property
    def identity(self) -> str:
        """What the data is, cheaply: the source kind and every origin's stamp."""
        stamps = {key: [o.name, o.config, o.stamp] for key, o in sorted(self.origins.items())}
        return json.dumps([self.kind, stamps], sort_keys=True, default=str)

    @property
    def digest(self) -> str:
        return hashlib.sha256((self.identity + json.dumps(self.specs, sort_keys=True, default=str))
                              .encode()).hexdigest()[:16]


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in TRUE for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def file_stamp(paths: list[Path], root: Path, mtime: bool = True) -> list:
    """(relative path, size[, mtime]) of each file: changes when a file does, without reading it."""
    out = []
    for p in sorted(paths):
        st = p.stat()
        out.append([p.relative_to(root).as_posix(), st.st_size, *([st.st_mtime_ns] if mtime else [])])
    return out


# ---- the plan -------------------------------------------------------------------------------------
def plan(task, hub_mirror: str | None = None) -> Plan:
    source = task.source
    if task.data_dir:
        return _dir_plan(task, Path(task.data_dir).expanduser())
    if source.get("hub"):
        found = _hub_plan(task, hub_mirror)
        if isinstance(found, Plan):
            return found
        return _shipped_plan(task, found)
    return _shipped_plan(task, f"task {task.name} has no hub dataset")


def _dir_plan(task, root: Path) -> Plan:
    if not root.is_dir():
        raise DataError(f"task.data_dir={root}: not a directory; expected a folder with "
                        f"{', '.join(s + '.jsonl' for s in SPLITS)}")
    files = [root / f"{s}.jsonl" for s in SPLITS if (root / f"{s}.jsonl").exists()]
    origin = Origin(str(root.resolve()), root, stamp=file_stamp(files, root))
    specs = {f.stem: {"from": f.stem, "origin": "data_dir"} for f in files}
    return Plan("data_dir", f"task.data_dir={root} (given): its files are the task's splits", specs,
                {"data_dir": origin}, comparable=False,
                why_not_comparable="task.data_dir: the splits are the given files, not the official protocol")


def _shipped_plan(task, why: str) -> Plan:
    shipped = task.source.get("shipped")
    if not shipped:
        hub = f"{task.source.get('hub')}[{task.source.get('config')}]"
        raise DataError(f"task {task.name}: no real rows are shipped for this variant ({why}); pass "
                        f"task.data_dir=DIR ({', '.join(s + '.jsonl' for s in SPLITS)} in the schema "
                        f"of {hub}), hub_mirror=DIR, or go online (HF_DATASETS_OFFLINE=0) to load {hub}")
    root = DATA_DIR / shipped["dir"]
    specs = {}
    for split, spec in shipped["splits"].items():
        if spec is not None:
            check_spec(split, clean(spec), f"task {task.name} source.shipped.splits")
            specs[split] = {**clean(spec), "origin": "shipped"}
    files = sorted({root / f"{n}.jsonl" for spec in specs.values() for n in sources_of(spec)})
    # shipped files: name and size (their mtime is the checkout's, different on every machine)
    origin = Origin(f"tasks/data/{shipped['dir']}", root, stamp=file_stamp(files, root, mtime=False))
    caveat = shipped.get("why_not_comparable")
    return Plan("shipped", f"shipped rows tasks/data/{shipped['dir']} ({why})", specs, {"shipped": origin},
                comparable=not caveat, why_not_comparable=caveat, documents=_documents(specs))


def _hub_specs(task) -> dict[str, dict]:
    source = task.source
    out = {}
    for split, spec in (source.get("splits") or {s: {"from": s} for s in SPLITS}).items():
        if spec is None:
            continue
        spec = clean(spec)
        check_spec(split, spec, f"task {task.name} source.splits")
        repo, config = spec.get("hub", source["hub"]), spec.get("config", source.get("config"))
        revision = spec.get("revision", source.get("revision") if repo == source["hub"] else None)
        out[split] = {**spec, "hub": repo, "config": config, "revision": revision,
                      "origin": f"{repo}[{config}]"}
    return out


def _check_not_trained_on_test(task, specs: dict[str, dict]) -> None:
    """A split other than test drawn from a hub split that holds official test rows is refused."""
    for split, spec in specs.items():
        if split == "test":
            continue
        main = spec["hub"] == task.source["hub"]
        official = task.source.get("official_test", ["test"]) if main else ["test"]
        for name in sources_of(spec):
            if name in official:
                raise DataError(
                    f"task {task.name}: split {split!r} would be drawn from hub split {name!r} of "
                    f"{spec['hub']}[{spec['config']}], which holds official test rows; a model is never "
                    f"trained or tuned on them (source.official_test lists {official})")


def _hub_plan(task, hub_mirror: str | None) -> Plan | str:
    """The hub plan, or (offline, nothing cached) the reason the shipped rows are used instead."""
    specs = _hub_specs(task)
    _check_not_trained_on_test(task, specs)
    wanted = {spec["origin"]: (spec["hub"], spec["config"], spec["revision"]) for spec in specs.values()}
    if hub_mirror:
        origins = {k: mirror_origin(repo, config, hub_mirror, "dataset") for k, (repo, config, _) in wanted.items()}
        where = f"hub mirror {hub_mirror}"
    elif not offline():
        origins = {k: _download(*v) for k, v in wanted.items()}
        where = "the Hugging Face hub"
    else:
        cached = {k: _cached(*v) for k, v in wanted.items()}
        missing = sorted(k for k, o in cached.items() if o is None)
        if len(missing) == len(cached):
            return (f"offline, and {', '.join(missing)} is not in the local Hugging Face cache; "
                    "hub_mirror=DIR or HF_DATASETS_OFFLINE=0 loads the full dataset")
        if missing:
            raise DataError(f"task {task.name}: offline, {', '.join(missing)} is not in the local Hugging "
                            f"Face cache while {', '.join(k for k in cached if k not in missing)} is; "
                            "download it too (hf download REPO --repo-type dataset) or set hub_mirror=DIR")
        origins, where = cached, "the local Hugging Face cache (offline)"
    names = ", ".join(f"{o.name}@{o.revision[:12] if o.revision else 'unknown revision'}" for o in origins.values())
    caveat = task.source.get("why_not_comparable")
    return Plan("hub", f"{names} from {where}", specs, origins, comparable=not caveat,
                why_not_comparable=caveat, documents=_documents(specs))


def _documents(specs: Mapping[str, dict]) -> frozenset:
    return frozenset(s for s, spec in specs.items() if spec.get("documents"))


# ---- hub repos as local directories -------------------------------------------------------------------
def mirror_origin(repo: str, config: str | None, root: str, repo_type: str) -> Origin:
    """DIR/<owner>/<name> as `hf download REPO --local-dir DIR/<owner>/<name>` writes it."""
    path = Path(root).expanduser() / repo
    marker = "README.md" if repo_type == "dataset" else "config.json"
    if not (path / marker).is_file():
        raise DataError(f"hub_mirror={root}: {repo} is not in the mirror (expected {path}/{marker}, as "
                        f"`hf download {repo} --repo-type {repo_type} --local-dir {path}` writes it)")
    revision = local_dir_revision(path, marker)
    stamp = revision or file_stamp([p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts], path)
    return Origin(f"{repo}[{config}]" if config else repo, path, config, revision, stamp)


def local_dir_revision(path: Path, filename: str) -> str | None:
    """The commit `hf download --local-dir` recorded for a file (first line of its .metadata)."""
    meta = path / ".cache" / "huggingface" / "download" / f"{filename}.metadata"
    if meta.is_file():
        first = meta.read_text().split("\n", 1)[0].strip()
        return first or None
    return None


def _cached(repo: str, config: str, revision: str | None) -> Origin | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo, repo_type="dataset", revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        return None
    return Origin(f"{repo}[{config}]", path, config, path.name, path.name)


def _download(repo: str, config: str, revision: str | None) -> Origin:
    """Only the README and the config's own files (a multi-language repo is not fetched whole)."""
    from huggingface_hub import hf_hub_download, snapshot_download

    readme = Path(hf_hub_download(repo, "README.md", repo_type="dataset", revision=revision))
    patterns = ["README.md", *config_patterns(readme.read_text(encoding="utf-8"), config, repo)]
    path = Path(snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=patterns))
    return Origin(f"{repo}[{config}]", path, config, path.name, path.name)


def card_configs(readme: str) -> list[dict]:
    """The `configs:` list of a dataset card's YAML header."""
    import yaml

    if not readme.startswith("---"):
        return []
    header = readme.split("---", 2)[1]
    return (yaml.safe_load(header) or {}).get("configs") or []


def config_patterns(readme: str, config: str, repo: str) -> list[str]:
    entries = card_configs(readme)
    if any(not isinstance(e, dict) for e in entries):  # a card of the loading-script era: names only
        raise DataError(f"{repo}: its dataset card lists configs without data files (a loading-script dataset, "
                        "which datasets >= 4 cannot run); download its files and convert them (for "
                        "code_search_net: python -m tasks.codesearchnet_mirror DIR), then set hub_mirror=DIR")
    for entry in entries:
        if entry.get("config_name") == config:
            files = entry.get("data_files") or []
            files = [files] if isinstance(files, str) else files
            paths = [f["path"] if isinstance(f, dict) else f for f in files]
            return [p for ps in paths for p in ([ps] if isinstance(ps, str) else ps)]
    names = [c.get("config_name") for c in card_configs(readme)]
    raise DataError(f"{repo}: no config {config!r} in its dataset card; it has {names}")
