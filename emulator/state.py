"""Persistence (state dir) and the emulator's access to moto's S3/IAM backends.

- Bedrock state: one JSON file, ``<state_dir>/bedrock.json``, written atomically (temp file +
  ``os.replace``) after every mutation.
- S3 and IAM state: moto's per-account backends pickled to ``<state_dir>/moto-s3.pickle`` and
  ``moto-iam.pickle`` after every mutating S3/IAM call (moto's objects support pickling; S3 object
  bodies included). Restored into the same account on start.

Each emulator instance owns one account id in moto (``x-moto-account-id``), so two emulators in one
process (the session fixture and a fresh one) do not see each other's roles or objects.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pickle
import tempfile
import threading
from pathlib import Path
from typing import Any

BEDROCK_FILE = "bedrock.json"
MOTO_FILES = {"s3": "moto-s3.pickle", "iam": "moto-iam.pickle"}
RESET_SERVICES = (*MOTO_FILES, "kms")   # KMS keys (moto) are reset but not persisted: their key material won't pickle


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class StateStore:
    def __init__(self, state_dir: str | Path | None):
        self.dir = Path(state_dir) if state_dir else None
        if self.dir:
            self.dir.mkdir(parents=True, exist_ok=True)

    def load_bedrock(self) -> dict | None:
        if not self.dir or not (self.dir / BEDROCK_FILE).exists():
            return None
        return json.loads((self.dir / BEDROCK_FILE).read_text(encoding="utf-8"))

    def save_bedrock(self, data: dict) -> None:
        if self.dir:
            atomic_write(self.dir / BEDROCK_FILE, json.dumps(data, separators=(",", ":")).encode("utf-8"))

    def clear(self) -> None:
        if not self.dir:
            return
        for name in [BEDROCK_FILE, *MOTO_FILES.values()]:
            try:
                (self.dir / name).unlink()
            except FileNotFoundError:
                pass


# -- moto access --------------------------------------------------------------------------
def _backends(service: str):
    if service == "s3":
        from moto.s3.models import s3_backends
        return s3_backends
    if service == "iam":
        from moto.iam.models import iam_backends
        return iam_backends
    if service == "kms":
        from moto.kms.models import kms_backends
        return kms_backends
    raise KeyError(service)


class S3Error(Exception):
    """``code`` = NoSuchBucket | NoSuchKey."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class MotoAccount:
    """One account's S3 and IAM, read and written directly (the emulator acting as Bedrock)."""

    def __init__(self, account_id: str, store: StateStore):
        self.account_id = account_id
        self.store = store
        self.lock = threading.RLock()   # held around mutating moto calls and snapshots
        self._flag_lock = threading.Lock()
        self._dirty: set[str] = set()
        self._timer: threading.Timer | None = None

    # S3 -----------------------------------------------------------------------------------
    def _s3(self):
        return _backends("s3")[self.account_id]["aws"]

    def get_object(self, bucket: str, key: str) -> bytes:
        with acting_as(self.account_id):
            return self._get_object(bucket, key)

    def _get_object(self, bucket: str, key: str) -> bytes:
        from moto.s3.exceptions import MissingBucket, MissingKey
        s3 = self._s3()
        if bucket not in s3.buckets:
            raise S3Error("NoSuchBucket", f"bucket {bucket} does not exist")
        try:
            obj = s3.get_object(bucket, key)
        except (MissingBucket, MissingKey):
            obj = None
        if obj is None:
            raise S3Error("NoSuchKey", f"s3://{bucket}/{key} does not exist")
        return bytes(obj.value)

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        s3 = self._s3()
        if bucket not in s3.buckets:
            raise S3Error("NoSuchBucket", f"bucket {bucket} does not exist")
        with self.lock, acting_as(self.account_id):
            s3.put_object(bucket, key, body)
        self.snapshot("s3")

    # IAM ----------------------------------------------------------------------------------
    def _iam(self):
        return _backends("iam")[self.account_id]["global"]

    def role(self, role_name: str) -> Any | None:
        try:
            return self._iam().get_role(role_name)
        except Exception:  # noqa: BLE001 - moto raises NotFoundException; any lookup failure = no such role
            return None

    def role_policy_documents(self, role: Any) -> list[dict]:
        docs: list[Any] = list(getattr(role, "policies", {}).values())
        for pol in getattr(role, "managed_policies", {}).values():
            doc = getattr(pol, "document", None)
            if doc is None:
                for v in getattr(pol, "versions", []):
                    if getattr(v, "is_default", False):
                        doc = v.document
            if doc is not None:
                docs.append(doc)
        out = []
        for d in docs:
            if isinstance(d, str):
                try:
                    d = json.loads(d)
                except json.JSONDecodeError:
                    continue
            if isinstance(d, dict):
                out.append(d)
        return out

    # persistence --------------------------------------------------------------------------
    FLUSH_DELAY_S = 0.2   # coalesce bursts (multipart parts, many PutObject) into one pickle

    def snapshot(self, service: str) -> None:
        """Schedule a write of ``service``'s backend (debounced; ``flush()`` writes now)."""
        if not self.store.dir:
            return
        with self._flag_lock:
            self._dirty.add(service)
            if self._timer is None:
                self._timer = threading.Timer(self.FLUSH_DELAY_S, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._flag_lock:
            services, self._dirty = self._dirty, set()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for service in sorted(services):
            self._write(service)

    def _write(self, service: str) -> None:
        if not self.store.dir:
            return
        with self.lock, acting_as(self.account_id):
            acct = _backends(service).get(self.account_id)
            data = pickle.dumps(dict(acct) if acct is not None else {})
        atomic_write(self.store.dir / MOTO_FILES[service], data)

    def restore(self) -> None:
        if not self.store.dir:
            return
        for service, fname in MOTO_FILES.items():
            p = self.store.dir / fname
            if not p.exists():
                continue
            regions = pickle.loads(p.read_bytes())
            bd = _backends(service)
            acct = bd[self.account_id]
            if service == "s3":
                install_bucket_namespace()
            with self.lock, acting_as(self.account_id):
                acct.clear()
                acct.update(regions)
                if service == "s3":
                    for region_backend in regions.values():
                        for name in region_backend.buckets:
                            bd.bucket_accounts[name] = (region_backend.partition, self.account_id)

    def reset(self) -> None:
        with self._flag_lock:
            self._dirty = set()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for service in RESET_SERVICES:
            bd = _backends(service)
            with self.lock, acting_as(self.account_id):
                acct = bd.get(self.account_id)
                if acct is None:
                    continue
                if service == "s3":
                    for region_backend in acct.values():
                        for name in list(region_backend.buckets):
                            bd.bucket_accounts.pop(name, None)
                acct.clear()


# -- a small IAM policy evaluator ----------------------------------------------------------
def _as_list(x: Any) -> list:
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def _glob(pattern: str, value: str) -> bool:
    # IAM wildcards: * and ? (case-insensitive for actions, case-sensitive for resources)
    return fnmatch.fnmatchcase(value, pattern)


def policies_allow(docs: list[dict], action: str, resource: str) -> bool:
    """Allow statements whose Action matches and Resource glob-matches, unless a Deny matches.

    Simplified on purpose: Conditions, NotAction/NotResource and principals are not evaluated.
    """
    allowed = False
    for doc in docs:
        for st in _as_list(doc.get("Statement")):
            if not isinstance(st, dict):
                continue
            actions = [a.lower() for a in _as_list(st.get("Action"))]
            if not any(_glob(a, action.lower()) for a in actions):
                continue
            if not any(_glob(r, resource) for r in _as_list(st.get("Resource"))):
                continue
            if st.get("Effect") == "Deny":
                return False
            if st.get("Effect") == "Allow":
                allowed = True
    return allowed


def trusts_service(trust_doc: Any, service: str) -> bool:
    if isinstance(trust_doc, str):
        try:
            trust_doc = json.loads(trust_doc)
        except json.JSONDecodeError:
            return False
    if not isinstance(trust_doc, dict):
        return False
    for st in _as_list(trust_doc.get("Statement")):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        actions = [a.lower() for a in _as_list(st.get("Action"))]
        if not any(_glob(a, "sts:assumerole") for a in actions):
            continue
        principal = st.get("Principal")
        if principal == "*":
            return True
        if isinstance(principal, dict) and service in _as_list(principal.get("Service")):
            return True
    return False


# -- per-emulator S3 bucket namespace --------------------------------------------------------
_current = threading.local()


class acting_as:
    """Context: moto calls on this thread belong to ``account_id`` (see ``PerAccountBuckets``)."""

    def __init__(self, account_id: str):
        self.account_id = account_id

    def __enter__(self) -> None:
        self.prev = getattr(_current, "account", None)
        _current.account = self.account_id

    def __exit__(self, *exc: object) -> None:
        _current.account = self.prev


class PerAccountBuckets(dict):
    """Drop-in for moto's global ``s3_backends.bucket_accounts`` (bucket name -> (partition, account)).

    S3 bucket names are global, so moto refuses a name another account holds. Two emulators in one
    process (the session fixture and a fresh one) each act as their own account; without this, a
    bucket one creates would be "taken" in the other. Inside an emulator request (``acting_as``)
    only that account's buckets are visible; outside (plain moto use) it behaves like the original dict.
    """

    def __init__(self, initial: dict | None = None):
        super().__init__()
        self._data: dict[str, dict[str, tuple]] = {}
        for k, v in (initial or {}).items():
            self[k] = v

    @staticmethod
    def _shown(by: dict[str, tuple]) -> dict[str, tuple]:
        """Entries visible here: the acting account's; outside emulator requests, all but live emulators'."""
        cur = getattr(_current, "account", None)
        if cur is not None:
            return {cur: by[cur]} if cur in by else {}
        return {a: v for a, v in by.items() if a not in _protected_accounts}

    def _visible(self) -> list[str]:
        return [n for n, by in self._data.items() if self._shown(by)]

    def __setitem__(self, name: str, value: tuple) -> None:
        self._data.setdefault(name, {})[value[1]] = value

    def __getitem__(self, name: str) -> tuple:
        shown = self._shown(self._data.get(name) or {})
        if not shown:
            raise KeyError(name)
        return next(iter(shown.values()))

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name: object) -> bool:
        return name in self._visible()

    def __delitem__(self, name: str) -> None:
        if self.pop(name, _MISSING) is _MISSING:
            raise KeyError(name)

    def pop(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        by = self._data.get(name) or {}
        shown = self._shown(by)
        if not shown:
            return default
        for acct in shown:
            by.pop(acct, None)
        if not by:
            self._data.pop(name, None)
        return next(iter(shown.values()))

    def keys(self):  # type: ignore[override]
        return list(self._visible())

    def __iter__(self):
        return iter(self._visible())

    def __len__(self) -> int:
        return len(self._visible())

    def items(self):  # type: ignore[override]
        return [(n, self[n]) for n in self._visible()]

    def values(self):  # type: ignore[override]
        return [self[n] for n in self._visible()]

    def clear(self) -> None:
        self._data.clear()


_MISSING = object()


def install_bucket_namespace() -> None:
    bd = _backends("s3")
    if not isinstance(bd.bucket_accounts, PerAccountBuckets):
        bd.bucket_accounts = PerAccountBuckets(dict(bd.bucket_accounts))


# -- keep in-process emulators' S3/IAM alive across moto resets ------------------------------
_protected_accounts: set[str] = set()


def protect_account(account_id: str, on: bool = True) -> None:
    (_protected_accounts.add if on else _protected_accounts.discard)(account_id)
    if on:
        _install_reset_guard()


def _install_reset_guard() -> None:
    """``moto.mock_aws()`` (used by unit tests in the same process) resets *every* moto backend when it
    starts and stops, and S3's reset closes every tracked object buffer. A live in-process emulator's
    account must survive that: reset everything else exactly as moto does, skip protected accounts."""
    from moto.core.base_backend import BackendDict, backend_lock
    if getattr(BackendDict, "_forge_reset_guard", False):
        return
    original = BackendDict.reset.__func__

    def guarded_reset(cls) -> None:
        protected = set(_protected_accounts)
        if not protected:
            return original(cls)
        from moto.s3.models import FakeKey, FakeMultipart
        keep = {c: [x for x in c.instances_tracked if getattr(x, "account_id", None) in protected]
                for c in (FakeKey, FakeMultipart)}
        for c in keep:
            c.instances_tracked = [x for x in c.instances_tracked if getattr(x, "account_id", None) not in protected]
        try:
            with backend_lock:
                instances = list(BackendDict._instances)
                for backend in instances:
                    for acct in list(dict.keys(backend)):
                        if acct in protected:
                            continue
                        with acting_as(acct):
                            dict.__getitem__(backend, acct).reset()
                        dict.__delitem__(backend, acct)
                BackendDict._instances[:] = [b for b in instances if len(dict.keys(b))]
        finally:
            for c, kept in keep.items():
                c.instances_tracked = list(c.instances_tracked) + kept

    BackendDict.reset = classmethod(guarded_reset)
    BackendDict._forge_reset_guard = True
