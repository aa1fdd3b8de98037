"""IAM enforcement: every request checked against the caller's identity-based policies, as AWS does (issue 20).

Off by default (``Emulator(enforce_iam=True)``, ``forge emulator --enforce-iam`` / ``python -m emulator
--enforce-iam``, or ``FORGE_EMULATOR_ENFORCE_IAM=1``); with it off nothing here runs.

**Who is calling.** The access key id of the SigV4 ``Credential`` names the caller: an access key of an IAM user of
the emulator's account (``iam.create_access_key``) is that user, with its inline, attached and group policies; the
temporary key of an ``sts.assume_role`` session is that role's session, with the role's policies. Any other key (the
dummy ``testing`` keys the tests and ``forge run`` use) is the account's root user, which IAM does not restrict, so
setting things up and the rest of the suite work unchanged. Signatures are not verified.

**How a request is judged** (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html,
identity-based policies only): an explicit ``Deny`` in any matching statement denies; else an ``Allow`` in a matching
statement allows; else the request is implicitly denied. A statement matches when its ``Action`` (or ``NotAction``)
matches the action — case-insensitive, ``*`` and ``?`` wildcards — its ``Resource`` (or ``NotResource``) matches the
resource ARN — case-sensitive, wildcards within each of the ARN's six ``:`` segments, the last one taking the rest
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html) — and every operator of
its ``Condition`` holds. Operators: ``String*``, ``Arn*``, ``Bool``, ``Null``, ``Numeric*``, their ``...IfExists``
forms and the ``ForAllValues:`` / ``ForAnyValue:`` qualifiers
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html,
reference_policies_condition-single-vs-multi-valued-context-keys.html): within an operator every key must hold, a key
holds when any of its policy values matches; a key absent from the request fails a positive operator and passes a
negated one (``StringNotEquals``...). An unknown operator never holds. A request that needs several authorizations
(CreateModelCustomizationJob: the action on the base model and on the custom model, plus ``iam:PassRole``) is
allowed only when each one is.

**What each request needs** is computed here from the request and, for tags, from the emulator's state:
``bedrock_requests`` (Bedrock control plane and runtime, resource types and condition keys of the Service
Authorization Reference, https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonbedrock.html:
``aws:ResourceTag/*`` of jobs, custom models, provisioned throughputs and deployments, ``aws:RequestTag/*`` and
``aws:TagKeys`` of creates and TagResource, ``iam:PassedToService`` of the passed role), ``s3_requests`` (the S3
action of each operation, e.g. HeadBucket → ``s3:ListBucket``, HeadObject → ``s3:GetObject``, a PutObject carrying
tags also ``s3:PutObjectTagging``; https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html),
``iam_requests`` (``iam:<Action>`` on the role/user/policy named, ``aws:RequestTag`` and ``aws:ResourceTag``),
``sts_requests`` and ``kms_requests`` (``kms:RequestAlias`` when a key is named by alias). A GetObject/HeadObject of a
missing key answers 403 instead of 404 unless the caller may ``s3:ListBucket`` the bucket
(https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html). ``sts:GetCallerIdentity`` is always allowed
(https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).

**Not modelled:** resource-based policies (bucket policies keep moto's own handling), permission boundaries, SCPs,
session policies, KMS calls a service makes on the caller's behalf (S3 SSE-KMS, Bedrock), signature checks.

**Denials** answer as each service does — Bedrock ``AccessDeniedException`` (403, JSON), S3 ``AccessDenied`` (403,
XML; no body for HEAD), IAM/STS ``AccessDenied`` (403, query XML), KMS ``AccessDeniedException`` (400, JSON) — with
AWS's message, which names the missing permission: ``User: <arn> is not authorized to perform: <action> on resource:
<arn> because no identity-based policy allows the <action> action``
(https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html). Every decision is kept (``GET
/_emulator/iam``) so a test can tell which statement allowed what.

Why not moto's own enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``): it is process-wide (it would switch on for every
emulator and ``mock_aws`` test in the process), ignores ``Resource`` for S3 and, for a statement with a ``Condition``
it cannot evaluate, answers Deny (moto/iam/access_control.py ``IAMPolicyStatement.is_action_permitted``).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

ENV_FLAG = "FORGE_EMULATOR_ENFORCE_IAM"
MAX_DECISIONS = 50_000


def enforcement_from_env() -> bool:
    return os.environ.get(ENV_FLAG, "").strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------------------------
# the question and the answer
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuthRequest:
    """One authorization: ``action`` on ``resource`` (an ARN or ``*``) with the request's condition keys."""

    action: str
    resource: str
    context: dict[str, list[str]] = field(default_factory=dict)

    def value(self, key: str) -> list[str] | None:
        """The context values of ``key`` (condition key names are case-insensitive); None when absent."""
        low = key.lower()
        for k, v in self.context.items():
            if k.lower() == low:
                return v
        return None


