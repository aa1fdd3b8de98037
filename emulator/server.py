"""One WSGI endpoint for bedrock (control plane + runtime), the Price List API (``pricing``), S3, IAM and STS.

Routing (docs/design.md §5): the SigV4 credential scope names the service
(``Credential=KEY/DATE/REGION/<service>/aws4_request``); ``bedrock`` covers the control plane and the
runtime (``/model/<id>/invoke``, ``/model/<id>/converse``) and is served here, as is ``pricing`` (the Price List
Query API for Bedrock's prices, emulator/pricing.py); everything else goes
to moto's server app (``DomainDispatcherApplication``), mounted in-process, with this emulator's
account id in ``x-moto-account-id``. ``/_emulator/*`` are the emulator's own endpoints:
``GET /_emulator/health``, ``GET /_emulator/ledger``, ``GET|POST /_emulator/faults``,
``POST /_emulator/reset``, ``GET|POST /_emulator/iam``.

With IAM enforcement on (``enforce_iam=True``, ``--enforce-iam``, ``FORGE_EMULATOR_ENFORCE_IAM=1``) every request
is first checked against its caller's policies (emulator/iam_enforce.py); off by default.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from emulator import iam_enforce
from emulator.bedrock import (
    GEO_PREFIXES,
    ROUTES,
    RUNTIME_OPS,
    ApiError,
    BedrockBackend,
    BedrockBackends,
    BedrockResponses,
    Request,
    Response,
    match_bedrock,
)
from emulator.bedrock.urls import RAW_BODY_OPS
from emulator.clock import VirtualClock
from emulator.faults import ERRORS, FaultConfigError, Faults, Rule, parse_rules
from emulator.ledger import Ledger
from emulator.options import TLS_ENV_FLAG, add_arguments  # noqa: F401 (add_arguments: re-exported)
from emulator.pricing import PricingError, PricingResponses
from emulator.state import MotoAccount, StateStore, acting_as, protect_account

DEFAULT_ACCOUNT = "123456789012"    # moto's default, the AWS documentation example id (not a real account)
DEFAULT_REGION = "us-east-1"
# an event stream's events after the first come one every STREAM_PACE x the invoke latency (emulator convention)
STREAM_PACE = 0.2
_accounts_in_use: set[str] = set()
_accounts_lock = threading.Lock()


_ever_allocated = [0]


def _allocate_account(preferred: str | None) -> str:
    """One moto account per emulator instance in this process (isolates S3/IAM between instances).

    Without a preference (in-process emulators) the ids are 000000000001, 000000000002, ...: moto's
    default account 123456789012 stays free for unit tests using ``moto.mock_aws`` in the same process.
    The standalone server asks for 123456789012."""
    with _accounts_lock:
        if preferred and preferred not in _accounts_in_use:
            _accounts_in_use.add(preferred)
            return preferred
        # never hand out an id twice in one process: moto keeps a closed emulator's S3/IAM state in
        # memory, and a new emulator on that id would see the old buckets and roles
        while True:
            _ever_allocated[0] += 1
            acct = f"{_ever_allocated[0]:012d}"
            if acct not in _accounts_in_use:
                _accounts_in_use.add(acct)
                return acct


def _release_account(acct: str) -> None:
    with _accounts_lock:
        _accounts_in_use.discard(acct)


__all__ = ["ROUTES", "RUNTIME_OPS", "Emulator", "match_bedrock", "serve"]   # ROUTES: emulator/bedrock/urls.py


def credential_scope(environ: dict) -> tuple[str | None, str | None]:
    """(service, region) from ``Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request``."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request", auth)
    if m:
        return m.group(2).lower(), m.group(1)
    q = parse_qs(environ.get("QUERY_STRING", ""))
    cred = (q.get("X-Amz-Credential") or [""])[0]   # presigned URLs
    parts = cred.split("/")
    if len(parts) == 5:
        return parts[3].lower(), parts[2]
    return None, None


