"""Local Bedrock emulator: Bedrock control plane + runtime with real wire shapes, S3/IAM/STS via moto.

See docs/emulator.md. Start it with ``forge emulator`` / ``python -m emulator``, or from Python with
``emulator.testing.running_emulator`` / ``start_subprocess``. Pipeline code never imports this
package: it reaches the emulator through ``AWS_ENDPOINT_URL`` only.
"""