@dataclass
class Decision:
    allowed: bool
    action: str
    resource: str
    reason: str                                # "allowed" | "explicit deny" | "no identity-based policy allows"
    allowed_by: list[str] = field(default_factory=list)     # "<policy name>/<Sid or #index>" of matching Allows
    denied_by: str | None = None


# ---------------------------------------------------------------------------------------------
# policy evaluation
# ---------------------------------------------------------------------------------------------
def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, list | tuple) else [x]


_WILDCARD_CACHE: dict[tuple[str, bool], re.Pattern] = {}


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcards: ``*`` any run of characters, ``?`` exactly one; nothing else is special."""
    key = (pattern, ignore_case)
    rx = _WILDCARD_CACHE.get(key)
    if rx is None:
        rx = re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
                        re.DOTALL | (re.IGNORECASE if ignore_case else 0))
        _WILDCARD_CACHE[key] = rx
    return rx.fullmatch(value) is not None


def _tokens(pattern: str, req: AuthRequest) -> list[tuple[str, str]] | None:
    """``pattern`` as ("lit"|"star"|"one", text) tokens, policy variables (``${aws:username}``, ``${*}``...)
    replaced from the request; None when a variable is not in the request (the element then matches nothing)."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("${", i) and pattern.find("}", i) > 0:
            j = pattern.find("}", i)
            name = pattern[i + 2:j]
            if name in ("*", "?", "$"):
                out.append(("lit", name))
            else:
                vals = req.value(name)
                if not vals or len(vals) != 1:
                    return None
                out.extend(("lit", c) for c in vals[0])
            i = j + 1
            continue
        c = pattern[i]
        out.append(("star", c) if c == "*" else ("one", c) if c == "?" else ("lit", c))
        i += 1
    return out


def _regex(tokens: list[tuple[str, str]]) -> str:
    return "".join(".*" if k == "star" else "." if k == "one" else re.escape(t) for k, t in tokens)