# -- S3 / IAM / STS operation names for the ledger and faults --------------------------------
def s3_operation(method: str, path: str, query: dict[str, list[str]]) -> str:
    parts = [p for p in path.split("/", 2)[1:] if p] if path != "/" else []
    has_key = len(parts) >= 2
    if not parts:
        return "ListBuckets"
    if "uploads" in query:
        return "CreateMultipartUpload" if method == "POST" else "ListMultipartUploads"
    if "uploadId" in query:
        return {"PUT": "UploadPart", "POST": "CompleteMultipartUpload",
                "DELETE": "AbortMultipartUpload"}.get(method, "ListParts")
    if "delete" in query and method == "POST":
        return "DeleteObjects"
    if "tagging" in query:
        return ({"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, "")
                + ("ObjectTagging" if has_key else "BucketTagging"))
    for sub, name in (("policy", "BucketPolicy"), ("encryption", "BucketEncryption"),
                      ("versioning", "BucketVersioning"),
                      ("lifecycle", "BucketLifecycleConfiguration"), ("publicAccessBlock", "PublicAccessBlock"),
                      ("location", "BucketLocation")):
        if sub in query:
            return {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, "") + name
    if has_key:
        return {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject", "DELETE": "DeleteObject",
                "POST": "PostObject"}.get(method, method + "Object")
    if method == "GET":
        return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(method, method + "Bucket")


_IAM_MUTATING = re.compile(r"^(Create|Put|Delete|Attach|Detach|Update|Tag|Untag|Add|Remove|Set|Upload|"
                           r"Change|Reset|Enable|Disable)")


_JSON_MUTATING = re.compile(r"^(Create|Delete|Schedule|Put|Cancel|Enable|Disable|Update|Tag|Untag|Import|Rotate|"
                            r"Replicate|Retire|Revoke)")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return status, json.dumps(body, default=str).encode(), h


def _status_line(status: int) -> str:
    from http import HTTPStatus
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


class Emulator:
    """The emulator's state + WSGI app. ``Emulator(...)`` is cheap; moto is imported on first use."""

    def __init__(self, *, speed: float = 100.0, state_dir: str | Path | None = None,
                 faults: list[dict] | list[Rule] | None = None, invoke_latency_ms: float | None = None,
                 account_id: str | None = None, seed: int | None = None, pt_tokens_per_minute: float | None = None,
                 pt_burst_seconds: float | None = None, enforce_iam: bool | None = None):
        self.store = StateStore(state_dir)
        saved = self.store.load_bedrock()
        if saved:
            BedrockBackends.check_version(saved, self.store.dir)   # before taking an account id
        self.account_id = _allocate_account((saved or {}).get("account_id") or account_id)
        clock = VirtualClock.from_dict(saved["clock"], speed=speed) if saved and saved.get("clock") \
            else VirtualClock.start(speed)
        rules = faults if faults and isinstance(faults[0], Rule) else parse_rules(faults or [])
        self.faults = Faults(rules=list(rules), seed=seed)  # type: ignore[arg-type]
        self.ledger = Ledger()
        # IAM enforcement (emulator/iam_enforce.py): off unless asked for (argument, else FORGE_EMULATOR_ENFORCE_IAM)
        self.iam = iam_enforce.Enforcer(self.account_id, enabled=iam_enforce.enforcement_from_env()
                                        if enforce_iam is None else bool(enforce_iam))
        self.moto = MotoAccount(self.account_id, self.store)
        protect_account(self.account_id)
        self.bedrock = BedrockBackends(account_id=self.account_id, store=self.store, moto=self.moto, ledger=self.ledger,
                                      faults=self.faults, clock=clock,
                                      invoke_latency_ms=5.0 if invoke_latency_ms is None else float(invoke_latency_ms),
                                      seed=seed, pt_tokens_per_minute=pt_tokens_per_minute,
                                      pt_burst_seconds=pt_burst_seconds)
        if saved:
            self.bedrock.load(saved)
        self.moto.restore()
        self.bedrock.save()
        self._moto_app: Callable | None = None
        self._moto_app_lock = threading.Lock()
        self.closed = False

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.bedrock.advance_and_save()
                self.moto.flush()
            finally:
                protect_account(self.account_id, on=False)
                _release_account(self.account_id)

    def reset(self) -> None:
        self.bedrock.reset()
        self.moto.reset()
        self.faults.set_rules([])
        self.iam.clear()
        self.store.clear()
        self.bedrock.save()

    def moto_app(self) -> Callable:
        if self._moto_app is None:
            with self._moto_app_lock:
                if self._moto_app is None:
                    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

                    from emulator import moto_compat
                    from emulator.state import install_bucket_namespace
                    install_bucket_namespace()
                    moto_compat.apply()   # aws:SecureTransport counts as true (see moto_compat)
                    self._moto_app = DomainDispatcherApplication(create_backend_app)
        return self._moto_app

    # -- WSGI -----------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        try:
            status, body, headers = self.handle(environ)
        except Exception as e:  # noqa: BLE001 - never a traceback on the wire
            status, body, headers = _json(500, {"message": f"emulator internal error: {type(e).__name__}: {e}"},
                                          {"x-amzn-errortype": "InternalServerException"})
        headers.setdefault("x-amzn-requestid", str(uuid.uuid4()))
        if isinstance(body, list):     # an event stream: no Content-Length, so werkzeug (HTTP/1.1) sends it chunked
            start_response(_status_line(status), list(headers.items()))
            return self._paced(body)
        if not (environ.get("REQUEST_METHOD") == "HEAD" and any(k.lower() == "content-length" for k in headers)):
            headers["Content-Length"] = str(len(body))
        start_response(_status_line(status), list(headers.items()))
        return [body]

    def _paced(self, frames: list[bytes]):
        """An event stream written one event at a time, as a model streams (the first event after the invoke latency,
        then one every STREAM_PACE of it: the emulator's convention, not a measured AWS figure), so a client sees
        the first event before the last one is written."""
        pause = self.bedrock.invoke_latency_ms * STREAM_PACE / 1000.0
        for i, frame in enumerate(frames):
            if i and pause > 0:
                time.sleep(pause)
            yield frame

    def handle(self, environ: dict) -> tuple[int, bytes, dict[str, str]]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        raw_path = raw_uri.split("?", 1)[0]
        if raw_path.startswith("/_emulator/"):
            return self.handle_internal(method, raw_path, environ)
        if raw_path == "/moto-api/reset":
            # moto's reset endpoint (moto's own server-mode tests call it): reset what the emulator holds (its
            # Bedrock Regions, this account's S3/IAM/KMS, ledger, faults), not every account moto serves
            if method != "POST":
                return _json(400, {"Error": "Need to POST to reset Moto"})
            self.reset()
            return _json(200, {"status": "ok"})
        service, region = credential_scope(environ)
        region = region or DEFAULT_REGION
        if service == "pricing":
            return self.handle_pricing(environ)
        if service in ("bedrock", None):
            hit = match_bedrock(method, raw_path)
            if hit:
                return self.handle_bedrock(hit[0], hit[1], region, environ)
            if service == "bedrock":
                return _json(404, {"message": f"Unknown Bedrock operation: {method} {raw_path}"},
                             {"x-amzn-errortype": "UnknownOperationException"})
        return self.handle_moto(service or "s3", method, environ)

    # -- bedrock --------------------------------------------------------------------------------
    def handle_bedrock(self, op: str, path_params: dict, region: str, environ: dict) -> tuple[int, bytes, dict]:
        service = "bedrock-runtime" if op in RUNTIME_OPS else "bedrock"
        mutating = op in BedrockResponses.MUTATING
        t = self.bedrock.now()
        status, code = 500, None
        try:
            decision = self.faults.on_call(op)
            if decision.latency_ms > 0:
                time.sleep(decision.latency_ms / 1000.0)
            if decision.error:
                raise ApiError(decision.error, _fault_message(decision.error, op), ERRORS.get(decision.error))
            raw = _read_body(environ)
            body: dict = {}
            if raw and op not in RAW_BODY_OPS:
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise ApiError("ValidationException", f"The request body is not valid JSON ({e.msg}).") from None
            query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
            headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
            req = Request(operation=op, region=region, path_params=path_params, query=query,
                          body=body if isinstance(body, dict) else {}, raw_body=raw, headers=headers)
            if self.iam.enabled:
                self._authorize_bedrock(environ, req, service)
            resp: Response = BedrockResponses(self.bedrock[region]).dispatch(req)
            status = resp.status
            if mutating:
                self.bedrock._dirty = True
            if resp.frames is not None:
                out = (status, list(resp.frames), dict(resp.headers or {}))
            elif isinstance(resp.body, (bytes, bytearray)):
                out = (status, bytes(resp.body), dict(resp.headers or {"Content-Type": "application/json"}))
            else:
                out = _json(status, resp.body if resp.body is not None else {}, resp.headers)
        except ApiError as e:
            status, code = e.status, e.code
            out = _json(e.status, {"message": e.message}, {"x-amzn-errortype": e.code})
        finally:
            self.ledger.record_call(t=t, service=service, operation=op, mutating=mutating, status=status, error=code)
        try:
            self.bedrock.advance_and_save()
        except Exception:  # noqa: BLE001 - persistence trouble must not fail the call
            pass
        return out

    # -- pricing (the Price List Query API, emulator/pricing.py) --------------------------------------
    def handle_pricing(self, environ: dict) -> tuple[int, bytes, dict]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        op = target.rsplit(".", 1)[-1] or "Unknown"
        t = self.bedrock.now()
        status, code = 500, None
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        try:
            decision = self.faults.on_call(op, named_only=True)
            if decision.latency_ms > 0:
                time.sleep(decision.latency_ms / 1000.0)
            if decision.error:
                raise PricingError(decision.error, _fault_message(decision.error, op), ERRORS.get(decision.error, 400))
            raw = _read_body(environ)
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError as e:
                raise PricingError("InvalidParameterException", f"The request body is not valid JSON ({e.msg}).") \
                    from None
            if self.iam.enabled:
                caller = self.iam.caller(environ)
                # pricing:<Op> has no resource type: the statement that allows it says Resource "*"
                denied = self.iam.check(caller, "pricing", op, [iam_enforce.AuthRequest(f"pricing:{op}", "*")])
                if denied is not None:
                    raise PricingError("AccessDeniedException", iam_enforce.denial_message(caller.arn, denied))
            out = PricingResponses().dispatch(target, body if isinstance(body, dict) else {})
            status = 200
            return 200, json.dumps(out).encode(), headers
        except PricingError as e:
            status, code = e.status, e.code
            return e.status, json.dumps({"__type": e.code, "Message": e.message}).encode(), headers
        finally:
            self.ledger.record_call(t=t, service="pricing", operation=op, mutating=False, status=status, error=code)

    def _authorize_bedrock(self, environ: dict, req: Request, service: str) -> None:
        """Raise AccessDeniedException unless the caller's policies allow everything ``req`` needs."""
        caller = self.iam.caller(environ)
        if caller.unrestricted:
            return
        needs = iam_enforce.bedrock_requests(req.operation, req.path_params, req.body, req.region, self.account_id,
                                             _BedrockState(self.bedrock[req.region], self.account_id))
        denied = self.iam.check(caller, service, req.operation, needs)
        if denied is not None:
            raise ApiError("AccessDeniedException", iam_enforce.denial_message(caller.arn, denied))

    def _authorize_moto(self, service: str, op: str, method: str, environ: dict, raw: bytes,
                        query: dict[str, list[str]]) -> tuple[iam_enforce.Caller, tuple | None]:
        """(caller, the AccessDenied answer or None) for an S3/IAM/STS/KMS request."""
        caller = self.iam.caller(environ)
        if caller.unrestricted:
            return caller, None
        path = environ.get("PATH_INFO", "/")
        if service == "s3":
            headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
            needs = iam_enforce.s3_requests(op, path, query, headers, raw)
        elif service == "kms":
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {}
            region = credential_scope(environ)[1] or DEFAULT_REGION
            needs = iam_enforce.kms_requests(op, body if isinstance(body, dict) else {}, region, self.account_id,
                                             self._kms_key_arn)
        else:
            form = parse_qs(raw.decode("utf-8", "replace")) if raw else {}
            params = {k: v[0] for k, v in {**query, **form}.items() if v}
            if service == "sts":
                needs = iam_enforce.sts_requests(op, params)
            else:
                needs = iam_enforce.iam_requests(op, params, self.account_id, self._iam_entity)
        denied = self.iam.check(caller, service, op, needs)
        if denied is None:
            return caller, None
        bucket = path.lstrip("/").split("/", 1)[0] if service == "s3" else None
        return caller, iam_enforce.denied_response(service, method, caller, denied, bucket=bucket or None)

    def _iam_entity(self, kind: str, name: str) -> tuple[str, dict[str, str]] | None:
        from emulator.state import _backends
        with acting_as(self.account_id):
            iam = _backends("iam")[self.account_id]["global"]
            try:
                ent = {"role": iam.get_role, "user": iam.get_user}.get(kind, lambda _n: None)(name)
            except Exception:  # noqa: BLE001 - no such entity
                return None
        if ent is None:
            return None
        return ent.arn, iam_enforce._tag_dict(getattr(ent, "tags", {}))

    def _kms_key_arn(self, key: str) -> str | None:
        from emulator.state import _backends
        region = key.split(":")[3] if key.startswith("arn:") else DEFAULT_REGION
        try:
            with acting_as(self.account_id):
                kms = _backends("kms")[self.account_id][region]
                key_id = kms.get_key_id(key) if hasattr(kms, "get_key_id") else key
                if key.rsplit(":", 1)[-1].startswith("alias/") or key.startswith("alias/"):
                    key_id = kms.get_key_id_from_alias(key.rsplit(":", 1)[-1] if key.startswith("arn:") else key)
                return kms.describe_key(key_id).arn if key_id else None
        except Exception:  # noqa: BLE001 - unknown key: authorized on the id as given
            return None

    # -- moto (s3, iam, sts) -------------------------------------------------------------------
    def handle_moto(self, service: str, method: str, environ: dict) -> tuple[int, bytes, dict]:
        raw = _read_body(environ)
        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        environ["HTTP_X_MOTO_ACCOUNT_ID"] = self.account_id
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if service == "s3":
            op = s3_operation(method, environ.get("PATH_INFO", "/"), query)
            mutating = method in ("PUT", "POST", "DELETE")
        elif target:    # JSON protocol (kms): X-Amz-Target: TrentService.DescribeKey
            op = target.rsplit(".", 1)[-1]
            mutating = bool(_JSON_MUTATING.match(op))
        else:
            form = parse_qs(raw.decode("utf-8", "replace")) if raw else {}
            op = (form.get("Action") or query.get("Action") or ["Unknown"])[0]
            mutating = service == "iam" and bool(_IAM_MUTATING.match(op))
        t = self.bedrock.now()
        caller = None
        if self.iam.enabled:
            caller, denied = self._authorize_moto(service, op, method, environ, raw, query)
            if denied is not None:
                self.ledger.record_call(t=t, service=service, operation=op, mutating=mutating, status=denied[0],
                                        error="AccessDeniedException" if service == "kms" else "AccessDenied")
                return denied
        decision = self.faults.on_call(op)
        if decision.latency_ms > 0:
            time.sleep(decision.latency_ms / 1000.0)
        if decision.error:
            status, body, headers = _moto_fault(service, decision.error, op)
            self.ledger.record_call(t=t, service=service, operation=op, mutating=mutating, status=status,
                                    error=decision.error)
            return status, body, headers
        if service == "s3" and op == "CreateBucket":
            bucket = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
            why = invalid_bucket_name(bucket)
            if why:
                self.ledger.record_call(t=t, service=service, operation=op, mutating=mutating, status=400,
                                        error="InvalidBucketName")
                body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidBucketName</Code>"
                        f"<Message>The specified bucket is not valid ({why}).</Message>"
                        f"<BucketName>{bucket}</BucketName><RequestId>{uuid.uuid4()}</RequestId></Error>").encode()
                return 400, body, {"Content-Type": "application/xml"}
        captured: dict = {}

        def start_response(status_line: str, headers: list, exc_info: Any = None) -> Callable:
            captured["status"] = int(status_line.split(" ", 1)[0])
            captured["headers"] = headers
            return lambda _data: None

        app = self.moto_app()
        with acting_as(self.account_id):
            if mutating:
                with self.moto.lock:
                    chunks = app(environ, start_response)
                    body = b"".join(chunks)
            else:
                chunks = app(environ, start_response)
                body = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        status = captured.get("status", 500)
        if (status == 404 and service == "s3" and op in ("GetObject", "HeadObject") and caller is not None
                and not caller.unrestricted):
            # a missing key answers 404 only to a caller allowed s3:ListBucket, else 403
            # (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html)
            bucket = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
            need = iam_enforce.AuthRequest("s3:ListBucket", f"arn:aws:s3:::{bucket}")
            verdict = self.iam.check(caller, service, op, [need])
            if verdict is not None:
                denied = iam_enforce.denied_response(service, method, caller, verdict, bucket=bucket)
                self.ledger.record_call(t=t, service=service, operation=op, mutating=mutating, status=denied[0],
                                        error="AccessDenied")
                return denied
        error = None
        if status >= 300:
            m = re.search(rb"<Code>([^<]+)</Code>", body)
            error = m.group(1).decode() if m else f"HTTP{status}"
        elif mutating and service in ("s3", "iam"):
            try:
                self.moto.snapshot(service)
            except Exception:  # noqa: BLE001 - persistence trouble must not fail the call
                pass
        self.ledger.record_call(t=t, service=service, operation=op, mutating=mutating, status=status, error=error)
        headers = {}
        for k, v in captured.get("headers", []):
            if k.lower() != "content-length" or method == "HEAD":
                headers[k] = v     # HEAD: keep moto's Content-Length (the object's size), send no body
        if method == "HEAD":
            return status, b"", headers
        return status, body, headers

    # -- /_emulator/* ---------------------------------------------------------------------------
    def handle_internal(self, method: str, path: str, environ: dict) -> tuple[int, bytes, dict]:
        if path == "/_emulator/health":
            return _json(200, {"ok": True, "account_id": self.account_id, "speed": self.bedrock.clock.speed,
                               "virtual_now": self.bedrock.now(),
                               "pt_tokens_per_minute": self.bedrock.capacity.tokens_per_minute,
                               "pt_burst_seconds": self.bedrock.capacity.burst_seconds,
                               "enforce_iam": self.iam.enabled,
                               "state_dir": str(self.store.dir) if self.store.dir else None})
        if path == "/_emulator/ledger" and method == "GET":
            billing = self.bedrock.billing()
            self.bedrock.advance_and_save()
            d = self.ledger.to_dict()
            d["calls"] = list(self.ledger.calls)
            return _json(200, {**d, "billing": billing})
        if path == "/_emulator/faults":
            if method == "GET":
                return _json(200, {"rules": self.faults.to_list()})
            if method == "POST":
                try:
                    rules = parse_rules(json.loads(_read_body(environ) or b"[]"), where="POST /_emulator/faults")
                except (json.JSONDecodeError, FaultConfigError) as e:
                    return _json(400, {"message": str(e)})
                self.faults.set_rules(rules)
                return _json(200, {"rules": self.faults.to_list()})
        if path == "/_emulator/reset" and method == "POST":
            self.reset()
            return _json(200, {"ok": True})
        if path == "/_emulator/iam":
            if method == "POST":
                try:
                    body = json.loads(_read_body(environ) or b"{}")
                except json.JSONDecodeError as e:
                    return _json(400, {"message": f"POST /_emulator/iam: not JSON ({e.msg})"})
                if not isinstance(body, dict) or not set(body) <= {"enforce", "clear"}:
                    return _json(400, {"message": 'POST /_emulator/iam takes {"enforce": true|false, "clear": true}'})
                if "enforce" in body:
                    self.iam.enabled = bool(body["enforce"])
                if body.get("clear"):
                    self.iam.clear()
            if method in ("GET", "POST"):
                return _json(200, self.iam.to_dict())
        return _json(404, {"message": f"unknown emulator endpoint {method} {path}; see docs/emulator.md"})


