"""Media that conversation records reference (``{"image"|"video": {"source": {"s3Location": {"uri": ...}}}}``),
collected while the records are checked and carried, in a compact and exact form, to the service role's policy.

Bedrock reads these objects with the job's service role, and only from the dataset's own bucket
(docs/bedrock-facts.md §5: media "must sit in the same bucket as the dataset and be readable by the service role").
So ``tasks.iam.permission_policy`` grants ``s3:GetObject`` on them, and nothing wider:

- **exact objects** (``s3://bucket/key``) while their ARNs fit ``MEDIA_BUDGET`` characters of the policy;
- else **their folders** (``s3://bucket/folder/``, the ARN then ends in ``/*``): the parent folder of each
  object, exactly as the data names it (media names pass ``MEDIA_NAME_RE``: letters, digits,
  ``_ - / .`` only, so never an IAM wildcard); an object at the bucket's root stays exact (a folder grant there
  would be the whole bucket);
- else (too many folders as well) prepare refuses the dataset with a located problem: a policy IAM would refuse
  (or one wide enough to fit) is never written.

Why a budget: IAM allows **10,240 characters of inline policies per role in total** (whitespace not counted;
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html, "IAM and STS character limits":
"Role policy size cannot exceed 10,240 characters"), and a shared role carries one inline policy per run
(``tasks.iam.policy_name``). ``MEDIA_BUDGET`` leaves the rest of the role's quota to the run's other statements
and to the policies of other runs sharing the role.

Memory stays bounded: at most ``MEDIA_BUDGET / ENTRY_OVERHEAD`` entries are ever held, whatever the file's size.
"""

from __future__ import annotations

import functools
import re

from tasks.aws.s3uri import SCHEME, split_s3_uri

MEDIA_NAME_RE = re.compile(r"[A-Za-z0-9_\-/.]+")      # docs/bedrock-facts.md §5: letters, digits, _, -, /, .
MEDIA_BUDGET = 4096        # characters of the media statement's Resource list (ARNs, quotes, commas)
# Characters an entry costs in the policy beyond its URI: "arn:" + partition (at most 10, "aws-us-gov") + ":s3:::"
# instead of "s3://" (+15), a folder's trailing "*" (+1), two quotes and a comma (+3).
ENTRY_OVERHEAD = 19


def entry_cost(entry: str) -> int:
    """Upper bound of the characters ``entry`` (an object or folder URI) takes in the policy's Resource list."""
    return len(entry) + ENTRY_OVERHEAD


@functools.lru_cache(maxsize=256)
def _bucket_problem(bucket: str) -> str | None:
    """``tasks.config.grammar.bucket_problem``, once per bucket name (a dataset names one bucket many times)."""
    from tasks.config.grammar import bucket_problem

    return bucket_problem(bucket)


def media_uri_problem(uri: str) -> str | None:
    """What is wrong with a media URI whose characters already passed ``MEDIA_NAME_RE`` (None: an object URI)."""
    if not uri.startswith(SCHEME):
        return "is not an s3:// URI"
    bucket, _, key = uri[len(SCHEME):].partition("/")
    if not bucket:
        return "names no bucket (write s3://BUCKET/KEY)"
    if not key:
        return "names a bucket but no object (write s3://BUCKET/KEY)"
    if key.endswith("/"):
        return "names a folder, not an object (write the image or video file's key)"
    if key.startswith("/") or "//" in key:
        return "has an empty folder name ('//'): write the key without it"
    return _bucket_problem(bucket)


def folder_of(uri: str) -> str | None:
    """``s3://b/a/x.png`` -> ``s3://b/a/``; None for an object at the bucket's root (``MediaRefs`` folds so)."""
    split_s3_uri(uri)
    return None if uri.count("/") == 3 else uri[:uri.rfind("/") + 1]


class MediaRefs:
    """The distinct media one dataset references, in the compact form the role's policy grants (see above).

    ``add(uri)`` for each reference (an object URI checked by ``media_uri_problem``); ``entries()`` the sorted
    grant list: object URIs and folder URIs (ending in ``/``); ``fits`` whether they fit ``budget``."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = MEDIA_BUDGET if budget is None else budget
        self.references = 0                 # every reference seen (duplicates included)
        self.objects: set[str] = set()      # exact object URIs (all of them, or the root-level ones once folded)
        self.folders: set[str] | None = None   # folder URIs once the exact objects no longer fit
        self.cost = 0
        self.full = False                   # even the folders did not fit: later references are only counted

    def add(self, uri: str) -> None:
        self.references += 1
        if self.full:
            return
        if self.folders is None:
            if uri not in self.objects:
                self.objects.add(uri)
                self.cost += len(uri) + ENTRY_OVERHEAD
                if self.cost > self.budget:
                    self._fold()
            return
        self._add_folded(uri)

    def _fold(self) -> None:
        objects, self.objects, self.folders, self.cost = self.objects, set(), set(), 0
        for uri in sorted(objects):
            self._add_folded(uri)
            if self.full:
                return

    def _add_folded(self, uri: str) -> None:
        """The object's folder (``folder_of``, inlined: this runs once per reference), or the object itself at the
        bucket's root (``s3://bucket/name``: three slashes; keys with an empty segment were refused)."""
        assert self.folders is not None
        if uri.count("/") == 3:
            entry, target = uri, self.objects
        else:
            entry, target = uri[:uri.rfind("/") + 1], self.folders
        if entry in target:
            return
        target.add(entry)
        self.cost += len(entry) + ENTRY_OVERHEAD
        if self.cost > self.budget:
            self.full = True

    @property
    def folded(self) -> bool:
        return self.folders is not None

    @property
    def fits(self) -> bool:
        return not self.full and self.cost <= self.budget

    def entries(self) -> list[str]:
        return sorted(self.objects | (self.folders or set()))

    def buckets(self) -> set[str]:
        return {split_s3_uri(e)[0] for e in self.entries()}
