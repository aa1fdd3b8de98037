"""What the enforcing emulator can prove of the generated policies (tasks/permissions.py): a test-side fact.

The pipeline does not know the emulator, so this table lives with the tests that rely on it. The emulator
evaluates the requests the caller makes. AWS also authorizes, as the caller, the KMS calls a service makes on
its behalf (``kms:ViaService``,
https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service): S3 for
SSE-KMS puts and gets, Bedrock for a model encrypted with the key. The emulator makes no such calls, so a run on
it never needs those statements: the replay and removal runs of test_pipeline_under_policy.py leave them out, and
test_generator.py checks them against the code and the AWS documentation only.
"""

from __future__ import annotations

# Sid -> why the emulator cannot show it needed
NOT_SEEN_BY_EMULATOR: dict[str, str] = {
    "UseKmsKeyThroughS3": "S3 generates and decrypts the data keys of SSE-KMS objects for the caller "
                          "(https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html); "
                          "the emulator's S3 (moto) calls no KMS",
    "UseKmsKeyThroughBedrock": "Bedrock uses the custom model's key for the caller that creates the job and the one "
                               "that invokes the model "
                               "(https://docs.aws.amazon.com/nova/latest/userguide/customize-fine-tune-encrypt.html); "
                               "the emulator's Bedrock calls no KMS",
}


def seen_by_emulator(sid: str) -> bool:
    """True when a run on the enforcing emulator makes the requests statement ``sid`` allows."""
    return sid not in NOT_SEEN_BY_EMULATOR