_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")


def invalid_bucket_name(name: str) -> str | None:
    """Why S3 refuses ``name`` for a general purpose bucket, or None: 3-63 characters of lowercase letters,
    digits, '.' and '-', starting and ending with a letter or digit, no '..', not an IP address, none of the
    reserved prefixes and suffixes (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html,
    as of 2026-12-01). moto accepts several of these; real S3 answers InvalidBucketName."""
    if not 3 <= len(name) <= 63:
        return "a bucket name has 3 to 63 characters"
    if not _BUCKET_CHARS.fullmatch(name):
        return "only lowercase letters, digits, '.' and '-'"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return "it must begin and end with a letter or digit"
    if ".." in name:
        return "no two adjacent periods"
    if _IPV4.fullmatch(name):
        return "it must not be formatted as an IP address"
    for prefix in ("xn--", "sthree-", "amzn-s3-demo-"):
        if name.startswith(prefix):
            return f"it must not start with {prefix}"
    for suffix in ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"):
        if name.endswith(suffix):
            return f"it must not end with {suffix}"
    return None


def _read_body(environ: dict) -> bytes:
    try:
        n = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        n = 0
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if n > 0:
        return stream.read(n)
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked" or environ.get("wsgi.input_terminated"):
        return stream.read()
    return b""