def _segments(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Tokens split at the first five literal ':' (an ARN's six segments; the last keeps its colons)."""
    segs: list[list[tuple[str, str]]] = [[]]
    for tok in tokens:
        if tok == ("lit", ":") and len(segs) < 6:
            segs.append([])
        else:
            segs[-1].append(tok)
    return segs


_COMPILED: dict[str, tuple[bool, list[re.Pattern] | re.Pattern]] = {}


def _compile(pattern: str, tokens: list[tuple[str, str]]) -> tuple[bool, list[re.Pattern] | re.Pattern]:
    if pattern.startswith("arn:"):
        segs = _segments(tokens)
        return True, [re.compile(_regex(sg), re.DOTALL) for sg in segs] if len(segs) == 6 else []
    return False, re.compile(_regex(tokens), re.DOTALL)


def _resource_matches(pattern: str, resource: str, req: AuthRequest) -> bool:
    cached = _COMPILED.get(pattern) if "${" not in pattern else None
    if cached is None:
        tokens = _tokens(pattern, req)
        if tokens is None:
            return False
        if tokens == [("star", "*")]:
            return True
        cached = _compile(pattern, tokens)
        if "${" not in pattern:
            _COMPILED[pattern] = cached
    is_arn, rx = cached
    if is_arn and resource.startswith("arn:"):
        parts = resource.split(":", 5)
        if not rx or len(parts) != 6:
            return False
        return all(r.fullmatch(part) is not None for r, part in zip(rx, parts, strict=True))
    if is_arn:
        return False
    return rx.fullmatch(resource) is not None


def _action_matches(pattern: str, action: str) -> bool:
    return _glob(pattern, action, ignore_case=True)


# condition operators: name -> (compare(policy_value, request_value) -> bool, negated)
def _str_eq(p: str, v: str) -> bool:
    return p == v


def _str_eq_ic(p: str, v: str) -> bool:
    return p.lower() == v.lower()


def _str_like(p: str, v: str) -> bool:
    return _glob(p, v)


def _arn_like(p: str, v: str) -> bool:
    return _resource_matches(p, v, AuthRequest("", ""))


def _num(op: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def cmp(p: str, v: str) -> bool:
        try:
            return op(float(v), float(p))
        except ValueError:
            return False
    return cmp


def _bool(p: str, v: str) -> bool:
    return str(p).lower() == str(v).lower()


OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (_str_eq, False), "StringNotEquals": (_str_eq, True),
    "StringEqualsIgnoreCase": (_str_eq_ic, False), "StringNotEqualsIgnoreCase": (_str_eq_ic, True),
    "StringLike": (_str_like, False), "StringNotLike": (_str_like, True),
    "ArnEquals": (_arn_like, False), "ArnLike": (_arn_like, False),
    "ArnNotEquals": (_arn_like, True), "ArnNotLike": (_arn_like, True),
    "NumericEquals": (_num(lambda a, b: a == b), False), "NumericNotEquals": (_num(lambda a, b: a == b), True),
    "NumericLessThan": (_num(lambda a, b: a < b), False), "NumericLessThanEquals": (_num(lambda a, b: a <= b), False),
    "NumericGreaterThan": (_num(lambda a, b: a > b), False),
    "NumericGreaterThanEquals": (_num(lambda a, b: a >= b), False),
    "Bool": (_bool, False),
}


def _policy_values(raw: Any) -> list[str]:
    out = []
    for v in _as_list(raw):
        out.append(("true" if v else "false") if isinstance(v, bool) else str(v))
    return out


def _condition_holds(operator: str, key: str, raw_values: Any, req: AuthRequest) -> bool:
    qualifier = None
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
        if qualifier not in ("ForAllValues", "ForAnyValue"):
            return False
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    values = _policy_values(raw_values)
    present = req.value(key)
    if base == "Null":
        want_absent = any(v.lower() == "true" for v in values)
        return (present is None or present == []) == want_absent
    spec = OPERATORS.get(base)
    if spec is None:
        return False
    cmp, negated = spec
    if present is None or present == []:
        if if_exists:
            return True
        if qualifier == "ForAllValues":
            return True       # vacuously true for an absent key
        return negated and qualifier is None
    if not negated:
        def one(v: str) -> bool:
            return any(cmp(p, v) for p in values)
    else:
        def one(v: str) -> bool:
            return not any(cmp(p, v) for p in values)
    if qualifier == "ForAllValues":
        return all(one(v) for v in present)
    if qualifier == "ForAnyValue":
        return any(one(v) for v in present)
    # a single-valued operator on a multi-valued key: positive = any request value matches, negated = none does
    return any(one(v) for v in present) if not negated else all(one(v) for v in present)


def _conditions_hold(cond: Any, req: AuthRequest) -> bool:
    if not cond:
        return True
    if not isinstance(cond, dict):
        return False
    for operator, block in cond.items():
        if not isinstance(block, dict):
            return False
        for key, values in block.items():
            if not _condition_holds(str(operator), str(key), values, req):
                return False
    return True


def _statement_matches(st: dict, req: AuthRequest) -> bool:
    if "NotAction" in st:
        if any(_action_matches(str(a), req.action) for a in _as_list(st["NotAction"])):
            return False
    elif not any(_action_matches(str(a), req.action) for a in _as_list(st.get("Action"))):
        return False
    if "NotResource" in st:
        if any(_resource_matches(str(r), req.resource, req) for r in _as_list(st["NotResource"])):
            return False
    elif not any(_resource_matches(str(r), req.resource, req) for r in _as_list(st.get("Resource"))):
        return False
    return _conditions_hold(st.get("Condition"), req)


def parse_document(doc: Any) -> dict | None:
    """A policy document as a dict (IAM hands them out as JSON, sometimes URL-encoded); None when unreadable."""
    if isinstance(doc, dict):
        return doc
    if isinstance(doc, bytes):
        doc = doc.decode("utf-8", "replace")
    if isinstance(doc, str):
        from urllib.parse import unquote
        for text in (doc, unquote(doc)):
            try:
                d = json.loads(text)
            except ValueError:
                continue
            return d if isinstance(d, dict) else None
    return None


def evaluate(policies: Iterable[tuple[str, Any]], req: AuthRequest) -> Decision:
    """AWS's decision for ``req`` under identity-based ``policies`` ((name, document) pairs)."""
    allowed_by: list[str] = []
    for name, raw in policies:
        doc = parse_document(raw)
        if doc is None:
            continue
        for i, st in enumerate(_as_list(doc.get("Statement"))):
            if not isinstance(st, dict) or not _statement_matches(st, req):
                continue
            label = f"{name}/{st.get('Sid') or '#' + str(i)}"
            if st.get("Effect") == "Deny":
                return Decision(False, req.action, req.resource, "explicit deny", denied_by=label)
            if st.get("Effect") == "Allow":
                allowed_by.append(label)
    if allowed_by:
        return Decision(True, req.action, req.resource, "allowed", allowed_by=allowed_by)
    return Decision(False, req.action, req.resource, "no identity-based policy allows")


def denial_message(principal_arn: str, d: Decision) -> str:
    """AWS's wording (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html)."""
    why = ("with an explicit deny in an identity-based policy" if d.reason == "explicit deny"
           else f"because no identity-based policy allows the {d.action} action")
    return f"User: {principal_arn} is not authorized to perform: {d.action} on resource: {d.resource} {why}"


# ---------------------------------------------------------------------------------------------
# the caller
# ---------------------------------------------------------------------------------------------
@dataclass
class Caller:
    arn: str
    kind: str                                          # "root" | "user" | "assumed-role"
    policies: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def unrestricted(self) -> bool:
        return self.kind == "root"


def access_key_of(environ: dict) -> tuple[str | None, str | None]:
    """(access key id, session token) of a SigV4 request (header or presigned query)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=([^/,\s]+)/", auth)
    key = m.group(1) if m else None
    token = environ.get("HTTP_X_AMZ_SECURITY_TOKEN")
    if key is None:
        q = parse_qs(environ.get("QUERY_STRING", ""))
        cred = (q.get("X-Amz-Credential") or [""])[0]
        key = cred.split("/", 1)[0] or None
        token = token or (q.get("X-Amz-Security-Token") or [None])[0]
    return key, token


def _doc_of_managed(policy: Any) -> Any:
    doc = getattr(policy, "document", None)
    if doc is None:
        for v in getattr(policy, "versions", []) or []:
            if getattr(v, "is_default", False):
                doc = v.document
    return doc


def _tag_dict(tags: Any) -> dict[str, str]:
    if isinstance(tags, dict):
        out = {}
        for k, v in tags.items():
            if isinstance(v, dict):   # moto's {"key": {"Key": k, "Value": v}}
                out[str(v.get("Key", k))] = str(v.get("Value", ""))
            else:
                out[str(k)] = str(v)
        return out
    return {str(t.get("Key")): str(t.get("Value", "")) for t in tags or [] if isinstance(t, dict)}


def find_caller(account_id: str, access_key: str | None, session_token: str | None = None) -> Caller:
    """The identity behind ``access_key`` in the emulator's account (moto's IAM and STS); root otherwise."""
    root = Caller(arn=f"arn:aws:iam::{account_id}:root", kind="root")
    if not access_key:
        return root
    from emulator.state import _backends, acting_as

    with acting_as(account_id):
        iam = _backends("iam")[account_id]["global"]
        for user in list(getattr(iam, "users", {}).values()):
            for k in getattr(user, "access_keys", []) or []:
                if getattr(k, "access_key_id", None) == access_key:
                    return Caller(arn=user.arn, kind="user", policies=_user_policies(iam, user))
        try:
            from moto.sts.models import sts_backends
            assumed = sts_backends[account_id]["global"].get_assumed_role_from_access_key(access_key)
        except Exception:  # noqa: BLE001 - no STS state / not an assumed-role key
            assumed = None
        if assumed is not None:
            role_name = assumed.role_arn.rsplit("/", 1)[-1]
            try:
                role = iam.get_role(role_name)
            except Exception:  # noqa: BLE001 - the role was deleted: its sessions get nothing
                return Caller(arn=assumed.arn, kind="assumed-role")
            return Caller(arn=assumed.arn, kind="assumed-role", policies=_role_policies(role))
    return root


def _user_policies(iam: Any, user: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [(f"user/{user.name}:{n}", d) for n, d in (user.policies or {}).items()]
    out += [(f"{arn}", _doc_of_managed(p)) for arn, p in (user.managed_policies or {}).items()]
    try:
        groups = iam.get_groups_for_user(user.name)
    except Exception:  # noqa: BLE001
        groups = []
    for g in groups:
        out += [(f"group/{g.name}:{n}", d) for n, d in (getattr(g, "policies", {}) or {}).items()]
        out += [(f"{arn}", _doc_of_managed(p)) for arn, p in (getattr(g, "managed_policies", {}) or {}).items()]
    return out


def _role_policies(role: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [(f"role/{role.name}:{n}", d) for n, d in (role.policies or {}).items()]
    out += [(f"{arn}", _doc_of_managed(p)) for arn, p in (role.managed_policies or {}).items()]
    return out


# ---------------------------------------------------------------------------------------------
# what a request needs, per service
# ---------------------------------------------------------------------------------------------
def _tag_context(prefix: str, tags: dict[str, str]) -> dict[str, list[str]]:
    return {f"{prefix}/{k}": [v] for k, v in tags.items()}


def _request_tags(tags: dict[str, str]) -> dict[str, list[str]]:
    ctx = _tag_context("aws:RequestTag", tags)
    ctx["aws:TagKeys"] = list(tags)
    return ctx


def _bedrock_tag_list(raw: Any) -> dict[str, str]:
    return {str(t.get("key")): str(t.get("value", "")) for t in raw or [] if isinstance(t, dict)}


class BedrockLookup:
    """What ``bedrock_requests`` asks the emulator's state (server.py implements it over the Region's backend)."""

    def resource(self, kind: str, ident: str) -> tuple[str, dict[str, str]] | None:  # pragma: no cover - interface
        """(ARN, tags) of the ``kind`` resource ``ident`` (a name or an ARN); None when it does not exist."""
        raise NotImplementedError

    def model_target(self, ident: str) -> list[tuple[str, dict[str, str] | None]]:  # pragma: no cover
        """The resources an InvokeModel of ``ident`` is authorized on: [(ARN, tags or None)]."""
        raise NotImplementedError


_KIND_OF_ARN = (("provisioned-model/", "provisioned-model"), ("custom-model-deployment/", "custom-model-deployment"),
                ("custom-model/", "custom-model"), ("model-customization-job/", "model-customization-job"))


def _arn_kind(arn: str) -> str | None:
    for marker, kind in _KIND_OF_ARN:
        if f":{marker}" in arn:
            return kind
    return None


def _resource_auth(action: str, kind: str, ident: str, region: str, account: str, lookup: BedrockLookup,
                   extra: dict[str, list[str]] | None = None) -> AuthRequest:
    found = lookup.resource(kind, ident)
    if found is None:
        # authorization comes first: a resource that does not exist has no tags (an ARN is used as given)
        arn = ident if ident.startswith("arn:") else f"arn:aws:bedrock:{region}:{account}:{kind}/{ident}"
        tags: dict[str, str] = {}
    else:
        arn, tags = found
    return AuthRequest(action, arn, {**_tag_context("aws:ResourceTag", tags), **(extra or {})})


def _fm_arn(region: str, ident: str) -> str:
    if ident.startswith("arn:"):
        return ident
    return f"arn:aws:bedrock:{region}::foundation-model/{ident}"


def bedrock_requests(op: str, path: dict[str, str], body: dict, region: str, account: str,
                     lookup: BedrockLookup) -> list[AuthRequest]:
    """The authorizations a Bedrock request needs (resource types: the Service Authorization Reference)."""
    # Converse is authorized as bedrock:InvokeModel, ConverseStream as bedrock:InvokeModelWithResponseStream
    # (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonbedrock.html)
    a = f"bedrock:{ {'Converse': 'InvokeModel', 'ConverseStream': 'InvokeModelWithResponseStream'}.get(op, op)}"
    star = [AuthRequest(a, "*")]
    if op in ("ListModelCustomizationJobs", "ListCustomModels", "ListProvisionedModelThroughputs",
              "ListCustomModelDeployments", "ListFoundationModels", "PutModelInvocationLoggingConfiguration",
              "GetModelInvocationLoggingConfiguration", "DeleteModelInvocationLoggingConfiguration"):
        return star
    if op == "GetFoundationModel":
        return [AuthRequest(a, _fm_arn(region, path.get("modelIdentifier", "")))]
    if op == "CountTokens":
        return [AuthRequest(a, _fm_arn(region, path.get("modelId", "")))]
    if op == "CreateModelCustomizationJob":
        tags = {**_bedrock_tag_list(body.get("jobTags")), **_bedrock_tag_list(body.get("customModelTags"))}
        ctx = _request_tags(tags)
        base = str(body.get("baseModelIdentifier", ""))
        # the custom model does not exist yet: authorized on the ARN its name gives (its id is assigned later)
        model = f"arn:aws:bedrock:{region}:{account}:custom-model/{body.get('customModelName', '')}"
        base_auth = (AuthRequest(a, _fm_arn(region, base), ctx) if ":custom-model/" not in base
                     else _resource_auth(a, "custom-model", base, region, account, lookup, ctx))
        return [base_auth, AuthRequest(a, model, ctx),
                AuthRequest("iam:PassRole", str(body.get("roleArn", "")),
                            {"iam:PassedToService": ["bedrock.amazonaws.com"]})]
    if op in ("GetModelCustomizationJob", "StopModelCustomizationJob"):
        return [_resource_auth(a, "model-customization-job", path.get("jobIdentifier", ""), region, account, lookup)]
    if op in ("GetCustomModel", "DeleteCustomModel"):
        return [_resource_auth(a, "custom-model", path.get("modelIdentifier", ""), region, account, lookup)]
    if op == "CreateProvisionedModelThroughput":
        ctx = _request_tags(_bedrock_tag_list(body.get("tags")))
        mid = str(body.get("modelId", ""))
        if lookup.resource("custom-model", mid) is not None or ":custom-model/" in mid:
            return [_resource_auth(a, "custom-model", mid, region, account, lookup, ctx)]
        return [AuthRequest(a, _fm_arn(region, mid), ctx)]
    if op in ("GetProvisionedModelThroughput", "UpdateProvisionedModelThroughput", "DeleteProvisionedModelThroughput"):
        return [_resource_auth(a, "provisioned-model", path.get("provisionedModelId", ""), region, account, lookup)]
    if op == "CreateCustomModelDeployment":
        ctx = _request_tags(_bedrock_tag_list(body.get("tags")))
        return [_resource_auth(a, "custom-model", str(body.get("modelArn", "")), region, account, lookup, ctx)]
    if op in ("GetCustomModelDeployment", "DeleteCustomModelDeployment"):
        return [_resource_auth(a, "custom-model-deployment", path.get("customModelDeploymentIdentifier", ""), region,
                               account, lookup)]
    if op in ("TagResource", "UntagResource", "ListTagsForResource"):
        arn = str(body.get("resourceARN", ""))
        kind = _arn_kind(arn) or "custom-model"
        extra: dict[str, list[str]] = {}
        if op == "TagResource":
            extra = _request_tags(_bedrock_tag_list(body.get("tags")))
        elif op == "UntagResource":
            extra = {"aws:TagKeys": [str(k) for k in body.get("tagKeys") or []]}
        return [_resource_auth(a, kind, arn, region, account, lookup, extra)]
    if op in ("InvokeModel", "Converse", "InvokeModelWithResponseStream", "ConverseStream"):
        return [AuthRequest(a, arn, _tag_context("aws:ResourceTag", tags or {}))
                for arn, tags in lookup.model_target(path.get("modelId", ""))]
    return [AuthRequest(a, "*")]


S3_ACTIONS = {
    "ListBuckets": "s3:ListAllMyBuckets", "HeadBucket": "s3:ListBucket", "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket", "ListObjects": "s3:ListBucket", "ListObjectsV2": "s3:ListBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock", "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration", "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetBucketPolicy": "s3:GetBucketPolicy", "PutBucketPolicy": "s3:PutBucketPolicy",
    "DeleteBucketPolicy": "s3:DeleteBucketPolicy",
    "GetBucketVersioning": "s3:GetBucketVersioning", "PutBucketVersioning": "s3:PutBucketVersioning",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "GetBucketTagging": "s3:GetBucketTagging", "PutBucketTagging": "s3:PutBucketTagging",
    "DeleteBucketTagging": "s3:PutBucketTagging",
    "GetObject": "s3:GetObject", "HeadObject": "s3:GetObject", "PutObject": "s3:PutObject",
    "PostObject": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject", "GetObjectTagging": "s3:GetObjectTagging",
    "PutObjectTagging": "s3:PutObjectTagging", "DeleteObjectTagging": "s3:DeleteObjectTagging",
    "CreateMultipartUpload": "s3:PutObject", "UploadPart": "s3:PutObject", "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload", "ListParts": "s3:ListMultipartUploadParts",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
}


def s3_requests(op: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
                body: bytes) -> list[AuthRequest]:
    """The authorizations an S3 request needs (path-style ``/<bucket>/<key>``)."""
    parts = path.lstrip("/").split("/", 1)
    bucket = parts[0] if parts and parts[0] else ""
    key = parts[1] if len(parts) > 1 else ""
    action = S3_ACTIONS.get(op, f"s3:{op}")
    if op == "ListBuckets" or not bucket:
        return [AuthRequest(action, "*")]
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if op == "DeleteObjects":
        keys = re.findall(rb"<Key>(.*?)</Key>", body or b"", re.DOTALL)
        return [AuthRequest("s3:DeleteObject", f"{bucket_arn}/{k.decode('utf-8', 'replace')}") for k in keys] or \
            [AuthRequest("s3:DeleteObject", f"{bucket_arn}/*")]
    if key and op not in ("HeadBucket", "ListObjects", "ListObjectsV2", "CreateBucket", "DeleteBucket"):
        out = [AuthRequest(action, f"{bucket_arn}/{key}")]
        if op in ("PutObject", "CreateMultipartUpload") and headers.get("x-amz-tagging"):
            out.append(AuthRequest("s3:PutObjectTagging", f"{bucket_arn}/{key}"))
        return out
    ctx: dict[str, list[str]] = {}
    if op in ("ListObjects", "ListObjectsV2"):
        ctx["s3:prefix"] = [(query.get("prefix") or [""])[0]]
    return [AuthRequest(action, bucket_arn, ctx)]


def iam_requests(op: str, params: dict[str, str], account: str,
                 entity: Callable[[str, str], tuple[str, dict[str, str]] | None]) -> list[AuthRequest]:
    """``iam:<Action>`` on the entity the request names. ``entity(kind, name)``: its (ARN, tags), None if absent."""
    action = f"iam:{op}"
    path = params.get("Path") or "/"
    ctx: dict[str, list[str]] = {}
    tags = {}
    i = 1
    while f"Tags.member.{i}.Key" in params:
        tags[params[f"Tags.member.{i}.Key"]] = params.get(f"Tags.member.{i}.Value", "")
        i += 1
    if tags:
        ctx.update(_request_tags(tags))
    if "PolicyArn" in params and not any(k in params for k in ("RoleName", "UserName", "GroupName")):
        return [AuthRequest(action, params["PolicyArn"], ctx)]
    for field_name, kind in (("RoleName", "role"), ("UserName", "user"), ("GroupName", "group"),
                             ("InstanceProfileName", "instance-profile")):
        if field_name in params:
            name = params[field_name]
            have = entity(kind, name)
            if have is not None:
                arn, tags_now = have
                ctx.update(_tag_context("aws:ResourceTag", tags_now))
            else:
                arn = f"arn:aws:iam::{account}:{kind}{path}{name}"
            return [AuthRequest(action, arn, ctx)]
    if op == "CreatePolicy":
        return [AuthRequest(action, f"arn:aws:iam::{account}:policy{path}{params.get('PolicyName', '')}", ctx)]
    return [AuthRequest(action, "*", ctx)]


def sts_requests(op: str, params: dict[str, str]) -> list[AuthRequest]:
    if op == "AssumeRole":
        return [AuthRequest("sts:AssumeRole", params.get("RoleArn", ""))]
    return [AuthRequest(f"sts:{op}", "*")]


def kms_requests(op: str, body: dict, region: str, account: str,
                 key_arn_of: Callable[[str], str | None]) -> list[AuthRequest]:
    """``kms:<Op>`` on the key the request names (an alias is resolved to its key; ``kms:RequestAlias``)."""
    action = f"kms:{op}"
    key = str(body.get("KeyId") or "")
    if not key:
        return [AuthRequest(action, "*")]
    ctx: dict[str, list[str]] = {}
    tail = key.rsplit(":", 1)[-1] if key.startswith("arn:") else key
    if tail.startswith("alias/"):
        ctx["kms:RequestAlias"] = [tail]
    arn = key_arn_of(key) or (key if key.startswith("arn:") else f"arn:aws:kms:{region}:{account}:key/{key}")
    return [AuthRequest(action, arn, ctx)]


# ---------------------------------------------------------------------------------------------
# the enforcer: decisions, the log, and AWS-shaped denials
# ---------------------------------------------------------------------------------------------
class Enforcer:
    """Holds the on/off switch and the decision log of one emulator."""

    def __init__(self, account_id: str, enabled: bool = False):
        self.account_id = account_id
        self.enabled = enabled
        self._lock = threading.Lock()
        self.decisions: deque[dict] = deque(maxlen=MAX_DECISIONS)

    def caller(self, environ: dict) -> Caller:
        key, token = access_key_of(environ)
        return find_caller(self.account_id, key, token)

    def check(self, caller: Caller, service: str, operation: str, requests: list[AuthRequest]) -> Decision | None:
        """The first denied authorization of ``requests`` (None: all allowed). Every one is logged."""
        if caller.unrestricted:
            return None
        first_denied = None
        for req in requests:
            if req.action.lower() == "sts:getcalleridentity":
                d = Decision(True, req.action, req.resource, "allowed", allowed_by=["(always allowed)"])
            else:
                d = evaluate(caller.policies, req)
            self._log(caller, service, operation, d, req.context)
            if not d.allowed and first_denied is None:
                first_denied = d
        return first_denied

    def allows(self, caller: Caller, req: AuthRequest) -> bool:
        """``req`` allowed for ``caller`` (logged like any decision)."""
        return self.check(caller, "s3", "(implicit)", [req]) is None

    def _log(self, caller: Caller, service: str, operation: str, d: Decision,
             context: dict[str, list[str]] | None = None) -> None:
        with self._lock:
            self.decisions.append({"t": round(time.time(), 6), "principal": caller.arn, "service": service,
                                   "operation": operation, "action": d.action, "resource": d.resource,
                                   "context": {k: list(v) for k, v in (context or {}).items()},
                                   "allowed": d.allowed, "reason": d.reason, "allowed_by": list(d.allowed_by),
                                   "denied_by": d.denied_by})

    def to_dict(self) -> dict:
        with self._lock:
            return {"enforcing": self.enabled, "decisions": list(self.decisions)}

    def clear(self) -> None:
        with self._lock:
            self.decisions.clear()


def denied_response(service: str, method: str, caller: Caller, d: Decision,
                    bucket: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    """The AccessDenied answer ``service`` gives (shape per service, message per IAM)."""
    import uuid
    from xml.sax.saxutils import escape

    msg = denial_message(caller.arn, d)
    rid = str(uuid.uuid4())
    if service == "s3":
        if method == "HEAD":
            return 403, b"", {"x-amz-request-id": rid}
        extra = f"<BucketName>{escape(bucket)}</BucketName>" if bucket else ""
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>{escape(msg)}'
                f"</Message>{extra}<RequestId>{rid}</RequestId></Error>").encode()
        return 403, body, {"Content-Type": "application/xml", "x-amz-request-id": rid}
    if service in ("iam", "sts"):
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{escape(msg)}</Message>"
                f"</Error><RequestId>{rid}</RequestId></ErrorResponse>").encode()
        return 403, body, {"Content-Type": "text/xml"}
    if service == "kms":
        return 400, json.dumps({"__type": "AccessDeniedException", "message": msg}).encode(), \
            {"Content-Type": "application/x-amz-json-1.1", "x-amzn-errortype": "AccessDeniedException"}
    return 403, json.dumps({"message": msg}).encode(), {"Content-Type": "application/json",
                                                         "x-amzn-errortype": "AccessDeniedException"}
