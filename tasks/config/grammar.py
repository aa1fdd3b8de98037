"""AWS's own grammar for every name, ARN and id a config hands to AWS, checked at load time.

Each ``*_problem(value)`` returns ``None`` for a legal value, else one sentence saying what is wrong and how
to write it. ``PipelineConfig``'s field validators call them, so a YAML file (``forge validate``), a
``forge run`` pre-flight and a Prefect deployment's parameters (a dict) get the same checks.

Patterns are copied from botocore's service models (``botocore.session.get_session().get_service_model(
'bedrock' | 'kms' | 'lambda' | 'iam')`` shapes' ``pattern``/``min``/``max``); tests/tasks/config/test_grammar.py
compares each copy with the installed botocore, so a drift fails a test rather than passing silently.
Copies (not a botocore import) keep ``forge validate`` fast: loading a service model costs ~0.1 s each.

No value that reaches an IAM policy may hold ``*`` or ``?`` (IAM wildcards,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html#reference_policies_elements_resource_wildcards):
every check below refuses them even where the service pattern would allow them (S3 keys, inference profiles).
"""

from __future__ import annotations

import ipaddress
import re

WILDCARDS = ("*", "?")

# bedrock TeacherModelIdentifier (botocore bedrock service model, shape TeacherModelIdentifier)
TEACHER_MODEL_PATTERN = (
    r"(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:((:foundation-model/([a-z0-9-]{1,63}[.]{1}[a-z0-9-]{1,63}"
    r"([.]?[a-z0-9-]{1,63})([:][a-z0-9-]{1,63}){0,2})|(([0-9a-zA-Z][_-]?)+)$)|([0-9]{12}:inference-profile/"
    r"[a-zA-Z0-9-:.]+$)))|([a-z0-9-]{1,63}[.]{1}[a-z0-9-]{1,63}([.]?[a-z0-9-]{1,63})([:][a-z0-9-]{1,63}){0,2})")
# bedrock LambdaArn (shape LambdaArn, min 1, max 512): rftConfig.graderConfig.lambdaGrader.lambdaArn
LAMBDA_ARN_PATTERN = (r"arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}(-gov)?-[a-z]+-\d{1}:\d{12}:function:[a-zA-Z0-9-_\.]+"
                      r"(:(\$LATEST|[a-zA-Z0-9-_]+))?")
LAMBDA_ARN_MAX = 512
# bedrock KmsKeyId (shape KmsKeyId, min 1, max 2048): key id, key ARN, alias name or alias ARN
KMS_KEY_ID_PATTERN = (r"(arn:aws(-[^:]+)?:kms:[a-zA-Z0-9-]*:[0-9]{12}:((key/[a-zA-Z0-9-]{36})|(alias/[a-zA-Z0-9-_/]+)))"
                      r"|([a-zA-Z0-9-]{36})|(alias/[a-zA-Z0-9-_/]+)")
KMS_KEY_ID_MAX = 2048
# kms AliasNameType (max 256): the alias name itself
KMS_ALIAS_MAX = 256
# iam roleNameType (min 1, max 64)
ROLE_NAME_PATTERN = r"[\w+=,.@-]+"
ROLE_NAME_MAX = 64
# bedrock TagKey / TagValue (min 1 / 0, max 128 / 256); IAM's tagKeyType allows these characters too
TAG_PATTERN = r"[a-zA-Z0-9\s._:/=+@-]*"
TAG_KEY_MAX, TAG_VALUE_MAX = 128, 256

_TEACHER = re.compile(TEACHER_MODEL_PATTERN)
_LAMBDA = re.compile(LAMBDA_ARN_PATTERN)
_KMS = re.compile(KMS_KEY_ID_PATTERN)
_ROLE = re.compile(ROLE_NAME_PATTERN)
_TAG = re.compile(TAG_PATTERN)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# mrk- multi-Region key ids are "mrk-" + 32 hex (36 characters, the KmsKeyId pattern's id branch)
_MRK = re.compile(r"mrk-[0-9a-f]{32}")

# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html (general purpose buckets)
BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")        # sthree-configurator is under sthree-
BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# S3 key characters Bedrock accepts in an S3Uri (bedrock shape S3Uri: [-!_*'().a-z0-9A-Z] per segment), minus '*'
_KEY_SEGMENT = re.compile(r"[-!_'().a-zA-Z0-9]+")
PREFIX_MAX = 512                 # S3 keys are at most 1024 bytes; the run adds /data/<16 hex>/validation.jsonl


def wildcard_in(value: str) -> str | None:
    """The first IAM wildcard character in ``value`` (None when there is none)."""
    return next((c for c in WILDCARDS if c in value), None)


def _no_wildcard(value: str) -> str | None:
    c = wildcard_in(value)
    return None if c is None else f"{value!r} holds {c!r}, an IAM wildcard: write the exact name"


def bucket_problem(name: str) -> str | None:
    """S3 general purpose bucket naming rules (bucketnamingrules.html), and no dots: a dotted name breaks
    virtual-hosted-style HTTPS (the certificate is *.s3.amazonaws.com) and Transfer Acceleration, and the
    same page recommends avoiding them; the pipeline's own names never have one."""
    bad = f"{name!r} is not a valid S3 bucket name"
    rules = ("3-63 lowercase letters, digits or '-', starting and ending with a letter or digit; "
             "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html")
    if not _BUCKET.fullmatch(name) or ".." in name:
        return f"{bad} ({rules})"
    try:
        ipaddress.ip_address(name)
        return f"{bad}: it is formatted as an IP address ({rules})"
    except ValueError:
        pass
    for p in BUCKET_RESERVED_PREFIXES:
        if name.startswith(p):
            return f"{bad}: the prefix {p!r} is reserved by S3 ({rules})"
    for s in BUCKET_RESERVED_SUFFIXES:
        if name.endswith(s):
            return f"{bad}: the suffix {s!r} is reserved by S3 ({rules})"
    if "." in name:
        return (f"{bad} for this pipeline: dots break virtual-hosted-style HTTPS and S3 recommends against them "
                f"({rules})")
    return None


def prefix_problem(prefix: str) -> str | None:
    """``aws.prefix``: the S3 key prefix every run object lives under (a trailing '/' is allowed)."""
    how = "write segments of letters, digits and -!_'(). joined by single '/', e.g. teams/nlp/forge"
    if not prefix.strip("/") or prefix.strip() != prefix:
        return f"{prefix!r} is empty: the run's objects need a key prefix ({how})"
    if (c := wildcard_in(prefix)) is not None:
        return f"{prefix!r} holds {c!r}, an IAM wildcard: it would widen the role's S3 grant ({how})"
    if prefix.startswith("/"):
        return f"{prefix!r} starts with '/': S3 keys would begin with an empty segment ({how})"
    if len(prefix) > PREFIX_MAX:
        return f"aws.prefix is {len(prefix)} characters long; at most {PREFIX_MAX} ({how})"
    for seg in prefix.rstrip("/").split("/"):
        if seg == "":
            return f"{prefix!r} has an empty segment ('//') ({how})"
        if seg in (".", ".."):
            return f"{prefix!r} has a {seg!r} segment ({how})"
        if not _KEY_SEGMENT.fullmatch(seg):
            return (f"{prefix!r} has characters Bedrock rejects in S3 keys ({how}; no spaces, '=', '+', ':'; "
                    "docs/bedrock-facts.md §2.2)")
    return None