def _fault_message(code: str, op: str) -> str:
    return {"ThrottlingException": "Rate exceeded (injected fault). Slow down and retry.",
            "ServiceUnavailableException": "The service is temporarily unavailable (injected fault). Retry later.",
            "InternalServerException": "An internal error occurred (injected fault). Retry the request.",
            }.get(code, f"{code} (injected fault) on {op}.")


def _moto_fault(service: str, code: str, op: str) -> tuple[int, bytes, dict]:
    status = ERRORS.get(code, 500)
    if service == "s3":
        s3code = {"ThrottlingException": "SlowDown", "ServiceUnavailableException": "ServiceUnavailable",
                  "InternalServerException": "InternalError"}.get(code, code)
        status = 503 if s3code == "SlowDown" else status
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{s3code}</Code>"
                f"<Message>{_fault_message(code, op)}</Message></Error>").encode()
        return status, body, {"Content-Type": "application/xml"}
    qcode = {"ThrottlingException": "Throttling", "ServiceUnavailableException": "ServiceUnavailable",
             "InternalServerException": "InternalFailure"}.get(code, code)
    status = 400 if qcode == "Throttling" else status
    body = (f"<ErrorResponse><Error><Type>{'Sender' if status < 500 else 'Receiver'}</Type><Code>{qcode}</Code>"
            f"<Message>{_fault_message(code, op)}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>").encode()
    return status, body, {"Content-Type": "text/xml"}


