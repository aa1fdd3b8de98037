"""Upload stage: a locked-down bucket and content-addressed training data.

- ``ensure_bucket``: created in the run's region when missing; public access blocked, default
  encryption (SSE-S3, or SSE-KMS with ``aws.kms_key_id``), and a bucket policy that denies any request
  not made over TLS. An existing bucket is brought up to the same settings: our TLS statement is merged
  into its policy (other statements kept), encryption is only set when none or another KMS key is set.
- ``upload``: ``<prefix>/data/<content hash[:16]>/{train,validation,test}.jsonl``. The same prepared data
  always lands on the same keys; an object already there whose ``sha256`` metadata matches is skipped.
  Objects carry the ``managed-by=bedrock-forge`` tag so teardown may delete them (and nothing else).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from tasks.aws.clients import Clients, partition_of
from tasks.aws.errors import StageError, error_code, stage_error
from tasks.aws.logs import get_logger
from tasks.aws.retry import aws_task
from tasks.aws.s3uri import s3_uri, split_s3_uri
from tasks.aws.tags import MANAGED_BY_KEY, MANAGED_BY_VALUE
from tasks.run.types import PreparedData, SplitFile, UploadedData

TLS_SID = "BedrockForgeDenyInsecureTransport"
# docs/bedrock-facts.md §2.2: S3 key characters
_KEY_CHARS = re.compile(r"[A-Za-z0-9\-!_*'().]+(/[A-Za-z0-9\-!_*'().]+)*")


def tls_only_statement(bucket: str, partition: str = "aws") -> dict:
    return {
        "Sid": TLS_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:{partition}:s3:::{bucket}", f"arn:{partition}:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def _encryption_rule(kms_key_id: str | None) -> dict:
    if kms_key_id:
        return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_id},
                "BucketKeyEnabled": True}
    return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}


def ensure_bucket(clients: Clients, bucket: str, region: str, kms_key_id: str | None = None) -> str:
    """Get-or-create ``bucket`` in ``region`` with the safe settings. Returns the bucket name."""
    from botocore.exceptions import ClientError

    s3, log = clients.s3, get_logger()
    try:
        s3.head_bucket(Bucket=bucket)
        exists = True
    except ClientError as err:
        code = error_code(err)
        if code in ("404", "NoSuchBucket", "NotFound"):
            exists = False
        elif code in ("301", "PermanentRedirect"):
            raise StageError(f"S3 bucket {bucket!r} is in another region than the run ({region}): Bedrock reads "
                             "training data from the job's region. Use a bucket in the same region (aws.bucket).",
                             code="WrongRegion") from None
        elif code in ("403", "AccessDenied"):
            raise StageError(f"S3 bucket {bucket!r} exists but this account cannot use it (it may belong to "
                             "another account: bucket names are global). Set aws.bucket to a bucket you own.",
                             code="AccessDenied") from None
        else:
            raise stage_error(f"S3 bucket {bucket!r}", err) from err
    try:
        if not exists:
            kw: dict = {"Bucket": bucket}
            if region != "us-east-1":   # us-east-1 rejects an explicit LocationConstraint
                kw["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                s3.create_bucket(**kw)
                log.info("created S3 bucket %s in %s", bucket, region)
            except ClientError as err:
                if error_code(err) == "BucketAlreadyExists":
                    raise StageError(f"S3 bucket name {bucket!r} is taken by another account. Set aws.bucket to a "
                                     "unique name you own.", code="BucketAlreadyExists") from None
                if error_code(err) != "BucketAlreadyOwnedByYou":
                    raise
        else:
            loc = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
            if loc != region:
                raise StageError(f"S3 bucket {bucket!r} is in {loc}, the run is in {region}: Bedrock reads training "
                                 "data from the job's region. Use a bucket in the same region (aws.bucket).",
                                 code="WrongRegion")
        _ensure_public_access_block(s3, bucket)
        _ensure_encryption(s3, bucket, kms_key_id)
        _ensure_tls_policy(s3, bucket, partition_of(region))
    except ClientError as err:
        raise stage_error(f"S3 bucket {bucket!r} settings", err) from err
    return bucket


PUBLIC_ACCESS_BLOCK = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                       "RestrictPublicBuckets": True}


def _ensure_public_access_block(s3, bucket: str) -> None:
    """Block all public access; read first so a rerun on a compliant bucket makes no mutating call."""
    from botocore.exceptions import ClientError

    try:
        current = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except ClientError as err:
        if error_code(err) != "NoSuchPublicAccessBlockConfiguration":
            raise
        current = {}
    if any(current.get(k) is not True for k in PUBLIC_ACCESS_BLOCK):
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)


def _ensure_encryption(s3, bucket: str, kms_key_id: str | None) -> None:
    from botocore.exceptions import ClientError

    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        current = rules[0]["ApplyServerSideEncryptionByDefault"] if rules else {}
    except ClientError as err:
        if error_code(err) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        current = {}
    want = _encryption_rule(kms_key_id)["ApplyServerSideEncryptionByDefault"]
    if current and not kms_key_id:
        return   # the bucket already encrypts by default (SSE-S3 or a KMS key of its own): keep it
    if (current.get("SSEAlgorithm") == want["SSEAlgorithm"]
            and current.get("KMSMasterKeyID") == want.get("KMSMasterKeyID")):
        return
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [_encryption_rule(kms_key_id)]})


def _ensure_tls_policy(s3, bucket: str, partition: str) -> None:
    from botocore.exceptions import ClientError

    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as err:
        if error_code(err) not in ("NoSuchBucketPolicy", "404"):
            raise
        policy = {"Version": "2012-10-17", "Statement": []}
    stmts = policy.get("Statement", [])
    if isinstance(stmts, dict):
        stmts = [stmts]
    want = tls_only_statement(bucket, partition)
    if any(s == want for s in stmts):
        return
    policy["Statement"] = [s for s in stmts if s.get("Sid") != TLS_SID] + [want]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def _sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_prefix(prefix: str, content_hash: str) -> str:
    return f"{prefix.strip('/')}/data/{content_hash[:16]}/"


def output_prefix(prefix: str, run_key: str) -> str:
    return f"{prefix.strip('/')}/output/{run_key}/"


def check_media(media: list[str], bucket: str) -> None:
    """Refuse (``StageError``, before any S3 call) prepared data whose records reference media outside the run's
    bucket: Bedrock reads media only from the dataset's bucket (docs/bedrock-facts.md §5), so the job would fail
    after it was paid for. prepare already refuses this when ``aws.bucket`` is set; with a derived bucket (the
    default, named after the account) this is the first place that knows the bucket."""
    elsewhere = sorted({uri for uri in media if not uri.startswith(f"s3://{bucket}/")})
    if elsewhere:
        shown = ", ".join(elsewhere[:3]) + (f" and {len(elsewhere) - 3} more" if len(elsewhere) > 3 else "")
        raise StageError(f"the records reference media outside the run's bucket {bucket!r}: {shown}. Bedrock reads "
                         "media only from the dataset's own bucket (docs/bedrock-facts.md §5): set aws.bucket to "
                         "the media's bucket, or copy the media into the run's bucket and point the records there",
                         code="MediaInAnotherBucket")


def upload(clients: Clients, prepared: PreparedData, bucket: str, prefix: str, run_key: str) -> UploadedData:
    """Upload the prepared splits to content-addressed keys; skip objects already there with the same hash.
    Media the records reference must sit in ``bucket`` (``check_media``); they are carried to the role step."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError

    log = get_logger()
    if not _KEY_CHARS.fullmatch(prefix.strip("/")):
        raise StageError(f"aws.prefix {prefix!r}: S3 keys used by Bedrock may contain only letters, digits, "
                         "'/' and -!_*'().  (docs/bedrock-facts.md §2.2): change aws.prefix")
    check_media(prepared.media, bucket)
    in_prefix = data_prefix(prefix, prepared.content_hash)
    uris: dict[str, str] = {}
    skipped: list[str] = []
    for split in ("train", "validation", "test"):
        f = getattr(prepared, split)
        if f is None:
            continue
        key = f"{in_prefix}{split}.jsonl"
        uri = s3_uri(bucket, key)
        uris[split] = uri
        try:
            try:
                head = clients.s3.head_object(Bucket=bucket, Key=key)
                if head.get("Metadata", {}).get("sha256") == f.sha256:
                    skipped.append(uri)
                    continue
            except ClientError as err:
                if error_code(err) not in ("404", "NoSuchKey", "NotFound"):
                    raise
            actual = _sha256_file(f.path)
            if actual != f.sha256:
                raise StageError(f"{f.path}: content changed since prepare (sha256 {actual[:12]} != recorded "
                                 f"{f.sha256[:12]}): rerun from the prepare step")
            clients.s3.upload_file(str(f.path), bucket, key, ExtraArgs={
                "Metadata": {"sha256": f.sha256}, "ContentType": "application/jsonl",
                "Tagging": f"{MANAGED_BY_KEY}={MANAGED_BY_VALUE}"})
            log.info("uploaded %s (%d records)", uri, f.records)
        except ClientError as err:
            raise stage_error(f"upload {uri}", err) from err
        except S3UploadFailedError as err:   # upload_file wraps the ClientError
            cause = err.__context__ if isinstance(err.__context__, ClientError) else err
            raise stage_error(f"upload {uri}", cause) from err
        except FileNotFoundError:
            raise StageError(f"{f.path}: prepared file is missing: rerun from the prepare step") from None
    out_prefix = output_prefix(prefix, run_key)
    return UploadedData(
        bucket=bucket,
        train_uri=uris["train"],
        validation_uri=uris.get("validation"),
        test_uri=uris.get("test"),
        output_uri=s3_uri(bucket, out_prefix),
        input_prefix=in_prefix,
        output_prefix=out_prefix,
        skipped=skipped,
        media=list(prepared.media),
    )


ensure_bucket_task = aws_task(ensure_bucket, name="ensure-bucket")
upload_task = aws_task(upload, name="upload")


def fetch_split(clients: Clients, uri: str, split: SplitFile, dest_dir: str | Path) -> SplitFile:
    """The uploaded copy of a prepared split back on this machine (an on-call rerun or re-evaluation on another
    machine than the one that prepared): downloaded to ``dest_dir`` and checked against the recorded sha256, so
    the evaluation is of exactly the data the run prepared. A copy already there with that hash is reused."""
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(uri)
    dest = Path(dest_dir) / key.rsplit("/", 1)[-1]
    if dest.is_file() and _sha256_file(dest) == split.sha256:
        return split.model_copy(update={"path": str(dest)})
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        clients.s3.download_file(bucket, key, str(tmp))
    except ClientError as err:
        raise stage_error(f"download {uri}", err) from err
    actual = _sha256_file(tmp)
    if actual != split.sha256:
        tmp.unlink(missing_ok=True)
        raise StageError(f"{uri}: content differs from what the run prepared (sha256 {actual[:12]} != recorded "
                         f"{split.sha256[:12]}): rerun from the prepare step")
    tmp.replace(dest)
    return split.model_copy(update={"path": str(dest)})
