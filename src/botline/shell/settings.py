"""The `shell:` configuration section: where per-user files live, how big they may grow, and the bash sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

MB = 1024 * 1024


class S3Settings(BaseModel):
    """An S3-compatible object store (AWS S3, MinIO, Ceph, R2...): the operator's own, like Redis."""

    model_config = ConfigDict(extra="forbid")

    bucket: str = ""
    prefix: str = "shell"
    """Every object key starts with `{prefix}/`."""
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://")
    """Unset: AWS itself (the region's endpoint)."""
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    """Unset: the usual AWS credential chain (environment, instance role...)."""


class BashSettings(BaseModel):
    """The model's `bash` tool (gateway `enableBash`): a bubblewrap sandbox with these limits per command."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """False refuses `enableBash` on every gateway (and at save time) even where bubblewrap works."""
    bwrap_path: str = "bwrap"
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    """Wall time of one command; past it every process of the sandbox is killed."""
    cpu_seconds: int = Field(default=10, ge=1)
    memory_mb: int = Field(default=512, ge=16)
    """Address space of each process (RLIMIT_AS)."""
    max_processes: int = Field(default=32, ge=2)
    """Processes of the sandbox user at once (RLIMIT_NPROC): a fork bomb stops here."""
    max_file_mb: int = Field(default=64, ge=1)
    """Largest file a command may write (RLIMIT_FSIZE)."""
    max_output_bytes: int = Field(default=16 * 1024, ge=256, le=1024 * 1024)
    """stdout and stderr each, as the model reads them; the rest is read and dropped."""
    max_concurrent: int = Field(default=4, ge=1)
    """Commands running at once per process; more wait their turn."""
    sandbox_uid: int = Field(default=61000, ge=1)
    """When botline runs as root, commands run as this uid (RLIMIT_NPROC does not bind root)."""


class ShellSettings(BaseModel):
    """Per-user sandbox files (Shell I/O API) and the bash tool (docs/shell.md)."""

    model_config = ConfigDict(extra="forbid")

    storage: Literal["local", "s3"] = "local"
    local_path: Path = Path("./data/shell")
    s3: S3Settings = Field(default_factory=S3Settings)
    scratch_path: Path = Path("./data/shell-scratch")
    """With storage s3: where each turn's bash sandbox gets a local copy of the user's files (removed when
    the turn ends)."""
    max_file_bytes: int = Field(default=100 * MB, ge=1024)
    """Largest upload (the seed's 100 MB); bigger answers 413."""
    user_quota_bytes: int = Field(default=200 * MB, ge=0)
    """Bytes one shell user's files may hold; an upload past it answers 507."""
    account_quota_bytes: int = Field(default=2 * 1024 * MB, ge=0)
    """Bytes all shell users of one account may hold together."""
    max_entries: int = Field(default=10_000, ge=1)
    """Entries a listing returns, and entries a quota walk reads before it counts the user as full."""
    link_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    """How long a public address works."""
    link_secret: SecretStr | None = None
    """Signs public addresses. Unset: a random key per process (addresses die at restart and work only on
    the replica that made them): set it when running several replicas."""
    bash: BashSettings = Field(default_factory=BashSettings)

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> ShellSettings:
        if self.storage == "s3" and not self.s3.bucket:
            raise ValueError("s3.bucket is required when storage is s3")
        return self