# -- serving ------------------------------------------------------------------------------------
def make_server(emulator: Emulator, host: str = "127.0.0.1", port: int = 0, access_log: bool = False,
                tls: tuple[str | Path, str | Path] | None = None):
    """A threaded werkzeug server for ``emulator`` (moto's request handler keeps S3 metadata headers).

    No per-request access log unless ``access_log``: the ledger records every call, and a log line per
    request drowned the pipeline's own output (evaluation alone makes hundreds of calls).
    ``tls``: (certificate, key) PEM files to serve HTTPS (emulator/tls.py)."""
    from werkzeug.serving import WSGIRequestHandler
    from werkzeug.serving import make_server as _make
    try:
        from moto.moto_server.werkzeug_app import MotoRequestHandler as base
    except ImportError:  # pragma: no cover - moto[server] is a dependency
        base = WSGIRequestHandler

    class Handler(base):  # type: ignore[misc, valid-type]
        def log_request(self, code="-", size="-"):  # noqa: ANN001
            if access_log:
                super().log_request(code, size)

    ssl_context = None
    if tls is not None:
        import ssl
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(str(tls[0]), str(tls[1]))
    return _make(host, port, emulator, threaded=True, request_handler=Handler, ssl_context=ssl_context)


def serve(*, host: str = "127.0.0.1", port: int = 4566, speed: float = 100.0, faults_file: str | None = None,
          state_dir: str | None = None, invoke_latency_ms: float | None = None, ready_line: bool = False,
          pt_tokens_per_minute: float | None = None, pt_burst_seconds: float | None = None,
          enforce_iam: bool | None = None, tls: bool = False) -> int:
    """Run until SIGINT/SIGTERM. Prints one JSON line ``{"url": ...}`` once listening when ``ready_line``
    (with ``tls``: ``https://`` and ``"ca_bundle"``, the self-signed certificate clients should trust)."""
    import signal
    import sys

    from emulator.faults import load_file
    try:
        rules = load_file(faults_file) if faults_file else []
    except FaultConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    emu = Emulator(speed=speed, state_dir=state_dir, faults=rules, invoke_latency_ms=invoke_latency_ms,
                   account_id=DEFAULT_ACCOUNT, pt_tokens_per_minute=pt_tokens_per_minute,
                   pt_burst_seconds=pt_burst_seconds, enforce_iam=enforce_iam)
    emu.bedrock.preload_models = True
    cert = None
    if tls or os.environ.get(TLS_ENV_FLAG) == "1":
        import tempfile

        from emulator.tls import self_signed
        cert = self_signed(Path(state_dir) / "tls" if state_dir else tempfile.mkdtemp(prefix="forge-emulator-tls-"),
                           hosts=tuple(dict.fromkeys((host, "127.0.0.1", "localhost"))))
    try:
        srv = make_server(emu, host, port, tls=cert)
    except OSError as e:
        print(f"error: cannot listen on {host}:{port}: {e.strerror or e}. Pick another --port "
              "(or stop the process using it).", file=sys.stderr)
        emu.close()
        return 1
    url = f"{'https' if cert else 'http'}://{host}:{srv.server_port}"
    if ready_line:
        print(json.dumps({"url": url, "account_id": emu.account_id, **({"ca_bundle": str(cert[0])} if cert else {})}),
              flush=True)
    print(f"bedrock-forge emulator on {url} (speed x{speed:g}, account {emu.account_id}, state "
          f"{state_dir or 'in memory'}{', IAM enforced' if emu.iam.enabled else ''}); ledger: "
          f"{url}/_emulator/ledger", file=sys.stderr, flush=True)

    def _stop(signum, frame):  # noqa: ARG001
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        srv.serve_forever(poll_interval=0.1)
    finally:
        srv.server_close()
        emu.close()
    return 0