def kms_key_problem(key: str) -> str | None:
    """A KMS key id (UUID or mrk- id), key ARN, alias name (``alias/...``) or alias ARN (bedrock KmsKeyId)."""
    how = ("give a key id (1234abcd-12ab-34cd-56ef-1234567890ab), a key ARN, alias/NAME or an alias ARN; "
           "https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-id")
    if (c := wildcard_in(key)) is not None:
        return f"{key!r} holds {c!r}, an IAM wildcard: name one key ({how})"
    if len(key) > KMS_KEY_ID_MAX or not _KMS.fullmatch(key):
        return f"{key!r} is not a KMS key id, key ARN or alias ({how})"
    tail = key.rsplit(":", 1)[-1] if key.startswith("arn:") else key
    if tail.startswith("alias/"):
        if tail == "alias/" or tail.startswith("alias/aws/") or len(tail) > KMS_ALIAS_MAX:
            return (f"{key!r}: alias/aws/... names AWS managed keys, which cannot be used for a customer "
                    f"managed encryption; use your own key ({how})") if tail.startswith("alias/aws/") else \
                f"{key!r} is not a valid alias name ({how})"
        return None
    key_id = tail.removeprefix("key/")
    if not (_UUID.fullmatch(key_id) or _MRK.fullmatch(key_id)):
        return f"{key!r}: {key_id!r} is not a KMS key id (a UUID or mrk- id) ({how})"
    return None


def lambda_arn_problem(arn: str) -> str | None:
    """A full Lambda function ARN (bedrock LambdaArn): region, 12-digit account, function name, optional
    version or alias; no wildcard."""
    how = "write the function's full ARN, e.g. arn:aws:lambda:us-east-1:111122223333:function:grader"
    if (c := wildcard_in(arn)) is not None:
        return f"{arn!r} holds {c!r}, an IAM wildcard: name one function ({how})"
    if len(arn) > LAMBDA_ARN_MAX or not _LAMBDA.fullmatch(arn):
        return f"{arn!r} is not a Lambda function ARN ({how})"
    return None


def teacher_problem(model: str) -> str | None:
    """A teacher model id, inference-profile id or Bedrock ARN (bedrock TeacherModelIdentifier), no wildcard."""
    how = "write a model id (amazon.nova-pro-v1:0), an inference profile id (us.amazon.nova-pro-v1:0) or its ARN"
    if (c := wildcard_in(model)) is not None:
        return f"{model!r} holds {c!r}, an IAM wildcard: name one model ({how})"
    if not _TEACHER.fullmatch(model):
        return f"{model!r} is not a Bedrock model id, inference profile id or model ARN ({how})"
    if model.startswith("arn:"):
        fields = model.split(":", 5)
        if len(fields) < 6 or not fields[3]:
            return f"{model!r} names no Region ({how})"
    return None


def role_name_problem(name: str) -> str | None:
    """IAM role name (iam roleNameType): 1-64 of letters, digits and +=,.@_-."""
    if len(name) > ROLE_NAME_MAX or not _ROLE.fullmatch(name):
        return f"{name!r} is not a valid IAM role name (1-64 letters, digits and +=,.@_-)"
    return None


def tag_problem(key: str, value: str, reserved: tuple[str, ...] = ()) -> str | None:
    """A user tag: Bedrock's TagKey/TagValue grammar, the ``aws:`` prefix reserved by AWS
    (https://docs.aws.amazon.com/tag-editor/latest/userguide/best-practices-and-strats.html#tag-conventions:
    "aws:" is reserved for AWS use, in any case), and the keys the pipeline sets itself."""
    how = "tags allow letters, digits, spaces and ._:/=+@- (key 1-128, value at most 256 characters)"
    if key.lower().startswith("aws:"):
        return f"tag key {key!r}: the prefix 'aws:' is reserved for AWS use; choose another key"
    if key in reserved:
        return f"tag key {key!r} is reserved by bedrock-forge (it marks what the pipeline manages); use another key"
    if not 1 <= len(key) <= TAG_KEY_MAX or not _TAG.fullmatch(key) or key.strip() != key:
        return f"tag key {key!r} is not valid ({how}; no leading or trailing spaces)"
    if len(value) > TAG_VALUE_MAX or not _TAG.fullmatch(value):
        return f"tag {key!r}: value {value!r} is not valid ({how})"
    return None