# -- IAM enforcement: what the Bedrock backends know about a resource ---------------------------
class _BedrockState(iam_enforce.BedrockLookup):
    """ARNs and tags of one Region's Bedrock resources, for the authorization of a request."""

    def __init__(self, svc: BedrockBackend, account_id: str):
        self.svc = svc
        self.account_id = account_id

    def resource(self, kind: str, ident: str) -> tuple[str, dict[str, str]] | None:
        svc = self.svc
        find, arn_key = {"model-customization-job": (svc.find_job, "jobArn"),
                         "custom-model": (svc.find_model, "modelArn"),
                         "provisioned-model": (svc.find_pt, "provisionedModelArn"),
                         "custom-model-deployment": (svc.find_deployment, "customModelDeploymentArn")}[kind]
        with svc.lock:
            svc.advance_all()      # a job that just completed has its custom model now, as the operation will see
            found = find(ident) if ident else None
            if found is None:
                return None
            arn = found[arn_key]
            return arn, dict(svc.tags.get(arn, {}))

    def model_target(self, ident: str) -> list[tuple[str, dict[str, str] | None]]:
        for kind in ("provisioned-model", "custom-model-deployment", "custom-model"):
            if kind == "provisioned-model" or f":{kind}/" in ident:
                found = self.resource(kind, ident)
                if found is not None:
                    return [(found[0], found[1])]
                if f":{kind}/" in ident:
                    return [(ident, {})]
        region = self.svc.region
        mid = ident.split("foundation-model/", 1)[1] if "foundation-model/" in ident else ident
        if ":inference-profile/" in mid:
            mid = mid.split(":inference-profile/", 1)[1]
        for geo in GEO_PREFIXES:
            if mid.startswith(geo):
                # a cross-Region inference profile: the profile and the foundation model it routes to
                return [(f"arn:aws:bedrock:{region}:{self.account_id}:inference-profile/{mid}", None),
                        (f"arn:aws:bedrock:{region}::foundation-model/{mid[len(geo):]}", None)]
        return [(f"arn:aws:bedrock:{region}::foundation-model/{mid}", None)]
